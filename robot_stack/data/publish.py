"""Publish a recorded episode on the robot contract, with its original relative timing.

Other nodes see a robot: ``joint_states``, ``ee_pose``, ``object_poses`` (from ``object_state``
when the task is known), ``teleop/intervention``, the recorded ``action`` on ``<controller>/commands``
and the gripper's ``commands`` at each recorded tick, and each camera frame once, at its capture
time, on ``<camera>/color/image_raw`` (+ ``camera_info`` when the episode or the profile has
intrinsics). Stamps are today's ROS time: ``start + (t - t0) / speed``. A recorder (or any node)
can consume it as it would the robot.

Publishing recorded commands while a robot is up would move it: if anything else already publishes
``joint_states`` the replay refuses (``force`` overrides).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError


@dataclass
class PublishReport:
    messages: dict[str, int]
    duration_s: float
    max_late_ms: float
    subscribers: int


def _camera_info(store: EpisodeStore, episode: int, profile: Any, cam: str) -> Any | None:
    """CameraInfo of a camera: the episode's stored intrinsics, else the profile's calibration file."""
    from robot_stack.camera_info import Intrinsics
    from robot_stack.data.export import _camera_info as info_msg

    stored = store.episodes[episode].extra.get("camera_info", {}).get(cam)
    if stored:
        return lambda stamp: info_msg(stored, stamp)
    spec = profile.camera(cam)
    if spec.intrinsics:
        try:
            intr = Intrinsics.load(profile.resolve(spec.intrinsics))
        except (OSError, UserError):
            return None
        return lambda stamp: intr.to_msg(spec.frame_id, stamp)
    return None


def publish_episode(store: EpisodeStore, episode: int, *, speed: float = 1.0, wait_s: float = 2.0,
                    force: bool = False, progress: bool = True) -> PublishReport:
    import rclpy
    from std_msgs.msg import Bool, Float64MultiArray
    from tqdm import tqdm

    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.data.export import _pose_array, _profile, _task_config
    from robot_stack.data.ops import camera_names
    from robot_stack.resources import apply_ros_environment
    from robot_stack.tasks import object_poses_from_state

    if not np.isfinite(speed) or speed <= 0:
        raise UserError("--speed must be > 0 (1 = recorded timing, 2 = twice as fast)")
    profile = _profile(store, episode)
    cams = [c for c in camera_names(store) if c in profile.camera_names]
    lowdim = [k for k in store.keys if not k.endswith("_image")]
    data = store.episode(episode, lowdim)
    for key in ("timestamp", "joint_pos", "action"):
        if key not in data:
            raise UserError(f"{store.path}: cannot publish without key {key!r}")
    info = store.episodes[episode]
    objects = _task_config(info.task) if "object_state" in data else None
    s = store.episode_slice(episode)
    t = data["timestamp"]
    t0 = float(t[0])

    # events: (relative time, order, kind, index); a camera frame once, at its capture time
    events: list[tuple[float, int, str, int]] = [(float(tk - t0), 0, "tick", k) for k, tk in enumerate(t)]
    for cam in cams:
        stamps = data[f"{cam}_stamp"]
        first = np.flatnonzero(np.concatenate([[True], np.diff(stamps) != 0]))
        events += [(float(stamps[k] - t0), 1, cam, int(k)) for k in first]
    events.sort()

    apply_ros_environment()
    rclpy.init()
    node = rclpy.create_node("episode_replay")
    try:
        c = Contract(profile)
        time.sleep(1.0)  # DDS discovery: see who is out there before publishing anything
        if not force and node.count_publishers(c.joint_states.name) > 0:
            raise UserError(f"something already publishes {node.resolve_topic_name(c.joint_states.name)} (a robot or twin?): "
                            "replaying would mix streams and send it the recorded commands; stop it or pass --force")
        pubs = {name: c.publisher(node, getattr(c, name)) for name in ("joint_states", "joint_commands", "intervention", "ee_pose")}
        if c.gripper_commands is not None:
            pubs["gripper"] = c.publisher(node, c.gripper_commands)
        if objects is not None:
            pubs["object_poses"] = c.publisher(node, c.object_poses)
        images = {cam: (c.publisher(node, c.camera(cam).image), c.publisher(node, c.camera(cam).info),
                        _camera_info(store, episode, profile, cam)) for cam in cams}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and node.count_subscribers(c.joint_states.name) == 0:
            time.sleep(0.05)
        subscribers = node.count_subscribers(c.joint_states.name)

        names, n_arm = profile.all_joint_names, len(profile.joint_names)
        counts: dict[str, int] = {}
        ros_start = node.get_clock().now().nanoseconds * 1e-9 + 0.05
        wall_start = time.monotonic() + 0.05
        max_late = 0.0
        bar = tqdm(total=len(t), desc=f"episode {episode}", unit="step", disable=not progress, leave=False)

        def send(key: str, pub: Any, msg: Any) -> None:
            pub.publish(msg)
            counts[key] = counts.get(key, 0) + 1

        for rel, _, kind, k in events:
            due = wall_start + max(rel, 0.0) / speed
            while (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
            max_late = max(max_late, time.monotonic() - due)
            stamp = convert.to_stamp(ros_start + rel / speed)
            if kind == "tick":
                vel = data["joint_vel"][k] if "joint_vel" in data else None
                send("joint_states", pubs["joint_states"], convert.make_joint_state(names, data["joint_pos"][k], vel, stamp=stamp))
                if "ee_pose" in data:
                    pose = data["ee_pose"][k]
                    send("ee_pose", pubs["ee_pose"], convert.make_pose(pose[:3], pose[3:], profile.frames.base, stamp))
                if objects is not None:
                    poses = object_poses_from_state(objects, data["object_state"][k])
                    send("object_poses", pubs["object_poses"], _pose_array(poses, profile.frames.base, stamp))
                if "intervention" in data:
                    send("intervention", pubs["intervention"], Bool(data=bool(data["intervention"][k])))
                action = np.asarray(data["action"][k], dtype=float)
                send("commands", pubs["joint_commands"], Float64MultiArray(data=action[:n_arm].tolist()))
                if "gripper" in pubs:
                    send("gripper", pubs["gripper"], Float64MultiArray(data=action[n_arm:].tolist()))
                bar.update(1)
            else:
                image_pub, info_pub, info_of = images[kind]
                frame = store.array(f"{kind}_image")[s.start + k]
                send(kind, image_pub, convert.array_to_image(frame, "rgb8", stamp, profile.camera(kind).frame_id))
                if info_of is not None:
                    send(f"{kind}/camera_info", info_pub, info_of(stamp))
        bar.close()
        time.sleep(0.5)  # let reliable QoS deliver the last messages before the publishers go away
        return PublishReport(messages=counts, duration_s=time.monotonic() - wall_start, max_late_ms=max_late * 1000,
                             subscribers=subscribers)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
