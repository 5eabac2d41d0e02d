"""Scripted experts: teleoperator-like policies for the twin's tasks.

An expert sees what the observation dict holds (``joint_pos``, ``ee_pose``, ``object_state``) and
returns absolute joint position targets (profile order, arm then gripper) at the policy rate,
like a leader arm: a Cartesian setpoint moves towards the current phase's goal at a bounded
speed and differential IK (``robot_stack.arm.kinematics``) turns it into joint targets. The same
expert drives the gym env in-process and the twin over ROS (``expert_node``).

Grasps are top-down with the jaws across the object's faces; the grasp point is the midpoint of
the fingertip pads (SO-101) or the pinch site (parallel grippers).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_stack.arm.kinematics import Kinematics
from robot_stack.profile import RobotProfile
from robot_stack.sim.scene import GRASP_PADS
from robot_stack.sim.tasks import TaskConfig, load_task_config


def _mat(quat_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = quat_xyzw
    out = np.zeros(9)
    mujoco.mju_quat2Mat(out, np.array([w, x, y, z]))
    return out.reshape(3, 3)


def _xyzw(rot: np.ndarray) -> np.ndarray:
    wxyz = np.zeros(4)
    mujoco.mju_mat2Quat(wxyz, rot.ravel())
    return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


@dataclass
class GraspGeometry:
    """Where the grasp point and the gripper axes are, in the EE site frame."""

    offset: np.ndarray  # grasp point relative to the site, site frame
    approach: np.ndarray  # unit, site frame: the direction the fingers point
    jaw: np.ndarray  # unit, site frame, orthogonal to approach: the closing direction

    @classmethod
    def from_model(cls, kin: Kinematics, profile: RobotProfile, width: float) -> GraspGeometry:
        m = kin.model
        assert profile.sim is not None
        site = m.site(profile.sim.ee_site).id
        d = mujoco.MjData(m)
        approach = m.site_pos[site].copy()
        approach = approach / np.linalg.norm(approach) if np.linalg.norm(approach) > 1e-6 else np.array([0.0, 0.0, 1.0])
        site_rot = np.zeros(9)
        mujoco.mju_quat2Mat(site_rot, m.site_quat[site])
        approach = site_rot.reshape(3, 3).T @ approach  # body frame -> site frame
        pads = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in GRASP_PADS]
        if all(p >= 0 for p in pads) and profile.gripper is not None:
            gq = m.jnt_qposadr[m.joint(profile.gripper.joint).id]
            lo, hi = sorted((profile.gripper.closed, profile.gripper.open))

            def pads_at(angle: float) -> tuple[np.ndarray, np.ndarray, float]:
                d.qpos[gq] = angle
                mujoco.mj_kinematics(m, d)
                a, b = d.geom_xpos[pads[0]], d.geom_xpos[pads[1]]
                gap = float(np.linalg.norm(a - b) - m.geom_size[pads[0], 0] - m.geom_size[pads[1], 0])
                return a.copy(), b.copy(), gap

            for _ in range(40):  # bisect the jaw angle at which the pads are ``width`` apart
                mid = (lo + hi) / 2
                opens_up = pads_at(hi)[2] > pads_at(lo)[2]
                if (pads_at(mid)[2] < width) == opens_up:
                    lo = mid
                else:
                    hi = mid
            a, b, _ = pads_at((lo + hi) / 2)
            rot = d.site_xmat[site].reshape(3, 3)
            offset = rot.T @ ((a + b) / 2 - d.site_xpos[site])
            jaw = rot.T @ (b - a)
        else:
            offset = np.zeros(3)
            jaw = np.array([0.0, 1.0, 0.0])
        jaw = jaw - jaw.dot(approach) * approach
        return cls(offset=offset, approach=approach, jaw=jaw / np.linalg.norm(jaw))

    def top_down(self, yaw: float) -> np.ndarray:
        """Site rotation (world) with the fingers pointing down and the jaw axis at ``yaw``."""
        a, j = self.approach, self.jaw
        site = np.column_stack([a, j, np.cross(a, j)])
        A, J = np.array([0.0, 0.0, -1.0]), np.array([np.cos(yaw), np.sin(yaw), 0.0])
        world = np.column_stack([A, J, np.cross(A, J)])
        return world @ site.T

    def jaw_yaw(self, rot: np.ndarray) -> float:
        j = rot @ self.jaw
        return float(np.arctan2(j[1], j[0]))


class Expert:
    """Base: a Cartesian setpoint moved at bounded speed, turned into joint targets by IK."""

    speed = 0.25  # m/s for free-space moves
    careful_speed = 0.08  # m/s near objects

    def __init__(self, profile: RobotProfile, config: TaskConfig, kinematics: Kinematics | None = None,
                 seed: int = 0):
        self.profile, self.config = profile, config
        self.rng = np.random.default_rng(seed)
        self.kin = kinematics if kinematics is not None else Kinematics(profile)
        self.n_arm = len(profile.joints)
        self.dt = 1.0 / profile.control.policy_rate_hz
        self.geometry = GraspGeometry.from_model(self.kin, profile, self.jaw_width())
        self.gripper_open = profile.gripper.open if profile.gripper else None
        self.gripper_closed = profile.gripper.closed if profile.gripper else None
        self.reset()

    def jaw_width(self) -> float:
        """Pad gap (m) at which the grasp point is computed: the object's width for grasps."""
        return 2 * min(self.config.object.half_size[:2])

    def reset(self) -> None:
        self.q_cmd: np.ndarray | None = None
        self.setpoint: np.ndarray | None = None
        self.rot: np.ndarray | None = None
        self.phase = "start"
        self.steps = 0
        self.gripper = self.gripper_open

    # helpers
    def grasp_point(self, obs: dict) -> np.ndarray:
        pose = obs["ee_pose"]
        return pose[:3] + _mat(pose[3:]) @ self.geometry.offset

    def natural_yaw(self, obs: dict, symmetry: float, object_yaw: float) -> float:
        """Jaw yaw closest to the current one among ``object_yaw + k * symmetry``."""
        current = self.geometry.jaw_yaw(_mat(obs["ee_pose"][3:]))
        options = object_yaw + symmetry * np.arange(-4, 5)
        return float(options[np.argmin([abs(_wrap(o - current)) for o in options])])

    def move(self, obs: dict, goal: np.ndarray, speed: float) -> float:
        """Move the setpoint towards ``goal`` (grasp point, m); returns the measured distance to it."""
        if self.setpoint is None:
            self.setpoint = self.grasp_point(obs)
        step = goal - self.setpoint
        limit = speed * self.dt
        norm = float(np.linalg.norm(step))
        self.setpoint = goal.copy() if norm <= limit else self.setpoint + step * (limit / norm)
        return float(np.linalg.norm(self.grasp_point(obs) - goal))

    def command(self, obs: dict) -> np.ndarray:
        q_meas = np.asarray(obs["joint_pos"], dtype=float)
        if self.q_cmd is None:
            self.q_cmd = q_meas[: self.n_arm].copy()
        assert self.setpoint is not None
        if self.rot is None:
            site = self.setpoint
            self.q_cmd = self.kin.ik(site, None, self.q_cmd, iterations=30)
        else:
            site = self.setpoint - self.rot @ self.geometry.offset
            self.q_cmd = self.kin.ik(site, _xyzw(self.rot), self.q_cmd, iterations=30)
        out = q_meas.copy()
        out[: self.n_arm] = self.q_cmd
        if self.gripper is not None:
            out[self.n_arm] = self.gripper
        return out

    def act(self, obs: dict) -> np.ndarray:
        raise NotImplementedError


class ReachExpert(Expert):
    def act(self, obs: dict) -> np.ndarray:
        target = np.asarray(obs["object_state"][:3], dtype=float)
        if self.setpoint is None:
            self.setpoint = obs["ee_pose"][:3].copy()
        step = target - self.setpoint
        limit = self.speed * self.dt
        norm = float(np.linalg.norm(step))
        self.setpoint = target.copy() if norm <= limit else self.setpoint + step * (limit / norm)
        return self.command(obs)


class PickCubeExpert(Expert):
    """Hover above the cube, descend onto it, close, lift; grip again if the cube stays down.

    The hover point is drawn within ``hover_jitter`` of the cube's centre (a fresh draw per approach), so
    the demonstrations show the descent correcting a lateral error, as a learned policy's hover is never
    exact; without it every demo descends vertically and a policy that hovers 1 cm off lands beside the cube.
    """

    hover = 0.06
    hover_jitter = 0.015  # m, radius of the disc the hover point is drawn from
    clearance = 0.025  # m above the grasp height that the jaws keep until they are centred over the cube
    centred_within = 0.004  # m between the grasp point and the cube's vertical axis
    lift = 0.10
    close_steps = 6

    def reset(self) -> None:
        super().reset()
        self.hover_offset = np.zeros(2)

    def act(self, obs: dict) -> np.ndarray:
        state = np.asarray(obs["object_state"], dtype=float)
        cube, quat = state[:3], state[3:7]
        half = self.config.object.half_size[2]
        grasp = self.grasp_point(obs)
        self.steps += 1
        if self.phase == "start" or (self.phase == "lift" and cube[2] < half + 0.01 and self.steps > 15):
            yaw = np.arctan2(*(_mat(quat) @ [1.0, 0.0, 0.0])[[1, 0]])
            self.rot = self.geometry.top_down(self.natural_yaw(obs, np.pi / 2, yaw))
            self.phase, self.steps, self.gripper = "hover", 0, self.gripper_open
            self.setpoint = None
            r, angle = self.hover_jitter * np.sqrt(self.rng.random()), 2 * np.pi * self.rng.random()
            self.hover_offset = r * np.array([np.cos(angle), np.sin(angle)])
        if self.phase == "hover":
            goal = np.array([*(cube[:2] + self.hover_offset), half + self.hover])
            if self.move(obs, goal, self.speed) < 0.01 or self.steps > 40:
                self.phase, self.steps = "descend", 0
        if self.phase == "descend":  # level with the cube's top until centred over it, then straight down
            centred = np.linalg.norm(grasp[:2] - cube[:2]) < self.centred_within
            goal = np.array([cube[0], cube[1], half if centred else half + self.clearance])
            if self.move(obs, goal, self.careful_speed) < 0.006 or self.steps > 30:
                self.phase, self.steps = "close", 0
        if self.phase == "close":
            self.gripper = self.gripper_closed
            if self.steps >= self.close_steps:
                self.phase, self.steps = "lift", 0
        if self.phase == "lift":
            self.move(obs, np.array([grasp[0], grasp[1], half + self.lift]), self.careful_speed * 1.5)
        return self.command(obs)


class PushExpert(Expert):
    """Push the block along the line to its target with the closed jaws; if it arrives turned, grip it
    where it lies, turn it to the target yaw on the table and let go."""

    approach_height = 0.05
    regrip_height = 0.06
    push_height = 0.012
    push_step = 0.012  # m the setpoint leads the pusher per policy step
    standoff = 0.015  # m between the block's corner circle and the pusher before it descends
    lateral_tolerance = 0.012
    turn_steps = 8

    def __init__(self, profile: RobotProfile, config: TaskConfig, kinematics: Kinematics | None = None,
                 seed: int = 0):
        super().__init__(profile, config, kinematics, seed)
        self.pusher = self.geometry
        # grip with 5 mm to spare on the fixed-jaw side (closing pulls the block against it)
        self.gripper_geometry = GraspGeometry.from_model(self.kin, profile, 2 * min(config.object.half_size[:2]) + 0.01)

    def jaw_width(self) -> float:
        return 0.004  # the closed jaws are the pusher

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "pusher"):
            self.geometry = self.pusher
        self.turn = 0.0
        self.push_z = self.push_height
        self.last_z = np.inf

    def _use(self, geometry: GraspGeometry) -> None:
        if geometry is not self.geometry:
            self.geometry, self.setpoint = geometry, None

    def act(self, obs: dict) -> np.ndarray:
        state = np.asarray(obs["object_state"], dtype=float)
        block, block_yaw, goal, goal_yaw = state[:2], state[2], state[3:5], state[5]
        half = self.config.object.half_size[0]
        self.steps += 1
        to_goal = goal - block
        dist = float(np.linalg.norm(to_goal))
        u = to_goal / max(dist, 1e-9)
        yaw_error = float((block_yaw - goal_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)
        if self.phase == "start":
            self._use(self.pusher)
            self.gripper = self.gripper_closed
            self.rot = self.geometry.top_down(self.natural_yaw(obs, np.pi, np.arctan2(u[1], u[0]) + np.pi / 2))
            self.phase, self.steps = "above", 0
        grasp = self.grasp_point(obs)
        behind = block - u * (half * np.sqrt(2) + self.standoff)
        side = np.array([-u[1], u[0]])
        rel = grasp[:2] - block
        offset = float(rel @ side)  # sideways from the line through the block centre
        along = rel @ u  # negative when behind the block
        if self.phase == "above":
            if self.move(obs, np.array([*behind, self.approach_height]), self.speed) < 0.01 or self.steps > 40:
                self.phase, self.steps = "lower", 0
        if self.phase == "lower":
            reached = self.move(obs, np.array([*behind, self.push_height]), self.careful_speed * 1.5) < 0.006
            stalled = self.steps > 3 and abs(grasp[2] - self.last_z) < 0.001  # the fingers are on the table
            if reached or stalled or self.steps > 25:
                self.phase, self.steps = "push", 0
                self.push_z = max(self.push_height, float(grasp[2]) + (0.003 if stalled else 0.0))
                self.setpoint = np.array([*self.setpoint[:2], self.push_z])
        if self.phase == "push":
            if dist < 0.5 * self.config.success_distance:
                if abs(yaw_error) > 0.6 * self.config.yaw_tolerance:
                    self.phase, self.steps = "regrip", 0
                else:
                    self.move(obs, np.array([*grasp[:2], self.push_z]), self.careful_speed)
            elif abs(offset) > self.lateral_tolerance or along > -half:
                self.phase, self.steps = "retreat", 0
            else:  # drive forward, steering back onto the line through the block centre
                target = grasp[:2] + u * min(self.push_step, dist) - 0.5 * offset * side
                self.move(obs, np.array([*target, self.push_z]), self.careful_speed)
        if self.phase == "retreat":
            if self.move(obs, np.array([*grasp[:2], self.approach_height]), self.speed) < 0.01 or self.steps > 15:
                self.phase, self.steps = "start", 0
        self.last_z = float(grasp[2])
        # turning the block in place: grip it across two faces, turn the wrist, let go
        if self.phase == "regrip":
            lift = self.move(obs, np.array([*grasp[:2], self.regrip_height]), self.speed)
            if lift < 0.015 or self.steps > 15:
                self._use(self.gripper_geometry)
                self.gripper = self.gripper_open
                self.grip_yaw = self.natural_yaw(obs, np.pi / 2, block_yaw)
                self.rot = self.geometry.top_down(self.grip_yaw)
                self.turn = yaw_error
                self.phase, self.steps = "grip_above", 0
        if self.phase == "grip_above":
            if self.move(obs, np.array([*block, self.regrip_height]), self.speed) < 0.01 or self.steps > 40:
                self.phase, self.steps = "grip_descend", 0
        if self.phase == "grip_descend":
            if self.move(obs, np.array([*block, half]), self.careful_speed) < 0.006 or self.steps > 30:
                self.phase, self.steps = "grip_close", 0
        if self.phase == "grip_close":
            self.gripper = self.gripper_closed
            if self.steps > 5:
                self.phase, self.steps = "grip_turn", 0
        if self.phase == "grip_turn":
            self.rot = self.geometry.top_down(self.grip_yaw - self.turn * min(1.0, self.steps / self.turn_steps))
            self.move(obs, np.array([*grasp[:2], half + 0.002]), self.careful_speed)
            if self.steps > self.turn_steps + 3:
                self.phase, self.steps = "grip_open", 0
        if self.phase == "grip_open":
            self.gripper = self.gripper_open
            if self.steps > 4:
                self.phase, self.steps = "grip_up", 0
        if self.phase == "grip_up":
            if self.move(obs, np.array([*grasp[:2], self.regrip_height]), self.speed) < 0.015 or self.steps > 15:
                self.phase, self.steps = "start", 0
        return self.command(obs)


EXPERTS = {"reach": ReachExpert, "pick_cube": PickCubeExpert, "push": PushExpert}


def make_expert(profile: RobotProfile, task: TaskConfig | str, kinematics: Kinematics | None = None,
                seed: int = 0) -> Expert:
    config = load_task_config(task) if isinstance(task, str) else task
    return EXPERTS[config.kind](profile, config, kinematics, seed)
