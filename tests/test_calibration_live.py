"""Live calibration over DDS: latency against the running twin, and calibrate.launch.xml's arm session."""

import os
import sys
import time

import yaml

from conftest import REPO, wait_for
from robot_stack.calibration.latency import load_latency
from robot_stack.resources import ros_environment


def test_latency_live_against_the_twin(spawn, tmp_path):
    """Command a step through the contract, watch joint_states and the front camera of the twin.

    The twin stamps each image with the sim time of the state it rendered, so its camera latency is ~0;
    its actuation latency is the position servo's tracking lag (positive, well under 0.3 s)."""
    env = ros_environment({**os.environ, "MUJOCO_GL": "egl"})
    twin = spawn([str(REPO / ".venv/bin/twin_node"), "--ros-args", "-p", "cameras:=front", "-p", "task:=reach"], env=env)
    out = tmp_path / "so101_latency.yaml"
    cli = spawn([sys.executable, "-m", "robot_stack.cli", "calibrate", "latency", "--camera", "front", "--duration", "4",
                 "-o", str(out), "--save-recording", str(tmp_path / "rec.npz")], env=env)
    try:
        cli.wait(timeout=180)
    finally:
        log = cli.stdout.read()
    assert cli.returncode == 0, log
    cal = load_latency(out)
    assert abs(cal.camera_latency["front"]) < 0.02, cal
    assert 0.0 < cal.actuation_latency < 0.3, cal
    assert min(cal.fit.values()) > 0.9, cal
    params = yaml.safe_load((tmp_path / "so101_latency.params.yaml").read_text())
    assert params["policy_server"]["ros__parameters"]["execution_latency"] == cal.actuation_latency
    assert twin.poll() is None


def test_launch_file_arm_session_with_emulator(ros, tmp_path, monkeypatch):
    """calibrate.launch.xml what:=arm emulate:=true: bus emulator + calibration node; steps by Trigger."""
    from std_srvs.srv import Trigger

    from robot_stack.drivers.servo.calibration import load_calibration
    from robot_stack.launcher import LaunchRunner
    from robot_stack.profile import load_profile

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the emulator's port link goes here
    out = tmp_path / "so101_follower.yaml"
    runner = LaunchRunner(REPO / "launch/calibrate.launch.xml",
                          {"what": "arm", "emulate": "true", "directions": "profile", "output": str(out)}).start()
    try:
        reply = ros.call(Trigger, "calibration/record_zero", timeout=90)
        assert reply.success, reply.message
        assert ros.call(Trigger, "calibration/start_sweep").success
        time.sleep(0.5)
        reply = ros.call(Trigger, "calibration/stop_sweep")
        assert reply.success and "shoulder_pan=" in reply.message
        reply = ros.call(Trigger, "calibration/save")
        assert reply.success, reply.message
        wait_for(out.exists, 10, "the calibration file")
    finally:
        runner.stop()
    profile = load_profile("so101")
    cal = load_calibration(out, profile)
    shipped = load_calibration(profile.resolve(profile.hardware.calibration), profile)
    # the emulator runs the shipped calibration; the arm hangs near its start pose with torque off, so the
    # recorded "zero" ticks are the ticks of that pose, and the directions come from the profile's file
    assert [j.direction for j in cal.joints.values()] == [j.direction for j in shipped.joints.values()]


def test_intrinsics_live_from_a_camera_node(spawn, tmp_path):
    """opencv_camera_node replays rendered board views (a video file) on the contract topics; the CLI
    captures views live over DDS, saves them, and solves."""
    import cv2

    from robot_stack.calibration.board import Board
    from robot_stack.calibration.intrinsics import load_images
    from robot_stack.calibration.synthetic import BoardScene
    from robot_stack.camera_info import Intrinsics

    scene = BoardScene(Board(9, 6, 0.02), 640, 480, 55.0)
    video = tmp_path / "board.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    try:
        for pose in scene.random_views(14, seed=11):
            frame = cv2.cvtColor(scene.render(pose), cv2.COLOR_RGB2BGR)
            for _ in range(4):  # each view held 0.4 s
                writer.write(frame)
    finally:
        writer.release()
        scene.close()
    env = ros_environment()
    spawn([str(REPO / ".venv/bin/opencv_camera_node"), "--ros-args", "-p", "robot:=so101", "-p", "camera:=front",
           "-p", f"device:={video}", "-p", "loop:=true"], env=env)
    out, captures = tmp_path / "front.yaml", tmp_path / "captures"
    cli = spawn([sys.executable, "-m", "robot_stack.cli", "calibrate", "intrinsics", "--camera", "front",
                 "--board", "9x6", "--square", "0.02", "--views", "10", "--save-captures", str(captures),
                 "-o", str(out)], env=env)
    try:
        cli.wait(timeout=240)
    finally:
        log = cli.stdout.read()
    assert cli.returncode == 0, log
    assert len(load_images(captures)) == 10
    got, truth = Intrinsics.load(out), Intrinsics.from_fovy(640, 480, 55.0)
    assert abs(got.fx / truth.fx - 1) < 0.01 and abs(got.cx / truth.cx - 1) < 0.01, (got.K, log)


def test_handeye_live_capture_over_dds(ros, tmp_path):
    """A robot stand-in publishes renders of the eye-in-hand rig and the joint states of each pose on the
    contract topics, holding each pose for a moment; the CLI keeps one view per new still pose and solves."""
    import threading

    import numpy as np

    from robot_stack import convert
    from robot_stack.calibration.board import Board
    from robot_stack.calibration.handeye import load_extrinsics
    from robot_stack.calibration.synthetic import handeye_capture
    from robot_stack.camera_info import Intrinsics
    from robot_stack.cli import main
    from robot_stack.contract import Contract
    from robot_stack.profile import load_profile

    profile = load_profile("so101")
    cap = handeye_capture(profile, "eye_in_hand", Board(9, 6, 0.02), 12, seed=4)
    contract = Contract(profile)
    image_pub = contract.publisher(ros.node, contract.camera("wrist").image)
    joint_pub = contract.publisher(ros.node, contract.joint_states)
    stop = threading.Event()

    def robot() -> None:
        while not stop.is_set():
            for q, image in zip(cap["joints"], cap["images"]):
                end = time.monotonic() + 0.9
                while time.monotonic() < end and not stop.is_set():
                    stamp = ros.node.get_clock().now().to_msg()
                    joint_pub.publish(convert.make_joint_state(profile.all_joint_names, [*q, 0.0], stamp=stamp))
                    image_pub.publish(convert.array_to_image(image, "rgb8", stamp, "wrist_color_optical_frame"))
                    time.sleep(0.05)

    thread = threading.Thread(target=robot, daemon=True)
    thread.start()
    Intrinsics.from_fovy(640, 480, 60.0).save(tmp_path / "wrist.yaml")
    try:
        code = main(["calibrate", "handeye", "--camera", "wrist", "--board", "9x6", "--square", "0.02", "--views", "8",
                     "--intrinsics", str(tmp_path / "wrist.yaml"), "--save-captures", str(tmp_path / "cap"),
                     "-o", str(tmp_path / "wrist_extrinsics.yaml")])
    finally:
        stop.set()
        thread.join(timeout=5)
    assert code == 0
    _, _, position, _ = load_extrinsics(tmp_path / "wrist_extrinsics.yaml")
    assert np.linalg.norm(position - cap["truth"][:3, 3]) < 0.002
    assert (tmp_path / "cap" / "joints.yaml").is_file()
