"""Import rosbag2 folders (MCAP or sqlite3 storage) into an episode store, one bag per episode.

The bag's contract topics (``joint_states``, ``<controller>/commands``, ``<controller>/joint_trajectory``,
the gripper's ``commands``, ``ee_pose``, ``object_poses``, ``teleop/intervention``,
``<camera>/color/image_raw`` and ``camera_info``) are replayed in log-time order through the
recorder's own alignment (:class:`robot_stack.data.align.Streams`): the log time stands in for
the arrival time, tick ``t`` is assembled once the log has passed ``t + latency``, and each stream
contributes its newest sample captured at or before the tick. So a bag imports as recording it
live would have. Bags written by ``robot-stack data export --mcap`` carry the episode's metadata
(robot profile, task, rate) and import back to the same data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.errors import UserError

CUSTOM_EPISODE = "robot_stack.episode"
CUSTOM_PROFILE = "robot_stack.profile"
SLACK_S = 1e-6
"""Stamps written at tick times come back from nanoseconds up to a float64 ulp (~0.2 us) apart."""
WRITE_BATCH = 32


@dataclass(frozen=True)
class BagImportConfig:
    robot: str | None = None
    """Robot profile name or YAML (default: the one stored in the bag by ``export --mcap``)."""
    rate_hz: float | None = None
    """Sampling rate (default: the bag's recorded rate, else the profile's policy rate)."""
    latency_s: float = 0.1
    tolerance_s: float = 0.0
    cameras: tuple[str, ...] | None = None
    """Cameras to import (default: every profile camera with images in the bag)."""
    task: str | None = None
    image_codec: str = "blosc"


def bag_folders(paths: Sequence[Path]) -> list[Path]:
    """Each path is a rosbag2 folder, or a folder of them (as ``export --mcap`` writes)."""
    out = []
    for path in paths:
        if (path / "metadata.yaml").exists():
            out.append(path)
        elif path.is_dir() and (inner := sorted(p.parent for p in path.glob("*/metadata.yaml"))):
            out.extend(inner)
        else:
            raise UserError(f"{path}: not a rosbag2 folder (no metadata.yaml) nor a folder of them")
    return out


def _custom_data(bag: Path) -> dict[str, str]:
    import yaml

    meta = yaml.safe_load((bag / "metadata.yaml").read_text()) or {}
    return dict(meta.get("rosbag2_bagfile_information", {}).get("custom_data") or {})


def _profile(config: BagImportConfig, custom: dict[str, str], bag: Path):
    from robot_stack.profile import RobotProfile, load_profile
    from robot_stack.typed_config import from_dict

    if config.robot:
        return load_profile(config.robot)
    if CUSTOM_PROFILE in custom:
        return from_dict(RobotProfile, json.loads(custom[CUSTOM_PROFILE]), f"{bag} robot profile")
    raise UserError(f"{bag}: the bag names no robot profile; pass --robot (e.g. --robot so101)")


def import_bag(bag: Path, out: Any, config: BagImportConfig) -> int:
    """Append the bag as one episode to the open store ``out``; returns the episode index."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError
    from tqdm import tqdm

    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.data.align import Streams, image_array, missed_frames, task_kind, tolerances
    from robot_stack.typed_config import to_dict

    try:
        reader = Reader(bag)
        reader.open()
    except ReaderError as err:
        raise UserError(f"{bag}: cannot read the bag ({err})") from None
    try:
        custom = _custom_data(bag)
        stored = json.loads(custom.get(CUSTOM_EPISODE, "{}"))
        profile = _profile(config, custom, bag)
        topics = {c.topic.lstrip("/"): c for c in reader.connections}
        contract = Contract(profile)
        wanted = list(config.cameras) if config.cameras is not None else [
            c for c in profile.camera_names if contract.camera(c).image.name in topics]
        for cam in wanted:
            profile.camera(cam)  # one-line error for an unknown camera
            if contract.camera(cam).image.name not in topics:
                raise UserError(f"{bag}: no {contract.camera(cam).image.name} topic for camera {cam!r}")
        profile = profile.with_cameras(wanted)
        contract = Contract(profile)
        if contract.joint_states.name not in topics:
            raise UserError(f"{bag}: no {contract.joint_states.name} topic (topics: {', '.join(sorted(topics)) or 'none'})")
        rate = config.rate_hz or stored.get("extra", {}).get("record_rate_hz") or profile.control.policy_rate_hz
        task = config.task if config.task is not None else stored.get("task", "")
        kind = task_kind(task)
        tol = tolerances(profile, config.tolerance_s)
        duration = max(reader.duration * 1e-9, 1e-3)
        rates = {"joint_states": topics[contract.joint_states.name].msgcount / duration}
        for cam in profile.camera_names:
            rates[cam] = topics[contract.camera(cam).image.name].msgcount / duration
        streams = Streams(profile, tol, config.latency_s + max(tol.values()) + 1.0, task_kind=kind, slack_s=SLACK_S,
                          rates={k: max(v * 2, 10.0) for k, v in rates.items()})

        c = contract
        handlers: dict[str, tuple[Any, Any]] = {  # topic -> (message type, handler(now, msg))
            c.joint_states.name: (c.joint_states.type, lambda now, m: streams.add_joint_states(m)),
            c.joint_commands.name: (c.joint_commands.type, streams.add_commands),
            c.joint_trajectory.name: (c.joint_trajectory.type, streams.add_trajectory),
            c.intervention.name: (c.intervention.type, streams.add_intervention),
            c.ee_pose.name: (c.ee_pose.type, lambda now, m: streams.add_ee_pose(m)),
        }
        if c.gripper_commands is not None:
            handlers[c.gripper_commands.name] = (c.gripper_commands.type, streams.add_gripper)
        if kind:
            handlers[c.object_poses.name] = (c.object_poses.type, lambda now, m: streams.add_object_poses(m))
        camera_info: dict[str, dict[str, Any]] = {}
        last_stamp: dict[str, float] = {}
        missing = {cam: 0 for cam in profile.camera_names}
        late: dict[str, int] = {}
        bad: dict[str, int] = {}
        first_error: dict[str, str] = {}

        def on_image(cam: str):
            def add(now: float, msg: Any) -> None:
                stamp = streams.add_image(cam, msg)
                if cam in last_stamp and stamp != last_stamp[cam]:
                    missing[cam] += missed_frames(stamp - last_stamp[cam], profile.camera(cam).fps)
                last_stamp[cam] = stamp
            return add

        def on_info(cam: str):
            def add(now: float, msg: Any) -> None:
                camera_info[cam] = {"width": msg.width, "height": msg.height, "frame_id": msg.header.frame_id,
                                    "distortion_model": msg.distortion_model, "d": list(msg.d), "k": list(msg.k),
                                    "r": list(msg.r), "p": list(msg.p)}
            return add

        for cam in profile.camera_names:
            topics_cam = c.camera(cam)
            handlers[topics_cam.image.name] = (topics_cam.image.type, on_image(cam))
            handlers[topics_cam.info.name] = (topics_cam.info.type, on_info(cam))
        connections = [topics[t] for t in handlers if t in topics]
        with_ee = c.ee_pose.name in topics
        object_dim: int | None = None

        writer = out.begin_episode()
        batch: list[dict[str, Any]] = []
        state = {"t0": None, "k": 0, "steps": 0, "warmup": 0, "dropped": 0, "fallback": 0}

        def flush() -> None:
            if batch:
                arrays: dict[str, list] = {}
                for step in batch:
                    for key, value in step.items():
                        arrays.setdefault(key, []).append(image_array(value) if key.endswith("_image") else value)
                writer.extend({k: np.stack(v) for k, v in arrays.items()})
                batch.clear()

        def tick(t: float) -> None:
            nonlocal object_dim
            if object_dim is None and kind and streams.objects:
                object_dim = streams.objects.values[-1].size
            step, late_names, fallback = streams.sample(t, with_ee, object_dim)
            if step is None:
                state["warmup" if state["steps"] == 0 else "dropped"] += 1
                return
            for name in late_names:
                late[name] = late.get(name, 0) + 1
            state["fallback"] += int(fallback)
            state["steps"] += 1
            batch.append(step)
            if len(batch) >= WRITE_BATCH:
                flush()

        def advance(until: float) -> None:
            t0 = state["t0"]
            while (t := t0 + state["k"] / rate) <= until:
                tick(t)
                state["k"] += 1

        try:
            total = sum(conn.msgcount for conn in connections)
            end = 0.0
            for conn, ns, raw in tqdm(reader.messages(connections=connections), total=total, desc=bag.name,
                                      unit="msg", leave=False):
                now = ns * 1e-9
                if state["t0"] is None:
                    state["t0"] = now
                    streams.commands.begin(now, profile.control.watchdog_periods * profile.control_period)
                advance(now - config.latency_s)
                msg_type, handler = handlers[conn.topic.lstrip("/")]
                try:
                    handler(now, deserialize_message(bytes(raw), msg_type))
                except convert.MessageError as err:
                    name = conn.topic.lstrip("/")
                    first_error.setdefault(name, str(err))
                    bad[name] = bad.get(name, 0) + 1
                end = now
            if state["t0"] is not None:
                advance(end + SLACK_S)
            flush()
            if state["steps"] == 0:
                why = "; ".join(f"ignored {n}: {e}" for n, e in first_error.items())
                raise UserError(f"{bag}: no tick has joint_states{' and every camera' if profile.cameras else ''}, "
                                f"nothing to import{f' ({why})' if why else ''}")
            for name, count in bad.items():
                print(f"robot_stack.data: {bag.name}: ignored {count} {name} messages ({first_error[name]})")
            extra = {k: v for k, v in stored.get("extra", {}).items() if k not in ("camera_info",)}
            extra.update({
                "record_rate_hz": float(rate), "tolerance_s": tol, "dropped_steps": state["dropped"],
                "action_fallback_steps": state["fallback"], "warmup_ticks": state["warmup"],
                "source_bag": bag.name, "latency_s": config.latency_s,
            })
            if camera_info:
                extra["camera_info"] = camera_info
            if bad:
                extra["bad_messages"] = bad
            info = {
                "task": task, "operator": stored.get("operator", ""), "success": stored.get("success"),
                "calibration": stored.get("calibration", {}), "started": stored.get("started", state["t0"]),
                "late_frames": {cam: 0 for cam in profile.camera_names} | late,
                "missing_frames": missing, "extra": extra,
            }
            return writer.commit(profile=to_dict(profile), **info)
        except BaseException:
            writer.discard()
            raise
    finally:
        reader.close()


def import_rosbag2(paths: Sequence[Path], out: Path, config: BagImportConfig) -> list[int]:
    """Append each bag (one episode each) to the store at ``out`` (created if missing)."""
    from robot_stack.data.store import EpisodeStore

    bags = bag_folders(paths)
    store = EpisodeStore(out, "a", image_codec=config.image_codec)
    return [import_bag(bag, store, config) for bag in bags]
