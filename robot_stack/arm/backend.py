"""The one interface an arm backend implements (MuJoCo twin, servo bus, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class JointReading:
    """One measurement of every joint, in ``profile.all_joint_names`` order (arm, then gripper)."""

    position: np.ndarray  # rad (m for prismatic joints)
    velocity: np.ndarray  # rad/s
    effort: np.ndarray  # N·m
    stamp: float  # seconds on the node clock when measured


class ArmBackend(Protocol):
    def read(self) -> JointReading:
        """Measure all joints now."""
        ...

    def write(self, position: np.ndarray) -> None:
        """Send position targets for all joints; the caller has already made them safe."""
        ...

    def set_torque(self, enabled: bool) -> None:
        """Energise (True) or relax (False) the motors."""
        ...

    def close(self) -> None:
        """Release the device (called once at shutdown)."""
        ...

    # optional: ``torque_enabled() -> bool``, whether the motors are energised now (read back at start)
