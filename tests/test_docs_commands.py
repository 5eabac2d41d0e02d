"""Every command line in README.md and docs/*.md works as written.

Command lines are the lines of ```bash/```sh blocks and of unlabelled blocks whose first word is a
command this project documents (``\\`` continuations joined, ``&&`` chains split, comments dropped).
How each is checked:

* ``robot-stack launch ...`` and ``robot-stack hil run ...`` (and ``ros2 launch robot_stack ...``, the
  same files): run with ``--print``, which evaluates the whole launch (files, arguments, conditions,
  substitutions, executables, parameter files) without starting a robot;
* other ``robot-stack`` commands (and ``torchrun -m robot_stack.cli``): their arguments are parsed by
  the real command line; ``--help`` / ``--show-args`` and ``robot-stack profile`` run for real;
* nodes (``twin_node --ros-args ...``): the executable exists and rclpy accepts the ROS arguments; the
  servo-bus emulator's options are parsed by its own parser;
* ``python benchmarks/<name>.py ...``: the script exists and its ``--help`` lists every option used;
* ``python -c ...``: run for real.

Synopses with placeholders (``STORE``, ``<file>``, ``[--episodes]``, ``...``) are not commands and are
skipped; a line whose first word is unknown in a bash block fails, so new commands get checked too.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.prefix) / "bin"
NODES = {"twin_node", "expert_node", "topic_probe", "recorder_node", "realsense_node", "opencv_camera_node",
         "servo_arm_node", "teleop_node", "policy_server", "hil_actor", "hil_learner"}
SHELL_ONLY = {"export", "cd", "source"}  # shell set-up lines: nothing to check
NOT_HERE = {"bash scripts/setup.sh", "pytest", "colcon"}  # CI runs these itself (.ci/run, tests/test_colcon.py)
PLACEHOLDER = re.compile(r"<[\w.-]+>|\[[^\]]*\]|\.\.\.|(?<![=:/\w])[A-Z]{2,}[A-Z_]*\b(?![=:])|\|")
FAST = [("--help",), ("--show-args",), ("profile",)]  # robot-stack commands that run for real here


def command_lines() -> list[tuple[str, str]]:
    """(where, command) for every command line of the docs."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            lang, body = block.group(1), block.group(2).replace("\\\n", " ")
            if lang not in ("", "bash", "sh"):
                continue
            line_no = text[:block.start()].count("\n") + 2
            for offset, line in enumerate(body.splitlines()):
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    words = line.split()
                if not words:
                    continue
                for part in " ".join(shlex.quote(w) if w not in ("&&",) else w for w in words).split(" && "):
                    if lang or _first(part) in _known():
                        out.append((f"{doc.name}:{line_no + offset}", part.strip()))
    return out


def _first(command: str) -> str:
    word = shlex.split(command)[0]
    return word.removeprefix(".venv/bin/")


def _known() -> set[str]:
    return {"robot-stack", "ros2", "torchrun", "python", "servo_bus_emulator", *NODES, *SHELL_ONLY,
            "bash", "pytest", "colcon"}


COMMANDS = command_lines()


def robot_stack(argv: list[str]) -> tuple[int, str]:
    """Run ``robot-stack`` in this process; (exit code, output)."""
    from robot_stack.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, buf.getvalue()


def check_robot_stack(argv: list[str]) -> None:
    if argv[:1] == ["launch"] or argv[:2] == ["hil", "run"]:
        if not {"--show-args", "--print", "--sros2"} & set(argv):
            argv = [*argv, "--print"]
        code, out = robot_stack(argv)
        assert code == 0, out
        return
    if any(tuple(argv[i:i + len(f)]) == f for f in FAST for i in range(len(argv))):
        code, out = robot_stack(argv)
        assert code == 0, out
        return
    from robot_stack.cli import build_parser, without_ros_args

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        try:
            args = build_parser().parse_args(without_ros_args(argv))
        except SystemExit:
            pytest.fail(f"robot-stack {shlex.join(argv)}: {buf.getvalue().strip()}")
    assert getattr(args, "handler", None) is not None, f"robot-stack {shlex.join(argv)} names no command"


def check_node(argv: list[str]) -> None:
    assert (BIN / argv[0]).is_file(), f"{argv[0]} is not installed"
    if argv[0] == "servo_bus_emulator":
        from robot_stack.drivers.servo.emulator import build_parser

        build_parser().parse_args(argv[1:])
        return
    import rclpy

    context = rclpy.Context()
    rclpy.init(args=argv, context=context)  # rclpy's parser refuses malformed --ros-args
    context.try_shutdown()


def check_benchmark(argv: list[str]) -> None:
    script = REPO / argv[0]
    assert script.is_file(), f"{argv[0]} does not exist"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert option in result.stdout, f"{argv[0]} has no option {option}"


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_works_as_written(where: str, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # from a fresh clone (launch files also resolve by name from anywhere)
    argv = shlex.split(command)
    if argv[0] == "nice":  # a long run at lower priority: the command after it is what is checked
        argv = argv[3:] if argv[1] == "-n" else argv[1:]
    head = argv[0].removeprefix(".venv/bin/")
    if PLACEHOLDER.search(command) and head not in ("python",):
        pytest.skip("a synopsis with placeholders, not a command")
    if head in SHELL_ONLY or any(command.startswith(p) or head == p for p in NOT_HERE):
        pytest.skip("shell set-up or CI's own step")
    if head == "robot-stack":
        check_robot_stack(argv[1:])
    elif head == "ros2":
        assert argv[1] == "launch" and argv[2] == "robot_stack", command
        check_robot_stack(["launch", *argv[2:]])
    elif head == "torchrun":
        check_robot_stack(argv[argv.index("robot_stack.cli") + 1:])
    elif head in NODES or head == "servo_bus_emulator":
        check_node([head, *argv[1:]])
    elif head == "python" and argv[1] == "-c":
        result = subprocess.run([sys.executable, "-c", argv[2]], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    elif head == "python" and argv[1].startswith("benchmarks/"):
        check_benchmark(argv[1:])
    else:
        pytest.fail(f"{where}: no rule checks {head!r} commands ({command})")


def test_every_doc_has_its_commands_found() -> None:
    found = {where.split(":")[0] for where, _ in COMMANDS}
    assert {"README.md", "launch.md", "hil.md", "data.md"} <= found, found
