"""Entry-point plumbing shared by every robot_stack ROS node.

``run_node(factory)`` sets the ROS environment, initialises rclpy with the process arguments
(``--ros-args`` from a launch file included), builds the node, spins it and shuts down cleanly on
Ctrl-C/SIGTERM. A ``UserError`` raised while building or running becomes one log line and exit 2.

Signals: SIGINT and SIGTERM only record that a stop was asked for (:class:`StopSignals`); the stop
itself is rclpy's, whose C handler wakes a thread of its own that shuts the context down, so no
rclpy call and no lock ever runs inside a signal handler. Any number of signals, in any order and at
any moment (a terminal's Ctrl-C and the launcher's SIGINT arrive together; a dying launcher sends
SIGTERM), gives one clean stop and exit code 0: never a ``KeyboardInterrupt`` traceback, never a
handler re-entered while it holds rclpy's context lock.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from robot_stack.errors import UserError
from robot_stack.resources import apply_ros_environment

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT/SIGTERM handlers that only record the signals (async-signal-safe by construction).

    The handler appends to a list (atomic) and writes a byte to a non-blocking pipe (a self-pipe, so
    :meth:`wait` wakes at once); it takes no lock and calls nothing else, so a signal arriving while
    the handler runs, or while the program holds any lock, cannot deadlock. Installed before
    ``rclpy.init``, these are the handlers rclpy chains to and restores at shutdown.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.received: list[int] = []
        self._signals = signals
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        for sig in signals:
            signal.signal(sig, self._handle)

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        try:
            os.write(self._write, b"s")
        except OSError:  # pipe full: wait() is awake anyway
            pass

    def ignore_rest(self) -> None:
        """Ignore these signals from now on: call once everything is closed, so that the rest of a burst
        cannot end the exit with the default action (exit code -2/-15) while the interpreter finalizes
        (finalization puts the default action back in place of Python handlers)."""
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop signal has arrived (True) or ``timeout`` passes (False)."""
        import select

        if not self.received:
            select.select([self._read], [], [], timeout)
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass
        return self.requested


def run_node(factory: Callable[[], Any]) -> None:
    stop = StopSignals()
    apply_ros_environment()
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from robot_stack.bounded_take import BoundedExecutor

    # rclpy installs its SIGINT/SIGTERM handlers here, chained to ours: a signal shuts the context
    # down from rclpy's own thread and wakes the executor.
    rclpy.init(args=sys.argv)
    node = None
    code = 0
    try:
        # Built before the node, while the context is surely valid (built on a context that a signal
        # has just shut down, it fails half-made and prints an ignored exception when collected).
        executor = BoundedExecutor()  # every node's callbacks are short and non-blocking
        if not stop.requested:  # a signal before rclpy's handlers existed is still a stop
            node = factory()
            executor.add_node(node)
            executor.spin()  # until a signal (rclpy's handler shuts the context down) or the node ends it
    except UserError as err:
        print(f"[{getattr(node, 'get_name', lambda: 'robot_stack')()}] error: {err}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok() and not stop.requested:
            raise
        # shutting down (Ctrl-C, SIGTERM): a callback that was running when the context went
        # away fails to publish or wait; that is the shutdown, not an error
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
        stop.ignore_rest()
    sys.exit(code)


def steady_clock():  # rclpy.clock.Clock, imported lazily
    """A steady (monotonic) rclpy clock: timers on it keep running while sim time stands still."""
    from rclpy.clock import Clock, ClockType

    return Clock(clock_type=ClockType.STEADY_TIME)
