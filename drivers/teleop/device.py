"""What every teleop device reports, whatever the hardware.

A device is polled at the teleop rate and returns a ``TeleopInput``: a normalised 6-D motion
command (each axis in [-1, 1], base frame: x forward, y left, z up), whether the operator has
control (deadman / intervention button), and edge events (gripper toggle, episode controls,
speed changes, e-stop). Leader arms report absolute joint positions instead of motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

EpisodeEvent = Literal["start", "save", "discard", "rerecord"]


@dataclass
class TeleopInput:
    linear: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular: np.ndarray = field(default_factory=lambda: np.zeros(3))
    deadman: bool = False
    gripper_toggle: bool = False
    gripper: float | None = None
    """Absolute gripper command in [0 = open, 1 = closed], for devices with an analogue trigger."""
    episode: EpisodeEvent | None = None
    speed_change: int = 0
    """+1 / -1 presses of the speed up / down buttons since the last poll."""
    estop: bool = False
    joints: np.ndarray | None = None
    """Leader arms: absolute positions of every follower joint (arm then gripper), rad."""


class TeleopDevice(Protocol):
    name: str

    def poll(self) -> TeleopInput:
        """Non-blocking: everything that happened since the last poll."""
        ...

    def close(self) -> None: ...


def deadzone(value: float, zone: float = 0.08) -> float:
    """Map an axis in [-1, 1] so that |value| < zone is 0 and the rest is rescaled to [0, 1]."""
    if abs(value) < zone:
        return 0.0
    return float(np.sign(value) * (abs(value) - zone) / (1.0 - zone))
