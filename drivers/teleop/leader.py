"""Leader-arm teleop: a second servo-bus arm, relaxed, whose joint positions the follower mirrors.

The leader has its own robot profile (``<follower>_leader`` by default, e.g. ``so101_leader``)
naming its bus, servo IDs and calibration; its joints map one to one, in order, onto the
follower's (arm joints then gripper). The gripper is mapped linearly from the leader's
open..closed range onto the follower's. The operator always has control (no deadman): stop
the teleop node to hand control back.
"""

from __future__ import annotations

import numpy as np

from robot_stack.drivers.teleop.device import TeleopInput
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile, load_profile


class LeaderArmDevice:
    name = "leader"

    def __init__(self, follower: RobotProfile, port: str = "", leader: RobotProfile | str | None = None):
        from robot_stack.drivers.servo.backend import ServoBusBackend

        if not isinstance(leader, RobotProfile):
            leader = load_profile(leader or f"{follower.name}_leader")
        if len(leader.all_joint_names) != len(follower.all_joint_names):
            raise UserError(f"leader {leader.name!r} has {len(leader.all_joint_names)} joints but follower "
                            f"{follower.name!r} has {len(follower.all_joint_names)}: they must match one to one")
        self.leader, self.follower = leader, follower
        self.backend = ServoBusBackend(leader, port=port or None, torque_on=False)
        self.deadman = True

    def gripper_map(self, value: float) -> float:
        lg, fg = self.leader.gripper, self.follower.gripper
        if lg is None or fg is None:
            return value
        fraction = (value - lg.open) / (lg.closed - lg.open)
        return fg.open + float(np.clip(fraction, 0.0, 1.0)) * (fg.closed - fg.open)

    def poll(self) -> TeleopInput:
        joints = self.backend.read().position.copy()
        if self.follower.gripper is not None:
            joints[-1] = self.gripper_map(joints[-1])
        return TeleopInput(deadman=self.deadman, joints=joints)

    def close(self) -> None:
        self.backend.close()
