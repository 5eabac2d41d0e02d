"""Recent samples of one stream in stamp order, and the sample in force at a given time.

The one sampler behind the recorder's alignment (``robot_stack.data.align``) and the policy's
observation history (``robot_stack.policies.observations``): both ask "what did this stream say at
time t", the value of the newest sample stamped at or before t.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Any


class StampedStream:
    """The last ``maxlen`` (stamp, value) samples in stamp order (thread-safe)."""

    def __init__(self, maxlen: int):
        self.stamps: deque[float] = deque(maxlen=maxlen)
        self.values: deque[Any] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, stamp: float, value: Any) -> bool:
        """Append a sample; one older than the newest is dropped (False), one at the same stamp replaces it."""
        with self._lock:
            if self.stamps and stamp <= self.stamps[-1]:
                if stamp < self.stamps[-1]:
                    return False
                self.values[-1] = value
                return True
            self.stamps.append(stamp)
            self.values.append(value)
            return True

    def at(self, t: float) -> tuple[float, Any] | None:
        """The newest sample stamped at or before ``t`` (1 ns of slack), or None."""
        with self._lock:
            i = bisect.bisect_right(self.stamps, t + 1e-9) - 1
            return (self.stamps[i], self.values[i]) if i >= 0 else None

    def oldest(self) -> tuple[float, Any] | None:
        with self._lock:
            return (self.stamps[0], self.values[0]) if self.stamps else None

    def newest_stamp(self) -> float | None:
        with self._lock:
            return self.stamps[-1] if self.stamps else None

    def clear(self) -> None:
        with self._lock:
            self.stamps.clear()
            self.values.clear()

    def __len__(self) -> int:
        return len(self.stamps)

    def __bool__(self) -> bool:
        return bool(self.stamps)
