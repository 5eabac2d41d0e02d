"""The RL view of the robot contract: a flat observation vector and a normalised, bounded action.

The contract's action is an absolute joint position target at the policy rate. The policy acts in
``[-1, 1]^d`` instead: arm joints move by at most ``max_joint_step`` rad per step from the
*measured* position (HIL-SERL's bounded relative actions, in joint space), the gripper is either an
absolute continuous command (-1 closed, +1 open) or, with a discrete gripper critic, one of close
(-1), stay (0) and open (+1). ``from_target`` is the inverse: a human's teleop command (or a
scripted expert's) is stored in the same space and frame as the policy's own actions, and
``to_target(from_target(x))`` gives ``x`` back wherever ``x`` is within one step's bounds.

The observation vector concatenates the configured contract keys (``joint_pos`` scaled to [-1, 1]
by the joint limits, ``joint_vel`` by the velocity limits, ``ee_pose``, ``object_state``), the
object's position relative to the end effector, and (for the ``conv`` encoder) the camera images,
resized and flattened as float32 0..255 at the end.
"""

from __future__ import annotations

import cv2
import numpy as np

from robot_stack.errors import UserError
from robot_stack.policies.hil.config import HILConfig
from robot_stack.arm.safety import ArmSafety
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.tasks import OBJECT_DIMS

RELATIVE_DIMS = {"reach": 3, "pick_cube": 3, "push": 2}
"""Leading object_state entries that are a position comparable with the end effector's."""
RELATIVE_SCALE = 10.0  # m -> ~unit scale for the table-top distances of the twin's tasks
VEL_CLIP = 5.0


class RLSpace:
    """Observation and action conversion between the contract and the RL agent."""

    def __init__(self, profile: RobotProfile | str, task_kind: str | None, config: HILConfig):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.task_kind = task_kind
        self.config = config
        self.obs_config = config.observation
        self.discrete_gripper = config.agent.gripper_critic
        self.n_arm = len(self.profile.joints)
        safety = ArmSafety(self.profile)
        self.lower, self.upper = safety.lower.astype(np.float64), safety.upper.astype(np.float64)
        self.n_all = self.lower.size
        self.has_gripper = self.profile.gripper is not None
        if self.discrete_gripper and not self.has_gripper:
            raise UserError(f"agent.gripper_critic needs a gripper; robot {self.profile.name!r} has none")
        steps = config.action.max_joint_steps or (config.action.max_joint_step,) * self.n_arm
        if len(steps) != self.n_arm:
            raise UserError(f"action.max_joint_steps: {len(steps)} values for {self.n_arm} arm joints")
        self.max_step = np.asarray(steps, dtype=np.float64)
        vel = list(self.profile.velocity_limits)
        vel += [float(np.mean(vel))] * (self.n_all - len(vel))
        self.vel_scale = np.asarray(vel, dtype=np.float64)
        for key in self.obs_config.keys:
            if key not in ("joint_pos", "joint_vel", "ee_pose", "object_state"):
                raise UserError(f"observation.keys: unknown key {key!r} (use joint_pos, joint_vel, ee_pose, object_state)")
            if key == "object_state" and task_kind is None:
                raise UserError("observation.keys: object_state needs a task")
        self.relative = self.obs_config.relative_object and task_kind in RELATIVE_DIMS and \
            {"ee_pose", "object_state"} <= set(self.obs_config.keys)
        self.image_keys = tuple(f"{cam}_image" for cam in self.obs_config.cameras)
        for cam in self.obs_config.cameras:
            self.profile.camera(cam)  # one-line error for an unknown camera
        self.image_shape = tuple(config.agent.image_shape)
        dims = {"joint_pos": self.n_all, "joint_vel": self.n_all, "ee_pose": 7,
                "object_state": OBJECT_DIMS.get(task_kind or "", 0)}
        self.state_dim = sum(dims[k] for k in self.obs_config.keys) + (RELATIVE_DIMS[task_kind] if self.relative else 0)
        self.image_dim = int(np.prod(self.image_shape)) * len(self.image_keys)

    # -- observations ---------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return self.state_dim + self.image_dim

    @property
    def act_dim(self) -> int:
        return self.n_arm + (1 if self.has_gripper else 0)

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Contract observation keys this space reads."""
        return tuple(self.obs_config.keys) + self.image_keys

    def observation(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Contract observation dict -> float32 vector of length ``obs_dim``."""
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise UserError(f"observation lacks {', '.join(missing)} (has {', '.join(obs) or 'nothing'})")
        parts = []
        for key in self.obs_config.keys:
            value = np.asarray(obs[key], dtype=np.float64).ravel()
            if key == "joint_pos":
                value = 2 * (value - self.lower) / (self.upper - self.lower) - 1
            elif key == "joint_vel":
                value = np.clip(value / self.vel_scale, -VEL_CLIP, VEL_CLIP)
            parts.append(value)
        if self.relative:
            k = RELATIVE_DIMS[self.task_kind]
            ee = np.asarray(obs["ee_pose"], dtype=np.float64)[:k]
            parts.append(RELATIVE_SCALE * (np.asarray(obs["object_state"], dtype=np.float64)[:k] - ee))
        for key in self.image_keys:
            parts.append(self.image(obs[key]).astype(np.float64).ravel())
        vec = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if vec.size != self.obs_dim:
            raise UserError(f"observation has {vec.size} features, expected {self.obs_dim} (wrong robot or task?)")
        return vec

    def image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 ``image_shape`` (area-resampled)."""
        h, w = self.image_shape[:2]
        image = np.asarray(image, dtype=np.uint8)
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return image.reshape(self.image_shape)

    # -- actions --------------------------------------------------------------------------------
    def gripper_closed_state(self, current_joint_pos: np.ndarray, previous_target: np.ndarray | None = None) -> bool:
        """Whether the gripper counts as closed: its last command (if known) or its measured position."""
        g = self.profile.gripper
        assert g is not None
        value = float((previous_target if previous_target is not None else current_joint_pos)[self.n_arm])
        return abs(value - g.closed) < abs(value - g.open)

    def to_target(self, action: np.ndarray, current_joint_pos: np.ndarray,
                  previous_target: np.ndarray | None = None) -> np.ndarray:
        """Normalised action -> absolute joint target (the contract's action), within the joint limits.

        ``previous_target`` (the last command) lets a discrete ``stay`` keep the gripper's command."""
        action = np.asarray(action, dtype=np.float64).ravel()
        current = np.asarray(current_joint_pos, dtype=np.float64).ravel()
        if action.size != self.act_dim or current.size != self.n_all:
            raise ValueError(f"action has {action.size} values (expected {self.act_dim}), "
                             f"joint_pos {current.size} (expected {self.n_all})")
        action = np.clip(np.nan_to_num(action), -1.0, 1.0)
        target = current.copy()
        target[: self.n_arm] = current[: self.n_arm] + action[: self.n_arm] * self.max_step
        if self.has_gripper:
            g = self.profile.gripper
            a = action[self.n_arm]
            if self.discrete_gripper:
                command = int(np.rint(a))
                if command == 0:
                    closed = self.gripper_closed_state(current, previous_target)
                else:
                    closed = command < 0
                target[self.n_arm] = g.closed if closed else g.open
            else:
                target[self.n_arm] = g.closed + (a + 1) / 2 * (g.open - g.closed)
        return np.clip(target, self.lower, self.upper)

    def from_target(self, target: np.ndarray, current_joint_pos: np.ndarray,
                    previous_target: np.ndarray | None = None) -> np.ndarray:
        """Absolute joint target (a teleop or expert command) -> the normalised action that reproduces it.

        Moves beyond one step's bound are clipped to it (the stored action is what ``to_target`` executes)."""
        target = np.asarray(target, dtype=np.float64).ravel()
        current = np.asarray(current_joint_pos, dtype=np.float64).ravel()
        if target.size != self.n_all or current.size != self.n_all:
            raise ValueError(f"target and joint_pos need {self.n_all} values, got {target.size} and {current.size}")
        action = np.zeros(self.act_dim)
        action[: self.n_arm] = (target[: self.n_arm] - current[: self.n_arm]) / self.max_step
        if self.has_gripper:
            g = self.profile.gripper
            t = target[self.n_arm]
            if self.discrete_gripper:
                want_closed = abs(t - g.closed) < abs(t - g.open)
                action[self.n_arm] = 0.0 if want_closed == self.gripper_closed_state(current, previous_target) \
                    else (-1.0 if want_closed else 1.0)
            else:
                action[self.n_arm] = 2 * (t - g.closed) / (g.open - g.closed) - 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def gripper_toggles(self, action: np.ndarray, current_joint_pos: np.ndarray,
                        previous_target: np.ndarray | None = None) -> bool:
        """Whether a discrete gripper action opens or closes the gripper (for the toggle penalty)."""
        if not self.discrete_gripper:
            return False
        command = int(np.rint(np.clip(np.asarray(action, dtype=np.float64).ravel()[self.n_arm], -1, 1)))
        return command != 0 and (command < 0) != self.gripper_closed_state(current_joint_pos, previous_target)
