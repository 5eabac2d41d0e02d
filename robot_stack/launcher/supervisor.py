"""Run a plan of processes: prefixed output, respawn, and a clean, complete shutdown.

Each process starts in its own session (process group), so signals reach its children too. Output
lines are printed as ``[label] line`` (stdout to stdout, stderr to stderr), like ``ros2 launch``.
Shutdown sends SIGINT to every process group, then SIGTERM after ``sigint_timeout`` and SIGKILL
after ``sigterm_timeout`` more. Whenever a process exits, whatever it left behind in its process
group gets SIGTERM, then SIGKILL after ``orphan_timeout``.

If the runner itself dies, even by SIGKILL, nothing is left behind: the kernel sends each child
SIGTERM (``PR_SET_PDEATHSIG``), and a small watchdog process (:mod:`robot_stack.launcher.reaper`),
told of every process group, sends the groups still alive SIGTERM and then SIGKILL once it sees the
runner's end of its pipe close.

Exit rule: a process without ``respawn`` (or whose ``respawn_max_retries`` are used up) that exits
non-zero, other than during shutdown, shuts everything down and makes :meth:`Supervisor.wait`
return 1; a process with ``on_exit="shutdown"`` shuts everything down whenever it exits (1 if its
code was non-zero). Otherwise the launch ends with 0 once every process has exited on its own, or
after a requested shutdown.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from robot_stack.errors import UserError
from robot_stack.launcher.actions import ProcessSpec
from robot_stack.launcher.reaper import group_alive

POLL_S = 0.02


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Managed:
    spec: ProcessSpec
    popen: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)  # every pid this process has had (respawns)
    restart_at: float | None = None
    finished: bool = False
    returncode: int | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    last_error: str = ""  # its last stderr line: why it failed, for the launch's final message

    @property
    def respawns(self) -> int:
        return max(len(self.pids) - 1, 0)


class Supervisor:
    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        sigint_timeout: float = 5.0,
        sigterm_timeout: float = 5.0,
        orphan_timeout: float = 2.0,
    ) -> None:
        self.processes = [Managed(spec) for spec in specs]
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._timeouts = (sigint_timeout, sigterm_timeout)
        self._orphan_timeout = orphan_timeout
        self._lock = threading.Lock()
        self._print_lock = threading.Lock()
        self._shutdown_at: float | None = None
        self._escalation = 0  # 0: SIGINT sent, 1: SIGTERM sent, 2: SIGKILL sent
        self._orphans: dict[int, float] = {}  # process group -> when to SIGKILL
        self._started = threading.Event()
        self._done = threading.Event()
        self._start_error: BaseException | None = None
        self.failure: tuple[str, int] | None = None  # (label, exit code) of the failing process
        self._thread = threading.Thread(target=self._main, name="launch-supervisor", daemon=True)
        self._reaper: subprocess.Popen | None = None

    # -- public API ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every process (from the supervisor thread, which owns them) and return."""
        self._reaper = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).with_name("reaper.py")), f"{sum(self._timeouts):g}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, text=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._done.wait()
            raise self._start_error

    def shutdown(self, reason: str = "shutdown requested") -> None:
        """Begin the SIGINT -> SIGTERM -> SIGKILL sequence (returns at once; see :meth:`wait`)."""
        with self._lock:
            self._begin_shutdown(reason)

    def kill(self) -> None:
        """Skip the grace periods: SIGKILL everything now."""
        self.shutdown("kill requested")
        with self._lock:
            self._escalation = 2
            for proc in self.processes:
                self._signal(proc, signal.SIGKILL)

    def failure_summary(self) -> str:
        """Why the launch failed, in one line: the process, its exit code, respawns and last error line."""
        if self.failure is None:
            return ""
        label, code = self.failure
        proc = next(p for p in self.processes if p.spec.label == label)
        tries = f" after {proc.respawns} respawn{'s' if proc.respawns != 1 else ''}" if proc.respawns else ""
        why = f": {proc.last_error}" if proc.last_error else ""
        return f"{label} exited with code {code}{tries}{why}"

    def note(self, message: str) -> None:
        """Print a launch-level warning in the launch's output."""
        self._log("launch", message, "WARN")

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code once everything has exited (None if ``timeout`` passed first)."""
        if not self._done.wait(timeout):
            return None
        return 1 if self.failure is not None else 0

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._done.is_set()

    def pids(self) -> dict[str, list[int]]:
        with self._lock:
            return {p.spec.label: list(p.pids) for p in self.processes}

    # -- supervisor thread ---------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            with self._lock:
                for proc in self.processes:
                    self._spawn(proc)
        except BaseException as err:  # noqa: BLE001 - reported by start()
            if isinstance(err, OSError):
                proc = next(p for p in self.processes if p.popen is None)
                err = UserError(f"{proc.spec.source}: cannot start {proc.spec.label}: {err}")
            self._start_error = err
            self.shutdown("start failed")
        self._started.set()
        self._loop()

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._step():
                        break
                time.sleep(POLL_S)
        finally:
            for proc in self.processes:
                for reader in proc.readers:
                    reader.join(timeout=1.0)
            if self._reaper is not None:  # every group is gone: the reaper exits with nothing to do
                try:
                    self._reaper.stdin.close()
                except OSError:
                    pass
                self._reaper.wait()
            self._done.set()

    def _step(self) -> bool:
        """One supervision pass; True when the launch is over."""
        now = time.monotonic()
        for proc in self.processes:
            if proc.popen is not None and proc.popen.poll() is not None:
                self._on_exit(proc, now)
            elif proc.restart_at is not None and now >= proc.restart_at and self._shutdown_at is None:
                proc.restart_at = None
                try:
                    self._spawn(proc)
                except OSError as err:
                    self._log(proc.spec.label, f"respawn failed: {err}", "ERROR")
                    proc.finished = True
        if self._shutdown_at is not None:
            self._escalate(now)
        for pgid, kill_at in list(self._orphans.items()):
            if not group_alive(pgid):
                del self._orphans[pgid]
                self._tell_reaper(f"-{pgid}")
            elif now >= kill_at:  # SIGKILL cannot be ignored; zombies left for init are already dead
                _killpg(pgid, signal.SIGKILL)
                del self._orphans[pgid]
        all_exited = all(p.finished or (p.popen is None and p.restart_at is None) for p in self.processes)
        return all_exited and not self._orphans

    def _spawn(self, proc: Managed) -> None:
        spec = proc.spec
        proc.popen = subprocess.Popen(
            spec.argv, env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent,
        )
        proc.pids.append(proc.popen.pid)
        self._tell_reaper(f"+{proc.popen.pid}")
        proc.finished = False
        self._log(spec.label, f"process started with pid [{proc.popen.pid}]")
        proc.readers = [
            threading.Thread(target=self._pump, args=(proc.popen.stdout, self._out, spec.label), daemon=True),
            threading.Thread(target=self._pump, args=(proc.popen.stderr, self._err, spec.label, proc), daemon=True),
        ]
        for reader in proc.readers:
            reader.start()

    def _on_exit(self, proc: Managed, now: float) -> None:
        popen = proc.popen
        assert popen is not None
        code = popen.returncode
        proc.popen, proc.returncode = None, code
        if group_alive(popen.pid):
            _killpg(popen.pid, signal.SIGTERM)
            self._orphans[popen.pid] = now + self._orphan_timeout
        else:
            self._tell_reaper(f"-{popen.pid}")
        detail = f"pid {popen.pid}, exit code {code}"
        retries = proc.spec.respawn_max_retries
        if self._shutdown_at is not None:
            self._log(proc.spec.label, f"process has finished [{detail}]")
            proc.finished = True
        elif proc.spec.shutdown_on_exit:
            proc.finished = True
            self._log(proc.spec.label, f"process has finished [{detail}]", "ERROR" if code else "INFO")
            if code != 0 and self.failure is None:
                self.failure = (proc.spec.label, code)
            self._begin_shutdown(f"{proc.spec.label} exited (on_exit=shutdown)")
        elif proc.spec.respawn and (retries < 0 or proc.respawns < retries):
            delay = proc.spec.respawn_delay
            self._log(proc.spec.label, f"process has died [{detail}], respawning in {delay:g} s", "WARN")
            proc.restart_at = now + delay
        elif code != 0:
            proc.finished = True
            gave_up = f", not respawned again (respawn_max_retries={retries})" if proc.spec.respawn else ""
            self._log(proc.spec.label, f"process has died [{detail}]{gave_up} ({proc.spec.source})", "ERROR")
            if self.failure is None:
                self.failure = (proc.spec.label, code)
            self._begin_shutdown(f"{proc.spec.label} failed")
        else:
            proc.finished = True
            self._log(proc.spec.label, f"process has finished cleanly [pid {popen.pid}]")

    def _begin_shutdown(self, reason: str) -> None:
        if self._shutdown_at is not None:
            return
        self._shutdown_at = time.monotonic()
        self._log("launch", f"{reason}: stopping all processes (SIGINT)")
        for proc in self.processes:
            proc.restart_at = None
            if proc.popen is None:
                proc.finished = True
            self._signal(proc, signal.SIGINT)

    def _escalate(self, now: float) -> None:
        assert self._shutdown_at is not None
        sigint_timeout, sigterm_timeout = self._timeouts
        stage, sig = (1, signal.SIGTERM) if self._escalation == 0 else (2, signal.SIGKILL)
        due = self._shutdown_at + sigint_timeout + (sigterm_timeout if stage == 2 else 0.0)
        if self._escalation >= 2 or now < due:
            return
        self._escalation = stage
        for proc in self.processes:
            if proc.popen is not None:
                self._log(proc.spec.label, f"still running after shutdown began, sending {sig.name}", "WARN")
                self._signal(proc, sig)

    def _signal(self, proc: Managed, sig: signal.Signals) -> None:
        if proc.popen is not None and proc.popen.poll() is None:
            _killpg(proc.popen.pid, sig)

    # -- output --------------------------------------------------------------------------------------
    def _pump(self, pipe: IO[bytes], stream: IO[str], label: str, errors_of: Managed | None = None) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                if errors_of is not None and line.strip():
                    errors_of.last_error = line.strip()
                with self._print_lock:
                    try:
                        stream.write(f"[{label}] {line}\n")
                        stream.flush()
                    except (OSError, ValueError):  # our output is gone (closed pipe): keep draining
                        pass

    def _tell_reaper(self, line: str) -> None:
        if self._reaper is not None and self._reaper.stdin is not None:
            try:
                self._reaper.stdin.write(line + "\n")
                self._reaper.stdin.flush()
            except (OSError, ValueError):  # the reaper is gone (killed by hand): PDEATHSIG still holds
                pass

    def _log(self, label: str, message: str, level: str = "INFO") -> None:
        with self._print_lock:
            try:
                self._out.write(f"[{level}] [{label}]: {message}\n")
                self._out.flush()
            except (OSError, ValueError):
                pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
