"""The cell's arm as its servos drive it: a servo-bus ``Plant`` on the cell scene, with the arm's gap.

Between the bus (goal ticks in, present ticks out) and MuJoCo sit the effects a real servo arm has
and the twin lacks:

* calibration error: each joint's true zero is ``zero_offset`` away from where the calibration file
  says, so readings are off by it and goals land off by it;
* actuation latency: a goal takes effect ``actuation_latency_ms`` after it is written;
* backlash: the position the servo reaches trails the goal by up to half the backlash, on the side
  it came from (a play operator on the goal);
* dead band: within ``deadband`` of the goal the servo stops driving (the joint rests or sags);
* gain, friction, damping and gravity compensation: the model's servo stiffness, joint friction loss,
  damping and the share of the arm's weight the servos hold;
* encoders: readings quantised to ``encoder_ticks`` per turn and noisy.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from robot_stack.errors import UserError
from robot_stack.sim.cell.config import ArmGap
from robot_stack.sim.robot import SimRobot


class CellArm:
    """``robot_stack.drivers.servo.emulator.Plant`` of the arm in the cell's scene (call ``before_step``
    before every ``mj_step``)."""

    def __init__(self, sim: SimRobot, gap: ArmGap, rng: np.random.Generator):
        m = sim.model
        n = len(sim.profile.all_joint_names)
        missing = [name for i, name in enumerate(sim.profile.all_joint_names) if i not in sim.actuation.servos]
        if missing:
            raise UserError(f"robot {sim.profile.name!r}: joint {missing[0]!r} is not driven by a position servo "
                            "(the cell emulates servo-bus arms)")
        self.model, self.data, self.gap = m, sim.data, gap
        self.qidx, self.didx = sim.qpos_index, sim.dof_index
        self.act = np.array([sim.actuation.servos[i].actuator for i in range(n)])
        self.scale = np.array([sim.actuation.servos[i].scale for i in range(n)])
        self.gain = m.actuator_gainprm[self.act, 0] * gap.gain
        self.bias = m.actuator_biasprm[self.act, :3].copy()
        self.bias[:, 1:] *= gap.gain
        self.ctrl_gain = m.actuator_gainprm[self.act, 0].copy()  # ctrl <-> length mapping at nominal gain
        self.ctrl_bias = m.actuator_biasprm[self.act, :2].copy()
        self.force_range = m.actuator_forcerange[self.act].copy()
        m.actuator_gainprm[self.act, 0] = self.gain
        m.actuator_biasprm[self.act, :3] = self.bias
        m.dof_frictionloss[self.didx] += gap.friction_nm
        m.dof_damping[self.didx] *= gap.damping_scale
        held = m.body_gravcomp > 0  # the robot's bodies (the scene compensates the arm's weight)
        m.body_gravcomp[held] = gap.gravity_compensation

        self.offset = rng.uniform(-1.0, 1.0, n) * math.radians(gap.zero_offset_deg)
        """True zero minus the calibration's zero, per joint (rad)."""
        self.rng = rng
        self.noise = math.radians(gap.encoder_noise_deg)
        self.quantum = 2 * math.pi / gap.encoder_ticks if gap.encoder_ticks else 0.0
        self.latency = gap.actuation_latency_ms / 1000.0
        self.backlash = math.radians(gap.backlash_deg)
        self.deadband = math.radians(gap.deadband_deg)
        q = self.data.qpos[self.qidx].copy()
        self.goal = q.copy()
        self.reached = q.copy()  # the play operator's output: where the gears put the servo's target
        self.torque = np.ones(n, bool)
        self.pending: deque[tuple[float, int, float]] = deque()
        self.time = 0.0

    # -- Plant ------------------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.data
        q = d.qpos[self.qidx] - self.offset
        if self.noise:
            q = q + self.rng.normal(0.0, self.noise, q.shape)
        if self.quantum:
            q = np.round(q / self.quantum) * self.quantum
        torque = d.actuator_force[self.act] * self.scale
        return q, d.qvel[self.didx].copy(), torque

    def actuate(self, joint: int, torque_on: bool, goal: float, effort_limit: float) -> None:
        m, a = self.model, self.act[joint]
        if torque_on != self.torque[joint]:
            self.torque[joint] = torque_on
            m.actuator_gainprm[a, 0] = self.gain[joint] if torque_on else 0.0
            m.actuator_biasprm[a, 1:3] = self.bias[joint, 1:3] if torque_on else 0.0
            if torque_on:  # the servo takes its goal from where it is, like a fresh torque enable
                self.reached[joint] = self.data.qpos[self.qidx[joint]]
        limit = min(effort_limit, float(self.force_range[joint, 1]))
        m.actuator_forcerange[a] = (-limit, limit)
        true_goal = goal + self.offset[joint]
        if self.latency > 0:
            self.pending.append((self.time + self.latency, joint, true_goal))
        else:
            self.goal[joint] = true_goal

    # -- physics ----------------------------------------------------------------------------------
    def before_step(self, t: float) -> None:
        """Servo behaviour for the physics step at sim time ``t``: due goals, backlash, dead band -> ctrl."""
        self.time = t
        while self.pending and self.pending[0][0] <= t:
            _, joint, goal = self.pending.popleft()
            self.goal[joint] = goal
        half = 0.5 * self.backlash
        self.reached = np.clip(self.reached, self.goal - half, self.goal + half)
        target = self.reached.copy()
        if self.deadband > 0:
            q = self.data.qpos[self.qidx]
            rest = np.abs(target - q) < self.deadband
            target[rest] = q[rest]
        length = target * self.scale
        ctrl = (-self.ctrl_bias[:, 1] * length - self.ctrl_bias[:, 0]) / self.ctrl_gain
        limited = self.model.actuator_ctrllimited[self.act].astype(bool)
        lo, hi = self.model.actuator_ctrlrange[self.act].T
        self.data.ctrl[self.act] = np.where(limited, np.clip(ctrl, lo, hi), ctrl)

    def true_positions(self) -> np.ndarray:
        return self.data.qpos[self.qidx].copy()
