"""The observation and action definitions shared by the in-process gym env and the ROS path.

Keys (also the dataset keys the recorder writes under ``data/``):

* ``joint_pos`` (n_all,) float32, rad: ``joint_states`` position, arm joints then gripper;
* ``joint_vel`` (n_all,) float32, rad/s;
* ``ee_pose`` (7,) float32: ``ee_pose`` position xyz (m) + quaternion xyzw, base frame;
* ``object_state`` (k,) float32: the task state derived from the contract's ``object_poses``
  (``robot_stack.tasks.object_state_from_poses``; reach: target xyz; pick_cube: cube xyz + quat
  xyzw; push: block x, y, yaw + target x, y, yaw). The twin publishes ``object_poses``; on hardware a
  perception node does;
* ``<camera>_image`` (H, W, 3) uint8 RGB for each enabled camera.

The action is the absolute joint position target (n_all,) float32 at the policy rate.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from robot_stack.arm.safety import ArmSafety
from robot_stack.profile import RobotProfile
from robot_stack.tasks import OBJECT_DIMS


def joint_bounds(profile: RobotProfile) -> tuple[np.ndarray, np.ndarray]:
    safety = ArmSafety(profile)
    return safety.lower.astype(np.float32), safety.upper.astype(np.float32)


def observation_space(profile: RobotProfile, task_kind: str | None, cameras: list[str]) -> spaces.Dict:
    lower, upper = joint_bounds(profile)
    n = lower.size
    vel = np.concatenate([profile.velocity_limits, [np.inf] * (n - len(profile.joints))]).astype(np.float32) * 2
    items: dict[str, spaces.Space] = {
        "joint_pos": spaces.Box(lower - 0.05, upper + 0.05, (n,), np.float32),
        "joint_vel": spaces.Box(-vel, vel, (n,), np.float32),
        "ee_pose": spaces.Box(-np.inf, np.inf, (7,), np.float32),
    }
    if task_kind is not None:
        items["object_state"] = spaces.Box(-np.inf, np.inf, (OBJECT_DIMS[task_kind],), np.float32)
    for name in cameras:
        cam = profile.camera(name)
        items[f"{name}_image"] = spaces.Box(0, 255, (cam.height, cam.width, 3), np.uint8)
    return spaces.Dict(items)


def action_space(profile: RobotProfile) -> spaces.Box:
    lower, upper = joint_bounds(profile)
    return spaces.Box(lower, upper, (lower.size,), np.float32)


def make_observation(sensors, task_kind: str | None = None,  # runtime.Sensors
                     images: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The observation of what the robot publishes (``TwinRuntime.sense()``), with the ROS path's value functions."""
    from robot_stack.policies.observations import object_values, observation_dict, pose_vector

    state = None
    if task_kind is not None and sensors.object_poses is not None:
        state = object_values(task_kind, [pose_vector(p[:3], p[3:]) for p in sensors.object_poses])
    return observation_dict(sensors.reading.position, sensors.reading.velocity, sensors.ee_pose, state, images)
