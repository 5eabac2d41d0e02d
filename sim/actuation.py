"""Joint position targets -> MuJoCo actuator controls, whatever actuators the MJCF ships.

* Servo-like actuators (``<position>``, or ``<general>`` with an affine bias, on a joint or a
  tendon) take the target directly: ctrl is the value whose equilibrium length is the target.
  A tendon is assumed to move with the named joint (the Robotiq 2F-85 ``split`` tendon: length =
  driver joint angle when both drivers are coupled).
* Torque motors (``<motor>``, the Panda's) get a joint-space PD law with bias compensation,
  ``tau = kp (q* - q) - kd q' + qfrc_bias``, gains scaled by the joint-space inertia at the reference pose
  (``dof_M0``) so every joint has about the same bandwidth; evaluated before each physics step.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_stack.errors import UserError

BANDWIDTH_RAD_S = 40.0
DAMPING_RATIO = 1.0


@dataclass
class _Servo:
    actuator: int
    scale: float  # transmission length per joint unit


def _tendon_joints(model: mujoco.MjModel, tendon: int) -> dict[int, float]:
    start, count = model.tendon_adr[tendon], model.tendon_num[tendon]
    out = {}
    for w in range(start, start + count):
        if model.wrap_type[w] == mujoco.mjtWrap.mjWRAP_JOINT:
            out[int(model.wrap_objid[w])] = float(model.wrap_prm[w])
    return out


class JointActuation:
    """Maps profile-order position targets onto ``data.ctrl`` for one model."""

    def __init__(self, model: mujoco.MjModel, joint_names: list[str], where: str = "model"):
        self.model = model
        self.servos: dict[int, _Servo] = {}
        motor_idx, motor_act, motor_dof, motor_qpos, motor_gain = [], [], [], [], []
        self.joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
        self.qpos_index = np.array([model.jnt_qposadr[j] for j in self.joint_ids])
        self.dof_index = np.array([model.jnt_dofadr[j] for j in self.joint_ids])
        for i, (name, jid) in enumerate(zip(joint_names, self.joint_ids)):
            act, scale = self._find_actuator(jid)
            if act < 0:
                raise UserError(f"{where}: joint {name!r} has no actuator (add a <position> or <motor> for it)")
            gain0, bias1 = model.actuator_gainprm[act, 0], model.actuator_biasprm[act, 1]
            if model.actuator_biastype[act] == mujoco.mjtBias.mjBIAS_AFFINE and bias1 < 0 and gain0 > 0:
                self.servos[i] = _Servo(act, scale)
            elif model.actuator_biastype[act] == mujoco.mjtBias.mjBIAS_NONE and model.actuator_trntype[act] == mujoco.mjtTrn.mjTRN_JOINT:
                motor_idx.append(i)
                motor_act.append(act)
                motor_dof.append(model.jnt_dofadr[jid])
                motor_qpos.append(model.jnt_qposadr[jid])
                motor_gain.append(gain0 * model.actuator_gear[act, 0])
            else:
                raise UserError(f"{where}: joint {name!r}: unsupported actuator type (use a position servo or a torque motor)")
        self.motor_idx = np.array(motor_idx, dtype=int)
        self.motor_act = np.array(motor_act, dtype=int)
        self.motor_dof = np.array(motor_dof, dtype=int)
        self.motor_qpos = np.array(motor_qpos, dtype=int)
        self.motor_gain = np.array(motor_gain, dtype=float)
        inertia = model.dof_M0[self.motor_dof] if motor_idx else np.zeros(0)
        self.kp = inertia * BANDWIDTH_RAD_S**2
        self.kd = 2 * DAMPING_RATIO * inertia * BANDWIDTH_RAD_S
        self.target = np.zeros(len(joint_names))
        self.enabled = True

    def _find_actuator(self, joint: int) -> tuple[int, float]:
        m = self.model
        for a in range(m.nu):
            gear = float(m.actuator_gear[a, 0])
            if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and m.actuator_trnid[a, 0] == joint:
                return a, gear
            if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_TENDON:
                coefs = _tendon_joints(m, int(m.actuator_trnid[a, 0]))
                if joint in coefs:
                    return a, gear * sum(coefs.values())
        return -1, 1.0

    @property
    def has_motors(self) -> bool:
        return self.motor_idx.size > 0

    def set_target(self, data: mujoco.MjData, target: np.ndarray) -> None:
        """Set position targets (profile order); servos take them at once, motors on every ``apply``."""
        self.target = np.asarray(target, dtype=float).copy()
        for i, servo in self.servos.items():
            # relaxed servos follow the measured position (no restoring force)
            q = self.target[i] if self.enabled else data.qpos[self.qpos_index[i]]
            data.ctrl[servo.actuator] = self._ctrl_for(servo.actuator, q * servo.scale)

    def _ctrl_for(self, a: int, length: float) -> float:
        m = self.model
        ctrl = (-m.actuator_biasprm[a, 1] * length - m.actuator_biasprm[a, 0]) / m.actuator_gainprm[a, 0]
        if m.actuator_ctrllimited[a]:
            ctrl = float(np.clip(ctrl, *m.actuator_ctrlrange[a]))
        return ctrl

    def apply(self, data: mujoco.MjData) -> None:
        """Motor torques for the current state (call before every ``mj_step``)."""
        if not self.has_motors:
            return
        m = self.model
        if not self.enabled:
            data.ctrl[self.motor_act] = data.qfrc_bias[self.motor_dof] / self.motor_gain  # gravity-compensated, limp
            return
        q = data.qpos[self.motor_qpos]
        qd = data.qvel[self.motor_dof]
        tau = self.kp * (self.target[self.motor_idx] - q) - self.kd * qd + data.qfrc_bias[self.motor_dof]
        ctrl = tau / self.motor_gain
        lo, hi = m.actuator_ctrlrange[self.motor_act, 0], m.actuator_ctrlrange[self.motor_act, 1]
        limited = m.actuator_ctrllimited[self.motor_act].astype(bool)
        data.ctrl[self.motor_act] = np.where(limited, np.clip(ctrl, lo, hi), ctrl)
