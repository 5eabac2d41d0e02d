"""Unit tests for launch substitutions: parsing, evaluation, boolean rules and $(eval) safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_stack.errors import UserError
from robot_stack.launcher.actions import split_cmdline, yaml_typed
from robot_stack.launcher.substitutions import Scope, Substitution, evaluate, parse, safe_eval, to_bool


def ev(text: str, **configurations: str) -> str:
    scope = Scope(configurations=configurations, environment={"HOME_X": "/home/x"}, current_file=Path("/a/b/c.launch.xml"))
    return evaluate(parse(text), scope)


def test_plain_text_and_dollar_without_paren_are_literal() -> None:
    assert parse("hello") == ("hello",)
    assert ev("cost $5 (approx)") == "cost $5 (approx)"
    assert ev("") == ""


def test_var_env_and_defaults() -> None:
    assert ev("robot_$(var name)_x", name="so101") == "robot_so101_x"
    assert ev("$(var missing fallback)") == "fallback"
    assert ev("$(env HOME_X)/data") == "/home/x/data"
    assert ev("$(env NOT_SET_ANYWHERE default)") == "default"
    assert ev("[$(var missing '')] [$(env NOT_SET_ANYWHERE '')]") == "[] []"
    assert ev("$(dirname)/x.yaml") == "/a/b/x.yaml"
    assert ev("$(filename)") == "/a/b/c.launch.xml"


def test_missing_var_and_env_name_the_problem() -> None:
    with pytest.raises(UserError, match=r"\$\(var robot\): no launch argument or <let> named 'robot'"):
        ev("$(var robot)")
    with pytest.raises(UserError, match="environment variable NOT_SET_ANYWHERE is not set"):
        ev("$(env NOT_SET_ANYWHERE)")


def test_nested_and_quoted_arguments() -> None:
    tree = parse("$(eval \"'$(var mode)' == 'sim'\")")
    assert tree == (Substitution("eval", (("'", Substitution("var", (("mode",),)), "' == 'sim'"),)),)
    assert ev("$(eval \"'$(var mode)' == 'sim'\")", mode="sim") == "True"
    assert ev("$(eval '$(var a) * 2 + 1')", a="20") == "41"
    assert ev("$(var $(var which))", which="b", b="bee") == "bee"
    assert ev("$(equals $(var a) 'two words')", a="two words") == "true"


def test_boolean_substitutions_follow_ros2_launch() -> None:
    assert ev("$(not true)") == "false"
    assert ev("$(not 0)") == "true"
    assert ev("$(and true 1)") == "true"
    assert ev("$(and TRUE false)") == "false"
    assert ev("$(or false 0)") == "false"
    assert ev("$(or $(var x) false)", x="True") == "true"
    assert ev("$(not $(equals $(var r) so101))", r="panda") == "true"
    assert ev("$(not yes)") == "false"  # typed by YAML 1.1 rules, as ros2 launch does
    assert ev("$(and on True)") == "true"
    with pytest.raises(UserError, match="not a boolean"):
        ev("$(not maybe)")


def test_equals_compares_booleans_and_numbers_by_value() -> None:
    assert ev("$(equals true 1)") == "true"
    assert ev("$(equals 1.0 1)") == "true"
    assert ev("$(equals abc abd)") == "false"
    assert ev("$(not-equals abc abd)") == "true"


def test_condition_words() -> None:
    for word in ("true", "True", " 1 ", "TRUE"):
        assert to_bool(word) is True
    for word in ("false", "0", "False"):
        assert to_bool(word) is False
    for word in ("", "yes", "on", "2"):
        with pytest.raises(UserError):
            to_bool(word)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("$(vr x)", "unknown substitution"),
        ("$(var x", "not closed"),
        ("$(var)", "takes 1 to 2 arguments, got 0"),
        ("$(not a b)", "takes 1 argument, got 2"),
        ("$(eval 'unterminated)", "unterminated"),
        ("$( var x)", "expected a substitution name"),
        ("$(var a(b))", r"unexpected '\('"),
    ],
)
def test_bad_substitutions_are_rejected_when_parsing(text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        parse(text)


def test_eval_allows_literals_arithmetic_comparisons_and_logic() -> None:
    assert safe_eval("1 + 2 * 3") == 7
    assert safe_eval("2 ** 10") == 1024
    assert safe_eval("-(3 - 5) / 4") == 0.5
    assert safe_eval("'a' + 'b' == 'ab'") is True
    assert safe_eval("1 < 2 <= 2 and not False") is True
    assert safe_eval("'x' in ('x', 'y')") is True
    assert safe_eval("'sim' if 1 > 2 else 'real'") == "real"
    assert safe_eval("None or 7") == 7


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "().__class__.__bases__[0].__subclasses__()",
        "(1).real",
        "x",
        "[i for i in (1, 2)]",
        "(lambda: 1)()",
        "'a' * 10 ** 9",
        "9 ** 9 ** 9",
        "{'a': 1}",
    ],
)
def test_eval_rejects_anything_else(expression: str) -> None:
    with pytest.raises(UserError, match="eval"):
        safe_eval(expression)


def test_eval_substitution_rejects_import() -> None:
    with pytest.raises(UserError, match="function call is not allowed"):
        ev("$(eval \"__import__('os')\")")


def test_cmdline_splitting_keeps_substitution_results_whole() -> None:
    scope = Scope(configurations={"rate": "10", "label": "two words", "empty": ""})

    def split(text: str) -> list[str]:
        return split_cmdline(parse(text), lambda t: evaluate(t, scope))

    assert split("--publish chatter --rate $(var rate)") == ["--publish", "chatter", "--rate", "10"]
    assert split("--label $(var label) -x") == ["--label", "two words", "-x"]
    assert split("--out=$(var rate)hz next") == ["--out=10hz", "next"]
    assert split("  a   b  ") == ["a", "b"]
    assert split("a $(var empty) b") == ["a", "", "b"]
    assert split("sh -c 'sleep 1 && echo $x' end") == ["sh", "-c", "sleep 1 && echo $x", "end"]
    assert split("$(var rate) $(var rate)") == ["10", "10"]
    with pytest.raises(UserError, match="quotes cannot span a substitution"):
        split("sh -c 'echo $(var rate)'")


def test_parameter_values_are_yaml_typed_like_launch_ros() -> None:
    assert yaml_typed("2.5") == 2.5
    assert yaml_typed("3") == 3
    assert yaml_typed("true") is True
    assert yaml_typed("hello world") == "hello world"
    assert yaml_typed("'3'") == "3"
    assert yaml_typed("") == ""
    assert yaml_typed("[1, 2, 3]") == [1, 2, 3]
    with pytest.raises(ValueError, match="non-empty list"):
        yaml_typed("[1, 'a']")
    with pytest.raises(ValueError):
        yaml_typed("{a: 1}")
