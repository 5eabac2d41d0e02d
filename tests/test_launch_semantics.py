"""One launch file, one meaning: the runner against behaviours recorded from the real ``ros2 launch``.

Each file in ``launch_files/semantics/`` states, in comments, what ros2 launch (launch 3.4.3 with
launch_ros 0.26.6, and launch 3.7.1 with launch_ros 0.28.0) printed for it:

* ``expect: <line>``: an output line both runners print (the ``[label] text`` lines of the processes,
  ``[INFO] [launch.user]: ...`` for ``<log>``);
* ``error: <text>``: the runner refuses the file before starting anything (exit 2, this text in
  the one-line error); ros2 launch refuses it too (exit 1) unless a ``ros2-launch:`` line says what
  it silently does instead, which is why the runner refuses it.

The files are run with the runner here. Where the real ``ros2 launch`` is installed (a full ROS 2
install: ``ros2`` on PATH and ``launch_ros`` importable), they are run with it too.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from robot_stack.errors import UserError
from robot_stack.launcher import LaunchRunner

CASES = sorted((Path(__file__).resolve().parent / "launch_files" / "semantics").glob("*.launch.xml"))
NOTE = re.compile(r"<!-- (expect|error|ros2-launch): (.*?) -->")
OUTPUT = re.compile(r"^(\[[\w.-]+-\d+\] .*|\[INFO\] \[launch\.user\]: .*)$")


def notes(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"expect": [], "error": [], "ros2-launch": []}
    for kind, text in NOTE.findall(path.read_text()):
        found[kind].append(text)
    assert found["expect"] or found["error"], f"{path.name} states no expectation"
    return found


def output_lines(text: str) -> list[str]:
    """The lines a file decides (process output, <log> messages), in a stable order."""
    return sorted(line for line in text.splitlines() if OUTPUT.match(line))


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".launch.xml") for p in CASES])
def test_the_runner_matches_ros2_launch(path: Path) -> None:
    expected = notes(path)
    buf = io.StringIO()
    runner = LaunchRunner(path, stdout=buf, stderr=buf)
    if expected["error"]:
        with pytest.raises(UserError) as err:
            runner.start()
        assert all(text in str(err.value) for text in expected["error"]), str(err.value)
        assert f"{path}:" in str(err.value)  # one line naming the file (and line)
        return
    runner.start()
    try:
        assert runner.wait(timeout=60) is not None, buf.getvalue()
    finally:
        runner.stop(timeout=15)
    assert output_lines(buf.getvalue()) == sorted(expected["expect"]), buf.getvalue()


def _real_launch() -> bool:
    if shutil.which("ros2") is None:
        return False
    probe = subprocess.run(["python3", "-c", "import launch_ros"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _real_launch(), reason="the real ros2 launch is not installed (a full ROS 2 install has it)")
@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".launch.xml") for p in CASES])
def test_ros2_launch_still_behaves_as_recorded(path: Path) -> None:
    expected = notes(path)
    if any(line.startswith("(") for line in expected["ros2-launch"]):
        pytest.skip(f"recorded: {expected['ros2-launch'][0]}")
    try:
        result = subprocess.run(["ros2", "launch", str(path)], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"ros2 launch did not finish: {err.stdout}")
    if expected["error"] and not expected["ros2-launch"]:
        assert result.returncode == 1, result.stdout + result.stderr
        return
    lines = expected["ros2-launch"] or expected["expect"]
    assert output_lines(result.stdout + result.stderr) == sorted(lines), result.stdout + result.stderr
