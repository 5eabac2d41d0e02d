"""``node_log(node)``: a ROS node's logger as the ``log(level, text)`` callback of the ROS-free runtime classes
(``throttled_log`` for Python's ``logging``, in-process).

Each distinct message is throttled on its own (once per ``throttle_s``), so a burst of one warning
never hides another; rclpy's own throttling is per call site, which a shared callback would defeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def node_log(node: Any, throttle_s: float = 1.0) -> Callable[[str, str], None]:
    return throttled_log(node.get_logger(), throttle_s)


def throttled_log(logger: Any, throttle_s: float = 1.0) -> Callable[[str, str], None]:
    """``log(level, text)`` on any logger with info/warning/error methods (rclpy's or Python's)."""

    def info(text: str) -> None:
        logger.info(text)

    def warning(text: str) -> None:
        logger.warning(text)

    def error(text: str) -> None:
        logger.error(text)

    emit = {"info": info, "warning": warning, "error": error}  # one call site per severity, as rclpy requires
    last: dict[tuple[str, str], float] = {}

    def log(level: str, text: str) -> None:
        now = time.monotonic()
        if now - last.get((level, text), -float("inf")) >= throttle_s:
            last[(level, text)] = now
            emit[level](text)

    return log
