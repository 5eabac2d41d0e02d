"""Supervision with real processes: SIGINT stops the whole tree, respawn restarts, failures stop the launch."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import wait_for

from robot_stack.launcher import LaunchRunner

FILES = Path(__file__).resolve().parent / "launch_files"
ROBOT_STACK = str(Path(sys.prefix) / "bin" / "robot-stack")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Output:
    """Collect a process's output lines in a background thread."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def started(self, label: str) -> list[int]:
        return [int(m) for m in re.findall(rf"\[INFO\] \[{re.escape(label)}\]: process started with pid \[(\d+)\]", self.text())]


def test_sigint_stops_children_and_grandchildren_and_respawn_restarts(spawn) -> None:
    runner = spawn([ROBOT_STACK, "launch", str(FILES / "supervision.launch.xml")])
    out = Output(runner.stdout)
    # The crashing node exits with code 3 after 0.3 s and is started again, repeatedly.
    wait_for(lambda: len(out.started("crasher-3")) >= 2, 60, f"crasher respawn; output:\n{out.text()}")
    assert re.search(r"\[WARN\] \[crasher-3\]: process has died \[pid \d+, exit code 3\], respawning in 0.2 s", out.text())
    crasher_pids = out.started("crasher-3")
    assert len(set(crasher_pids)) == len(crasher_pids)
    wait_for(lambda: "[shell-2] grandchild" in out.text(), 30, "the shell's grandchild")
    grandchild = int(re.search(r"\[shell-2\] grandchild (\d+)", out.text()).group(1))
    steady, shell = out.started("topic_probe-1")[0], out.started("shell-2")[0]
    wait_for(lambda: "[topic_probe-1] [INFO]" in out.text(), 60, "the steady node to come up")
    assert runner.poll() is None and all(alive(p) for p in (steady, shell, grandchild))

    os.kill(runner.pid, signal.SIGINT)  # only the runner: it must stop the rest
    t0 = time.monotonic()
    pids = [steady, shell, grandchild, *crasher_pids]
    wait_for(lambda: not any(alive(p) for p in pids), 5.0, f"all of {pids} to exit")
    assert runner.wait(timeout=5.0) == 0
    assert time.monotonic() - t0 < 5.0
    assert "SIGINT received: stopping all processes" in out.text()


def test_failing_process_stops_the_launch_with_exit_code_1() -> None:
    buf = io.StringIO()
    runner = LaunchRunner(FILES / "failing.launch.xml", stdout=buf, stderr=buf).start()
    try:
        assert runner.wait(timeout=30) == 1
    finally:
        runner.stop(timeout=15)
    assert runner.supervisor.failure == ("failing-2", 3)
    assert "[failing-2] giving up" in buf.getvalue()
    sleeper = runner.pids()["sleeper-1"][0]
    assert not alive(sleeper)


def test_processes_finishing_cleanly_end_the_launch_with_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.launch.xml"
    path.write_text('<launch>\n  <executable cmd="echo one"/>\n  <executable cmd="sh -c \'sleep 0.2; echo two\'"/>\n</launch>\n')
    buf = io.StringIO()
    runner = LaunchRunner(path, stdout=buf, stderr=buf).start()
    assert runner.wait(timeout=30) == 0
    assert "[echo-1] one" in buf.getvalue() and "[sh-2] two" in buf.getvalue()
    assert "process has finished cleanly" in buf.getvalue()


def test_stop_escalates_to_sigterm_for_a_process_ignoring_sigint(tmp_path: Path) -> None:
    path = tmp_path / "stubborn.launch.xml"
    path.write_text("<launch>\n  <executable cmd=\"sh -c 'trap &quot;&quot; INT; echo ready; sleep 300'\" name=\"stubborn\"/>\n</launch>\n")
    buf = io.StringIO()
    runner = LaunchRunner(path, stdout=buf, stderr=buf, sigint_timeout=0.5, sigterm_timeout=5.0).start()
    wait_for(lambda: "[stubborn-1] ready" in buf.getvalue(), 30, "the process to start")
    assert runner.stop(timeout=10) == 0
    assert "sending SIGTERM" in buf.getvalue()
    assert not alive(runner.pids()["stubborn-1"][0])


def test_dry_run_starts_nothing() -> None:
    result = subprocess.run([ROBOT_STACK, "launch", str(FILES / "failing.launch.xml"), "--print"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "argv: sleep 300" in result.stdout and "process started" not in result.stdout


def test_on_exit_shutdown_ends_the_launch(tmp_path: Path) -> None:
    path = tmp_path / "on_exit.launch.xml"
    path.write_text(
        "<launch>\n"
        '  <executable cmd="sleep 300" name="sleeper"/>\n'
        "  <executable cmd=\"sh -c 'sleep 0.3'\" name=\"main\" on_exit=\"shutdown\" respawn=\"true\"/>\n"
        "</launch>\n"
    )
    buf = io.StringIO()
    runner = LaunchRunner(path, stdout=buf, stderr=buf).start()
    assert runner.wait(timeout=30) == 0
    assert "main-2 exited (on_exit=shutdown): stopping all processes" in buf.getvalue()
    assert not alive(runner.pids()["sleeper-1"][0])


def test_a_process_that_cannot_start_stops_the_others() -> None:
    import pytest

    from robot_stack.errors import UserError
    from robot_stack.launcher.actions import ProcessSpec
    from robot_stack.launcher.supervisor import Supervisor

    def spec(label: str, argv: list[str]) -> ProcessSpec:
        return ProcessSpec(label, argv, dict(os.environ), {}, None, False, 0.0, None, f"test:{label}")

    buf = io.StringIO()
    supervisor = Supervisor([spec("sleep-1", ["sleep", "300"]), spec("gone-2", ["/nonexistent/gone"])], stdout=buf, stderr=buf)
    with pytest.raises(UserError, match=r"^test:gone-2: cannot start gone-2: .*No such file"):
        supervisor.start()
    assert supervisor.wait(timeout=0) is not None
    assert not alive(supervisor.pids()["sleep-1"][0])


def test_a_busy_node_stopped_mid_spin_exits_0_without_a_traceback(spawn) -> None:
    """Ctrl-C / SIGTERM while the twin's 100 Hz tick publishes: a clean stop, every time."""
    from robot_stack.resources import ros_environment

    twin = str(Path(sys.prefix) / "bin" / "twin_node")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        proc = spawn([twin, "--ros-args", "-p", "cameras:=none", "-p", "realtime_factor:=0.0"], env=ros_environment())
        out = Output(proc.stdout)
        wait_for(lambda: "twin: so101" in out.text(), 60, "the twin up")
        time.sleep(0.5)
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=20) == 0, out.text()[-2000:]
        time.sleep(0.2)
        assert "Traceback" not in out.text(), out.text()[-2000:]
