"""Real-time scheduling for the threads of a hardware driver that must not wait for a core.

On a loaded machine a thread that wakes up (the e-stop's, when its message arrives) queues for a core
behind every other runnable thread of the machine, and a thread that holds Python's interpreter lock can
be preempted while it holds it: on the 2-core test machine with two busy processes beside the arm driver,
1 of 10 e-stops waited 150 ms. As ros2_control's controller manager does (``thread_priority``, default 50,
``SCHED_FIFO``), the servo driver asks Linux for fixed real-time priorities: its control thread at
``priority``, its e-stop (the thread and its DDS participant's receive threads) one above, and the thread
that takes commands one below, so the e-stop preempts everything else the machine runs, the control loop
preempts all but the e-stop, and no thread of the driver that holds Python's interpreter lock is preempted
by the rest of the machine.

This needs permission: root, ``CAP_SYS_NICE``, or an ``rtprio`` limit for the user (e.g. ``@realtime -
rtprio 99`` in ``/etc/security/limits.conf``, as ros2_control's docs set up). Without it the driver logs
one line and runs with normal scheduling. Linux throttles real-time threads to 95% of each second
(``/proc/sys/kernel/sched_rt_runtime_us``), so a runaway one cannot lock the machine up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

DEFAULT_PRIORITY = 50
"""ros2_control's default ``thread_priority`` for its control loop."""

GIL_SWITCH_INTERVAL = 0.0005
"""Seconds a Python thread may hold the interpreter lock while another waits for it (Python's default: 5 ms).
Priorities order the threads for the CPU, not for the lock: a woken e-stop thread waited up to the
default 5 ms for each thread ahead of it (a busy Python thread delayed a real-time one by 5.3-6.6 ms,
p99-max; at 0.5 ms: 0.7-2.0 ms), and a command reaches the bus through two such hand-overs."""


def native_threads() -> set[int]:
    """Native ids of this process's threads now (Linux); empty where ``/proc`` is not there."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def set_fifo(priority: int, threads: Iterable[int] = (0,)) -> str | None:
    """Put ``threads`` (native ids, 0 = the calling thread) under ``SCHED_FIFO`` at ``priority``; ``None``
    when done, else why not (no permission, no such policy), for one log line."""
    if not hasattr(os, "sched_setscheduler"):
        return "this system has no SCHED_FIFO"
    param = os.sched_param(priority)
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
        except ProcessLookupError:  # a thread that has ended since it was listed
            continue
        except PermissionError:
            return ("no permission for real-time priority (run as a user with an rtprio limit, "
                    "e.g. '@realtime - rtprio 99' in /etc/security/limits.conf, or set thread_priority:=0)")
        except OSError as err:
            return f"real-time priority refused: {err.strerror}"
    return None
