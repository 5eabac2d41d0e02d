"""Stop what a launch started once its runner is gone, however it went (even ``kill -9``).

The supervisor starts this script (standard library only, run with ``python -I -S``: no site
packages, so it starts in milliseconds) in a session of its own, with a pipe on its stdin, and writes
``+<pgid>`` when it starts a process group and ``-<pgid>`` when that group is gone. When stdin
closes (the runner exited: the kernel closes the pipe even after SIGKILL), every group still alive
gets SIGTERM, then SIGKILL after the grace period given as the first argument. Terminal and stop
signals are ignored: only the runner's end ends it. After a clean launch no group is left and it exits
at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def group_alive(pgid: int) -> bool:
    """Some process of the group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_all(groups: set[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    grace = float(argv[1]) if len(argv) > 1 else 10.0
    groups: set[int] = set()
    for line in sys.stdin:
        sign, number = line[:1], line[1:].strip()
        if sign in "+-" and number.isdigit():
            (groups.add if sign == "+" else groups.discard)(int(number))
    groups = {g for g in groups if group_alive(g)}
    if not groups:
        return 0
    try:
        sys.stderr.write(f"robot-stack launch: the runner ended with {len(groups)} process group(s) still "
                         f"running; stopping them (SIGTERM, SIGKILL after {grace:g} s)\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # the terminal may be gone too
        pass
    _signal_all(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        groups = {g for g in groups if group_alive(g)}
        if not groups:
            return 0
        time.sleep(0.05)
    _signal_all(groups, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
