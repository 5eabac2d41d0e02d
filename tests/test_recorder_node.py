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
    BASE = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
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
            frame[0, 0, :] = [k_cam % 256, k_cam // 256, 0]
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
    frame = np.roll(np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8), k, axis=1)
    frame[0, 0, :] = [k % 256, k // 256, 0]
    return frame


def test_records_episodes_from_a_publisher_process(ros, spawn, tmp_path: Path) -> None:  # noqa: ANN001
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import Trigger

    from robot_stack.data.store import EpisodeStore

    store_path = tmp_path / "episodes.zarr"
    robot = spawn([sys.executable, "-c", PUBLISHER])
    t0 = float(robot.stdout.readline().split()[1])
    recorder = spawn([
        str(Path(sys.executable).parent / "recorder_node"), "--ros-args",
        "-p", "profile:=so101", "-p", "cameras:=front", "-p", f"store:={store_path}",
        "-p", "record_rate_hz:=10.0", "-p", "task:=pick the cube", "-p", "operator:=ci",
    ])

    def start_when_streams_arrive() -> bool:
        return ros.call(Trigger, "episode/start", timeout=30.0).success

    wait_for(start_when_streams_arrive, 60.0, "episode/start to succeed (streams arriving)")
    import time

    time.sleep(2.0)
    reply = ros.call(Trigger, "episode/save", timeout=30.0)
    assert reply.success, reply.message
    assert ros.call(Trigger, "episode/start").success  # no wait between episodes
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
    recorder.send_signal(signal.SIGINT)
    log = recorder.communicate(timeout=30)[0]

    store = EpisodeStore(store_path)
    assert store.n_episodes == 2, log
    assert [e.success for e in store.episodes] == [True, False]
    assert store.episodes[0].task == "pick the cube" and store.episodes[0].operator == "ci"
    assert store.profile(0)["name"] == "so101"
    assert set(store.keys) == {"timestamp", "joint_pos", "joint_vel", "action", "intervention", "ee_pose",
                               "front_image", "front_stamp"}
    for i, expected_s in enumerate((2.0, 1.5)):
        ep = store.episode(i)
        n = len(ep["timestamp"])
        assert abs(n / 10.0 - expected_s) < 0.6, (n, log)
        np.testing.assert_allclose(np.diff(ep["timestamp"]), 0.1, atol=1e-6)  # fixed grid at 10 Hz
        assert ep["joint_pos"].shape == (n, 6) and ep["joint_pos"].dtype == np.float32
        assert ep["front_image"].shape == (n, 480, 640, 3) and ep["front_image"].dtype == np.uint8
        # nearest-earlier camera frame, and its pixels are exactly what was published
        for t, stamp, image in zip(ep["timestamp"], ep["front_stamp"], ep["front_image"]):
            k = int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])
            assert stamp == pytest.approx(t0 + k / 30, abs=1e-6)
            assert 0 <= t - stamp < 1 / 30 + 1e-6
            np.testing.assert_array_equal(image, published_frame(k))
        # nearest-earlier joint state: position j of sample k is k/1000 + j
        k = np.round(ep["joint_pos"][:, 0].astype(np.float64) * 1000)
        assert np.all(ep["timestamp"] - (t0 + k / 100) >= -1e-6)
        assert np.all(ep["timestamp"] - (t0 + k / 100) < 0.0101)
        np.testing.assert_allclose(ep["joint_pos"][:, 5] - ep["joint_pos"][:, 0], 5.0, atol=1e-4)
        np.testing.assert_allclose(ep["joint_vel"], 0.5)
        # ee_pose is its own topic: same stamps, but under load it may arrive one sample behind
        assert np.all(np.abs(ep["ee_pose"][:, 0] - ep["joint_pos"][:, 0]) < 1.1e-3)
        # action: arm = latest command index c, gripper = -c
        np.testing.assert_array_equal(ep["action"][:, -1], -ep["action"][:, 0])
        assert np.all(np.diff(ep["action"][:, 0]) >= 0)
        assert ep["intervention"].dtype == np.bool_
        info = store.episodes[i]
        assert info.late_frames.get("front", 0) == 0 and info.missing_frames == {"front": 0}, info
        assert info.extra["dropped_steps"] == 0
    assert "saved episode" in log
