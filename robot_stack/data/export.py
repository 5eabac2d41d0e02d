"""Export episodes as rosbag2 folders with MCAP storage (one bag per episode), on the contract's topics.

Each bag replays what the recorder sampled, at the recorded tick times: ``joint_states`` (position,
velocity), ``<controller>/commands`` and ``<gripper_controller>/commands`` (the ``action``),
``ee_pose``, ``object_poses`` (from ``object_state`` when the episode's task is known),
``teleop/intervention``, ``<camera>/color/image_raw`` (``header.stamp`` = the frame's capture
stamp) and ``camera_info`` (when the episode stores intrinsics). Messages are built by rclpy and
serialised by ``rosbags`` (ROS 2 Kilted message definitions), so ``ros2 bag``, Foxglove, the mcap
readers, ``rosbags`` and ``rosbags-convert`` read them. The bag's ``custom_data`` carries the episode metadata and robot profile
(JSON), so ``robot-stack data import --format rosbag2`` restores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError


def _profile(store: EpisodeStore, episode: int):
    from robot_stack.profile import RobotProfile
    from robot_stack.typed_config import from_dict

    data = store.profile(episode)
    if not data:
        raise UserError(f"{store.path}: episode {episode} has no robot profile; cannot name its topics")
    return from_dict(RobotProfile, data, f"{store.path} episode {episode} profile")


def _task_config(task: str):
    from robot_stack.data.align import task_kind
    from robot_stack.tasks import load_task_config

    return load_task_config(task) if task_kind(task) else None


def _pose_array(rows: np.ndarray, frame_id: str, stamp: Any) -> Any:
    from geometry_msgs.msg import Pose, PoseArray

    msg = PoseArray()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    for row in rows:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in row[:3])
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in row[3:])
        msg.poses.append(pose)
    return msg


def _camera_info(info: dict[str, Any], stamp: Any) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=int(info["width"]), height=int(info["height"]), distortion_model=info["distortion_model"],
                     d=[float(v) for v in info["d"]], k=[float(v) for v in info["k"]], r=[float(v) for v in info["r"]],
                     p=[float(v) for v in info["p"]])
    msg.header.stamp, msg.header.frame_id = stamp, info.get("frame_id", "")
    return msg


PRIMITIVES = {"double": np.float64, "float": np.float32, "uint8": np.uint8, "octet": np.uint8, "char": np.uint8,
              "int8": np.int8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32, "int32": np.int32,
              "uint64": np.uint64, "int64": np.int64, "boolean": np.bool_}


def _element(field_type: str) -> str:
    """'sequence<double>' / 'double[9]' / 'sequence<double, 3>' -> 'double'."""
    inner = field_type[len("sequence<"):-1] if field_type.startswith("sequence<") else field_type.split("[")[0]
    return inner.split(",")[0].strip()


def to_rosbags(msg: Any, typestore: Any) -> Any:
    """The rosbags message equal to an rclpy message, field by field.

    Bags are serialised by rosbags' own CDR serialiser: rclpy pads a message that ends in an empty
    float64 sequence (``JointState.effort = []``) to 8 bytes, and rosbags rejects such messages
    ("CDR message size mismatch"); rclpy, ros2 bag and the mcap readers read rosbags' output."""
    module, name = type(msg).__module__.split(".")[0], type(msg).__name__
    cls = typestore.types[f"{module}/msg/{name}"]
    fields = {}
    for field_name, field_type in msg.get_fields_and_field_types().items():
        value = getattr(msg, field_name)
        element = _element(field_type)
        is_array = field_type.startswith("sequence<") or field_type.endswith("]")
        if "/" in element:  # nested message(s)
            fields[field_name] = [to_rosbags(v, typestore) for v in value] if is_array else to_rosbags(value, typestore)
        elif is_array and element in PRIMITIVES:
            fields[field_name] = np.asarray(value, dtype=PRIMITIVES[element])
        else:
            fields[field_name] = list(value) if is_array else value
    return cls(**fields)


def export_mcap(store: EpisodeStore, episodes: Sequence[int], out: Path) -> list[Path]:
    """One rosbag2 folder per episode under the new folder ``out`` (written whole, or not at all)."""
    from rosbags.typesys import Stores, get_typestore

    from robot_stack.data.ops import staged_folder

    typestore = get_typestore(Stores.ROS2_KILTED)
    missing = [k for k in ("timestamp", "joint_pos", "joint_vel", "action") if k not in store.keys]
    if missing:
        raise UserError(f"{store.path}: cannot export without keys {missing}")
    with staged_folder(out) as tmp:
        for episode in episodes:
            _write_bag(store, episode, tmp / f"episode_{episode:06d}", typestore)
    return [out / f"episode_{episode:06d}" for episode in episodes]


def _write_bag(store: EpisodeStore, episode: int, bag: Path, typestore: Any) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from std_msgs.msg import Bool, Float64MultiArray
    from tqdm import tqdm

    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.data.bag import CUSTOM_EPISODE, CUSTOM_PROFILE
    from robot_stack.data.ops import camera_names
    from robot_stack.tasks import object_poses_from_state

    profile = _profile(store, episode)
    contract = Contract(profile)
    cams = [c for c in camera_names(store) if c in profile.camera_names]
    data = store.episode(episode, [k for k in store.keys if not k.endswith("_image")])
    names, n_arm = profile.all_joint_names, len(profile.joint_names)
    info = store.episodes[episode]
    object_config = _task_config(info.task) if "object_state" in data else None
    camera_info = {c: v for c, v in info.extra.get("camera_info", {}).items() if c in cams}
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_custom_data(CUSTOM_EPISODE, json.dumps({k: v for k, v in info.to_json().items() if k != "profile"}))
    writer.set_custom_data(CUSTOM_PROFILE, json.dumps(store.profile(episode)))
    writer.open()
    try:
        def connection(topic):
            msgtype = f"{topic.type.__module__.split('.')[0]}/msg/{topic.type.__name__}"
            return writer.add_connection("/" + topic.name.lstrip("/"), msgtype, typestore=typestore)  # fully qualified

        def serialize_message(msg: Any) -> bytes:
            rb = to_rosbags(msg, typestore)
            return typestore.serialize_cdr(rb, rb.__msgtype__)

        conns = {"joint_states": connection(contract.joint_states), "commands": connection(contract.joint_commands)}
        if "ee_pose" in data:
            conns["ee_pose"] = connection(contract.ee_pose)
        if "intervention" in data:
            conns["intervention"] = connection(contract.intervention)
        if contract.gripper_commands is not None:
            conns["gripper"] = connection(contract.gripper_commands)
        if object_config is not None:
            conns["object_poses"] = connection(contract.object_poses)
        for cam in cams:
            conns[cam] = connection(contract.camera(cam).image)
            if cam in camera_info:
                conns[f"{cam}_info"] = connection(contract.camera(cam).info)
        s = store.episode_slice(episode)
        for i in tqdm(range(len(data["timestamp"])), desc=f"episode {episode}", unit="step", leave=False):
            t = float(data["timestamp"][i])
            stamp = convert.to_stamp(t)
            ns = stamp.sec * 1_000_000_000 + stamp.nanosec
            msg = convert.make_joint_state(names, data["joint_pos"][i], data["joint_vel"][i], stamp=stamp)
            writer.write(conns["joint_states"], ns, serialize_message(msg))
            action = np.asarray(data["action"][i], dtype=float)
            writer.write(conns["commands"], ns, serialize_message(Float64MultiArray(data=action[:n_arm].tolist())))
            if "gripper" in conns:
                writer.write(conns["gripper"], ns, serialize_message(Float64MultiArray(data=action[n_arm:].tolist())))
            if "ee_pose" in data:
                pose = data["ee_pose"][i]
                msg = convert.make_pose(pose[:3], pose[3:], profile.frames.base, stamp=stamp)
                writer.write(conns["ee_pose"], ns, serialize_message(msg))
            if "intervention" in data:
                writer.write(conns["intervention"], ns, serialize_message(Bool(data=bool(data["intervention"][i]))))
            if object_config is not None:
                poses = object_poses_from_state(object_config, data["object_state"][i])
                writer.write(conns["object_poses"], ns, serialize_message(_pose_array(poses, profile.frames.base, stamp)))
            for cam in cams:
                frame = store.array(f"{cam}_image")[s.start + i]
                cam_stamp = convert.to_stamp(float(data[f"{cam}_stamp"][i]))
                frame_id = profile.camera(cam).frame_id
                msg = convert.array_to_image(frame, "rgb8", cam_stamp, frame_id)
                writer.write(conns[cam], ns, serialize_message(msg))
                if cam in camera_info:
                    writer.write(conns[f"{cam}_info"], ns, serialize_message(_camera_info(camera_info[cam], cam_stamp)))
    finally:
        writer.close()
