"""robot-stack calibrate: offline runs on saved captures, one-line errors, and the arm calibration node
(std_srvs/Trigger services over DDS, in its own process) against the servo-bus emulator."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from robot_stack.calibration.board import Board
from robot_stack.calibration.captures import save_capture
from robot_stack.calibration.handeye import load_extrinsics
from robot_stack.calibration.synthetic import BoardScene, handeye_capture
from robot_stack.camera_info import Intrinsics
from robot_stack.cli import main
from robot_stack.profile import load_profile

BOARD = ["--board", "9x6", "--square", "0.02"]


@pytest.fixture(scope="module")
def board_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("intrinsics")
    scene = BoardScene(Board(9, 6, 0.02), 640, 480, 60.0)
    try:
        save_capture(folder, [scene.render(p) for p in scene.random_views(16, seed=5)])
    finally:
        scene.close()
    return folder


def test_intrinsics_then_handeye_offline(board_images, tmp_path, capsys):
    out = tmp_path / "front.yaml"
    assert main(["calibrate", "intrinsics", "--camera", "front", "--images", str(board_images), *BOARD,
                 "-o", str(out)]) == 0
    got, truth = Intrinsics.load(out), Intrinsics.from_fovy(640, 480, 60.0)
    assert abs(got.fx / truth.fx - 1) < 0.005 and abs(got.cy / truth.cy - 1) < 0.005
    assert "RMS" in capsys.readouterr().out

    profile = load_profile("so101")
    cap = handeye_capture(profile, "eye_in_hand", Board(9, 6, 0.02), 12, seed=2)
    save_capture(tmp_path / "he", cap["images"], profile, cap["joints"])
    extr = tmp_path / "wrist_extrinsics.yaml"
    assert main(["calibrate", "handeye", "--camera", "wrist", "--captures", str(tmp_path / "he"), *BOARD,
                 "--intrinsics", str(out), "-o", str(extr)]) == 0
    parent, child, position, _ = load_extrinsics(extr)
    assert (parent, child) == ("gripper_tcp", "wrist_color_optical_frame")
    assert np.linalg.norm(position - cap["truth"][:3, 3]) < 0.005  # with the calibrated (not ideal) intrinsics


def test_one_line_errors(board_images, tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(board_images.iterdir())[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    cases = [
        (["calibrate", "intrinsics", "--camera", "front", "--images", str(few), *BOARD], "only 3 of 3 images show the board"),
        (["calibrate", "intrinsics", "--camera", "front", "--images", str(board_images), "--board", "8x5"],
         "board not found in any of the 16 images"),
        (["calibrate", "intrinsics", "--camera", "nope", "--images", str(few)], "has no camera 'nope'"),
        (["calibrate", "intrinsics", "--camera", "front", "--images", str(tmp_path / "missing")], "image folder not found"),
        (["calibrate", "intrinsics", "--camera", "front", "--images", str(few), "--board", "8x6"], "symmetric under a half turn"),
        (["calibrate", "handeye", "--camera", "wrist", "--captures", str(few), *BOARD], "has no intrinsics"),
        (["calibrate", "latency", "--recording", str(tmp_path / "none.npz")], "file not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar
        assert err.startswith("robot-stack: error: ") and message in err, (argv, err)


def test_arm_calibration_node_services(tmp_path, spawn, ros):
    """The interactive flow without prompts: a node whose steps are Trigger services."""
    from std_srvs.srv import Trigger

    from robot_stack.drivers.servo.calibration import load_calibration, make_calibration, save_calibration
    from robot_stack.drivers.servo.testing import start_emulator
    from robot_stack.resources import find_config, ros_environment
    from test_calibration_arm import DIRECTIONS, ZEROS, place

    data = yaml.safe_load(find_config("robots", "so101").read_text())
    data["hardware"]["calibration"] = str(tmp_path / "none.yaml")
    path = tmp_path / "so101.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile = load_profile(path)
    truth = make_calibration(profile, ZEROS, DIRECTIONS)
    save_calibration(truth, tmp_path / "truth.yaml")
    status = tmp_path / "status.json"
    emulator, port = start_emulator(str(path), "--calibration", str(tmp_path / "truth.yaml"), popen=spawn,
                                    status_file=status)
    out = tmp_path / "out.yaml"
    node = spawn([sys.executable, "-m", "robot_stack.cli", "calibrate", "arm", "--serve", "--robot", str(path),
                  "--port", port, "--directions", "moved", "-o", str(out)], env=ros_environment())
    try:
        reply = ros.call(Trigger, "calibration/save", timeout=60)
        assert not reply.success and "record the zero pose first" in reply.message
        # the node only talks on the bus inside a service call, so the test's "hand" can share the port
        place(profile, truth, port, status, np.zeros(6))
        reply = ros.call(Trigger, "calibration/record_zero")
        assert reply.success, reply.message
        assert f"shoulder_pan={ZEROS[0]}" in reply.message
        place(profile, truth, port, status, 0.2 * np.ones(6), tolerance=5)  # "the user moves every joint a little, positive way"
        assert ros.call(Trigger, "calibration/record_moved").success
        reply = ros.call(Trigger, "calibration/save")
        assert reply.success, reply.message
    finally:
        if node.poll() is not None:
            print(node.stdout.read())
    assert load_calibration(out, profile) == truth
    assert emulator.poll() is None


def test_help_lists_the_four_calibrations():
    out = subprocess.run([sys.executable, "-m", "robot_stack.cli", "calibrate", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for what in ("intrinsics", "handeye", "arm", "latency"):
        assert what in out
