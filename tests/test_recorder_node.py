"""recorder_node end to end: a synthetic robot process publishes over DDS, the recorder stores episodes."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for

# A synthetic robot: joint_states at 100 Hz, one 640x480 camera at 30 Hz, arm + gripper commands at
# 10 Hz, intervention toggling every second. Every value is a known function of its index, so the
# test can check what the recorder stored against what was published.
PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from std_msgs.msg import Bool, Float64MultiArray
    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.profile import load_profile
    from robot_stack.resources import apply_ros_environment

    apply_ros_environment()
    rclpy.init()
    profile = load_profile("so101").with_cameras(["front"])
    c = Contract(profile)
    node = rclpy.create_node("synthetic_robot")
    pubs = {name: c.publisher(node, getattr(c, name)) for name in
            ("joint_states", "joint_commands", "gripper_commands", "intervention", "ee_pose")}
    image_pub = c.publisher(node, c.camera("front").image)
    yy, xx = np.mgrid[0:480, 0:640]
    BASE = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) * 255 // 1120], -1)
    BASE = np.clip(BASE + np.random.default_rng(7).integers(-3, 4, BASE.shape), 0, 255).astype(np.uint8)
    names = profile.all_joint_names
    t0 = node.get_clock().now().nanoseconds * 1e-9 + 0.5
    print("t0", repr(t0), flush=True)
    k_joint = k_cam = k_cmd = 0
    while rclpy.ok():
        now = node.get_clock().now().nanoseconds * 1e-9
        while t0 + k_joint / 100 <= now:
            stamp = convert.to_stamp(t0 + k_joint / 100)
            q = [k_joint * 1e-3 + j for j in range(len(names))]
            pubs["joint_states"].publish(convert.make_joint_state(names, q, [0.5] * len(names), stamp=stamp))
            pubs["ee_pose"].publish(convert.make_pose([k_joint * 1e-3, 0, 0], [0, 0, 0, 1], "base_link", stamp=stamp))
            k_joint += 1
        while t0 + k_cam / 30 <= now:
            frame = np.roll(BASE, k_cam, axis=1)
            for bit in range(12):  # frame index as a barcode of 16x16 blocks (survives JPEG)
                frame[:16, 16 * bit : 16 * bit + 16] = 255 if (k_cam >> bit) & 1 else 0
            image_pub.publish(convert.array_to_image(frame, "rgb8", convert.to_stamp(t0 + k_cam / 30), "front"))
            k_cam += 1
        while t0 + k_cmd / 10 <= now:
            pubs["joint_commands"].publish(Float64MultiArray(data=[float(k_cmd)] * 5))
            pubs["gripper_commands"].publish(Float64MultiArray(data=[-float(k_cmd)]))
            pubs["intervention"].publish(Bool(data=(k_cmd // 10) % 2 == 1))
            k_cmd += 1
        time.sleep(0.002)
    """
)


def published_frame(k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) * 255 // 1120], -1)
    base = np.clip(base + np.random.default_rng(7).integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    frame = np.roll(base, k, axis=1)
    for bit in range(12):
        frame[:16, 16 * bit : 16 * bit + 16] = 255 if (k >> bit) & 1 else 0
    return frame


def frame_index(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(12) if image[4:12, 16 * bit + 4 : 16 * bit + 12].mean() > 127)


@pytest.mark.parametrize("codec", ["blosc", "jpeg"])
def test_records_episodes_from_a_publisher_process(ros, spawn, tmp_path: Path, codec: str) -> None:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import Trigger

    from robot_stack.data.store import EpisodeStore

    store_path = tmp_path / "episodes.zarr"
    robot = spawn([sys.executable, "-c", PUBLISHER])
    t0 = float(robot.stdout.readline().split()[1])
    recorder = spawn([
        str(Path(sys.executable).parent / "recorder_node"), "--ros-args",
        "-p", "robot:=so101", "-p", "cameras:=front", "-p", f"store:={store_path}",
        "-p", "record_rate_hz:=10.0", "-p", "latency_s:=0.3", "-p", f"image_codec:={codec}", "-p", "task:=pick the cube", "-p", "operator:=ci",
    ])

    def start_when_streams_arrive() -> bool:
        return ros.call(Trigger, "episode/start", timeout=30.0).success

    wait_for(start_when_streams_arrive, 60.0, "episode/start to succeed (streams arriving)")
    import time

    time.sleep(2.0)
    reply = ros.call(Trigger, "episode/save", timeout=30.0)
    assert reply.success and reply.message.startswith("saved episode 0") and "durable" in reply.message, reply.message
    assert ros.call(Trigger, "episode/start").success  # no wait between episodes (the commit runs behind)
    time.sleep(1.0)
    assert ros.call(Trigger, "episode/discard").success
    request = SetParameters.Request(parameters=[Parameter(
        name="success", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))])
    assert ros.call(SetParameters, "/recorder/set_parameters", request).results[0].successful
    assert ros.call(Trigger, "episode/start").success
    time.sleep(1.5)
    reply = ros.call(Trigger, "episode/save", timeout=30.0)
    assert reply.success, reply.message
    assert not ros.call(Trigger, "episode/save").success  # not recording now
    assert ros.call(Trigger, "episode/start").success and ros.call(Trigger, "episode/discard").success  # no tick
    assert ros.call(Trigger, "episode/start").success
    time.sleep(3.0)  # steps are sampled latency_s late, and later still on a loaded machine
    recorder.send_signal(signal.SIGINT)  # stopped while recording: the episode is kept, marked interrupted
    log = recorder.communicate(timeout=60)[0]

    store = EpisodeStore(store_path)
    assert store.n_episodes == 3, log
    assert [e.success for e in store.episodes] == [True, False, None]
    assert store.episodes[2].extra.get("interrupted") is True and "interrupted" in log
    assert store.episodes[0].task == "pick the cube" and store.episodes[0].operator == "ci"
    assert store.profile(0)["name"] == "so101"
    assert set(store.keys) == {"timestamp", "joint_pos", "joint_vel", "action", "intervention", "ee_pose",
                               "front_image", "front_stamp"}
    for i, expected_s in enumerate((2.0, 1.5)):
        ep = store.episode(i)
        n = len(ep["timestamp"])
        assert 0.5 * expected_s <= n / 10.0 <= expected_s + 2.0, (n, log)  # service calls may be slow under load
        np.testing.assert_allclose(np.diff(ep["timestamp"]), 0.1, atol=1e-6)  # fixed grid at 10 Hz
        assert ep["joint_pos"].shape == (n, 6) and ep["joint_pos"].dtype == np.float32
        assert ep["front_image"].shape == (n, 480, 640, 3) and ep["front_image"].dtype == np.uint8
        # nearest-earlier camera frame, and its pixels are exactly what was published
        for t, stamp, image in zip(ep["timestamp"], ep["front_stamp"], ep["front_image"]):
            k = frame_index(image)
            assert stamp == pytest.approx(t0 + k / 30, abs=1e-6)  # the stamp of the frame stored
            assert t - stamp >= 0  # never a frame captured after the tick
            if codec == "blosc":  # lossless: exactly what was published
                np.testing.assert_array_equal(image, published_frame(k))
            else:  # JPEG q95: close to what was published, far from the neighbouring frame
                error = np.abs(image.astype(int) - published_frame(k)).mean()
                assert error < 3.0 and error < np.abs(image.astype(int) - published_frame(k + 1)).mean()
        # nearest-earlier joint state: position j of sample k is k/1000 + j
        k = np.round(ep["joint_pos"][:, 0].astype(np.float64) * 1000)
        joint_age = ep["timestamp"] - (t0 + k / 100)
        assert np.all(joint_age >= -1e-6)  # never a sample from after the tick
        late_joints = int(np.sum(joint_age > 0.015 + 1e-9))  # tolerance: 1.5 periods at 100 Hz
        assert store.episodes[i].late_frames.get("joint_states", 0) == late_joints, joint_age
        np.testing.assert_allclose(ep["joint_pos"][:, 5] - ep["joint_pos"][:, 0], 5.0, atol=1e-4)
        np.testing.assert_allclose(ep["joint_vel"], 0.5)
        # ee_pose is its own topic (x = k/1000 at stamp k/100): nearest earlier, late ones counted
        ee_age = ep["timestamp"] - (t0 + np.round(ep["ee_pose"][:, 0].astype(np.float64) * 1000) / 100)
        assert np.all(ee_age >= -1e-6)
        assert store.episodes[i].late_frames.get("ee_pose", 0) == int(np.sum(ee_age > 0.015 + 1e-9)), ee_age
        np.testing.assert_allclose(ep["ee_pose"][:, 3:], [[0, 0, 0, 1]] * n)
        # action: arm = latest command index c, gripper = -c
        # (before the first command arrives, the measured position stands in and is counted)
        commanded = ep["action"][:, 0] == np.round(ep["action"][:, 0])
        assert int(np.sum(~commanded)) <= store.episodes[i].extra["action_fallback_steps"] <= 3
        np.testing.assert_array_equal(ep["action"][commanded, 0], ep["action"][commanded, 4])
        assert np.all(np.diff(ep["action"][commanded, 0]) >= 0)
        gripper = ep["action"][:, -1] == np.round(ep["action"][:, -1])
        # arm and gripper commands are separate topics stamped on arrival: at most one message apart
        both = commanded & gripper
        assert np.all(np.abs(ep["action"][both, -1] + ep["action"][both, 0]) <= 1), ep["action"]
        assert ep["intervention"].dtype == np.bool_
        # normally the newest frame (< 1/30 s old); older ones (a stalled stream) are counted as late
        age = ep["timestamp"] - ep["front_stamp"]
        info = store.episodes[i]
        assert info.late_frames["front"] == int(np.sum(age > 1.5 / 30 + 1e-9)), (info, age)
        assert info.extra["dropped_steps"] == 0 and set(info.missing_frames) == {"front"}
    assert "saved episode 0" in log and "saved episode 1" in log


def test_command_tracker_follows_trajectory_and_command_semantics() -> None:
    from robot_stack.data.align import CommandTracker

    tracker = CommandTracker(3)
    assert np.isnan(tracker.at(0.0)).all()
    # trajectory received at t=1: point 0 counts from arrival, point 1 due at 1.5, point 2 at 2.0
    tracker.add_trajectory(1.0, np.array([1.2, 1.5, 2.0]), np.array([[1, 1, np.nan], [2, 2, np.nan], [3, 3, np.nan]]))
    np.testing.assert_array_equal(tracker.at(1.0)[:2], [1, 1])
    np.testing.assert_array_equal(tracker.at(1.6)[:2], [2, 2])
    assert np.isnan(tracker.at(1.6)[2])  # joint not in the trajectory: still uncommanded
    tracker.add(1.7, np.array([np.nan, np.nan, 0.5]))  # gripper command
    # a new trajectory at 1.8 cancels the previous one's point due at 2.0
    tracker.add_trajectory(1.8, np.array([2.5]), np.array([[7, 7, np.nan]]))
    np.testing.assert_array_equal(tracker.at(2.1), [7, 7, 0.5])
    tracker.add(2.2, np.array([4.0, 5.0, np.nan]))  # forward command overrides
    np.testing.assert_array_equal(tracker.at(2.2), [4, 5, 0.5])


def test_bad_store_is_a_one_line_error(spawn, tmp_path: Path) -> None:
    folder = tmp_path / "not_a_store"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    proc = spawn([str(Path(sys.executable).parent / "recorder_node"), "--ros-args", "-p", f"store:={folder}"])
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "error" in line]
    assert len(errors) == 1 and "not an episode store" in errors[0], out
    assert "Traceback" not in out


def test_start_is_refused_while_a_stream_the_store_holds_is_missing(ros, spawn, tmp_path: Path) -> None:
    """The store's episodes have object_state; this recorder has no task (so no object_poses): it must not
    record object_state empty (its save would be answered and its commit refused)."""
    from std_srvs.srv import Trigger

    from robot_stack.data.store import EpisodeStore

    store_path = tmp_path / "episodes.zarr"
    step = {"timestamp": np.zeros(1), "joint_pos": np.zeros((1, 6), np.float32), "joint_vel": np.zeros((1, 6), np.float32),
            "action": np.zeros((1, 6), np.float32), "intervention": np.zeros(1, bool), "ee_pose": np.zeros((1, 7), np.float32),
            "object_state": np.zeros((1, 3), np.float32), "front_image": np.zeros((1, 480, 640, 3), np.uint8),
            "front_stamp": np.zeros(1)}
    EpisodeStore(store_path, "a").append_episode(step)
    spawn([sys.executable, "-c", PUBLISHER]).stdout.readline()
    spawn([str(Path(sys.executable).parent / "recorder_node"), "--ros-args", "-p", "robot:=so101", "-p", "cameras:=front",
           "-p", f"store:={store_path}", "-p", "record_rate_hz:=10.0"])
    replies = []

    def refused_for_object_poses() -> bool:
        replies.append(ros.call(Trigger, "episode/start", timeout=30.0))
        return "object_poses" in replies[-1].message

    wait_for(refused_for_object_poses, 60.0, "episode/start to name object_poses")
    assert not replies[-1].success and "set the task parameter" in replies[-1].message, replies[-1].message
    assert EpisodeStore(store_path).n_episodes == 1
