"""The emulated robot cell: cell files, the gap's pieces, and the hardware path against the running cell."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
from conftest import wait_for

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.resources import find_config, ros_environment

PROFILE = load_profile("so101")


# -- cell files ---------------------------------------------------------------------------------------
def write_cell(tmp_path, **changes):
    data = yaml.safe_load(find_config("cells", "default").read_text())
    for key, value in changes.items():
        section = data
        *path, last = key.split(".")
        for name in path:
            section = section.setdefault(name, {})
        section[last] = value
    path = tmp_path / "cell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("key, value, message", [
    ("gap.arm.zero_ofset_deg", 2.0, "gap.arm.zero_ofset_deg: unknown key"),
    ("gap.arm.zero_offset_deg", 45.0, "gap.arm: zero_offset_deg: 45 is outside [0, 15]"),
    ("gap.camera.white_balance", [1.0, 9.0, 1.0], "gap.camera: white_balance: 9 is outside [0.5, 2]"),
    ("gap.camera.drop_rate", "often", "gap.camera.drop_rate: expected a number"),
    ("streams.front.fps", 500, "streams.front: fps: 500 is outside [0, 120]"),
    ("gap_scale", 3.0, "gap_scale 3: friction_scale: 0.1 is outside [0.2, 3]"),  # friction 1 + 3 x (0.7 - 1)
])
def test_bad_cell_file_is_one_line_error(tmp_path, key, value, message):
    from robot_stack.sim.cell.config import load_cell

    changes = {key: value, "gap.object.friction_scale": 0.7} if key == "gap_scale" else {key: value}
    path = write_cell(tmp_path, **changes)
    with pytest.raises(UserError) as err:
        load_cell(str(path))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    cli = subprocess.run([sys.executable, "-m", "robot_stack.cli", "cell", "--cell", str(path)], capture_output=True,
                         text=True, env=ros_environment(), timeout=60)
    assert cli.returncode == 2 and cli.stderr.strip().count("\n") == 0, cli.stderr
    assert cli.stderr.startswith("robot-stack: error: ") and message in cli.stderr


def test_gap_none_and_the_dial(tmp_path):
    from robot_stack.sim.cell.config import Gap, load_cell

    assert load_cell("twin").effective_gap == Gap()
    default = load_cell("default")
    assert default.gap != Gap() and default.effective_gap == default.gap
    path = write_cell(tmp_path, gap_scale=0.0)
    assert load_cell(str(path)).effective_gap == Gap(seed=default.gap.seed)
    half = load_cell(str(write_cell(tmp_path, gap_scale=0.5))).effective_gap
    assert half.arm.zero_offset_deg == pytest.approx(default.gap.arm.zero_offset_deg / 2)
    assert half.arm.gain == pytest.approx((1 + default.gap.arm.gain) / 2)
    assert half.camera.jpeg_quality == default.gap.camera.jpeg_quality  # counts are on or off


# -- the gap's pieces ---------------------------------------------------------------------------------
def test_arm_gap_reaches_the_bus_reading(tmp_path):
    """Calibration error: the servos report the true angle minus the offset, and goals land offset
    (after the actuation latency)."""
    from robot_stack.sim.cell.cell import Cell
    from robot_stack.sim.cell.config import load_cell

    cell = Cell(load_cell(str(write_cell(tmp_path, **{"gap.arm.zero_offset_deg": 5.0, "gap.arm.encoder_noise_deg": 0.0,
                                                      "leader": ""}))), cameras="none")
    offset = cell.arm.offset
    assert np.all(np.abs(offset) <= np.radians(5.0)) and np.abs(offset).max() > np.radians(1.0)
    measured, _, _ = cell.arm.joint_state()
    assert np.allclose(measured, cell.arm.true_positions() - offset)
    cell.arm.actuate(0, True, 0.3, 3.0)  # the default's 10 ms actuation latency: not yet
    cell.arm.before_step(cell.arm.time + 0.005)
    assert cell.arm.goal[0] != pytest.approx(0.3 + offset[0])
    cell.arm.before_step(cell.arm.time + 0.006)
    assert cell.arm.goal[0] == pytest.approx(0.3 + offset[0])
    cell.close()


def test_leader_arm_is_moved_by_hand(tmp_path):
    """The leader arm's bus reads what the harness (the operator's hand) set; it stays there."""
    from robot_stack.drivers.servo.backend import ServoBusBackend
    from robot_stack.sim.cell.cell import Cell
    from robot_stack.sim.cell.config import load_cell
    from robot_stack.sim.cell.harness import HarnessClient

    cell = Cell(load_cell("default"), cameras="none")
    info = cell.open(leader_link=str(tmp_path / "leader"))
    try:
        harness = HarnessClient(info["harness"])
        pose = [0.3, -0.8, 0.9, 0.5, -0.2, 0.6]
        harness.pose_leader(pose)
        leader = ServoBusBackend(load_profile("so101_leader"), port=str(tmp_path / "leader"), torque_on=False)
        time.sleep(0.5)
        assert np.allclose(leader.read().position, pose, atol=0.01)
        leader.close()
        with pytest.raises(UserError, match="expected 6 finite joint angles"):
            harness.pose_leader([0.0])
    finally:
        cell.close()


def test_servo_driver_names_a_lost_bus(spawn):
    """The bus's far end goes away (the cell, or a USB adapter, is gone): one ServoBusError, not a SerialException."""
    from robot_stack.drivers.servo.backend import ServoBusBackend, ServoBusError
    from robot_stack.drivers.servo.testing import start_emulator

    emulator, port = start_emulator("so101", popen=spawn)
    backend = ServoBusBackend(PROFILE, port=port)
    backend.read()
    emulator.kill()
    emulator.wait()
    with pytest.raises(ServoBusError, match=f"lost the serial port {port}|does not answer"):
        for _ in range(5):
            backend.write(backend.read().position)
    backend.close()


def test_optics_and_frame_delivery():
    from robot_stack.camera_info import Intrinsics
    from robot_stack.sim.cell.config import CameraGap
    from robot_stack.sim.cell.mjpeg import FrameChannel
    from robot_stack.sim.cell.optics import Optics

    ideal = Intrinsics.from_fovy(64, 48, 45.0)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    assert np.array_equal(Optics(CameraGap(), ideal, rng).apply(image), image)  # no gap: the render as is
    real = Optics(CameraGap(focal_error=0.05, distortion=(-0.2, 0.05, 0, 0, 0), exposure=1.2, noise=3.0), ideal, rng)
    assert real.intrinsics.fx != ideal.fx and not np.array_equal(real.apply(image), image)

    channel = FrameChannel(latency=0.05, jitter=0.0, drop_rate=0.0)
    exposure = time.time()
    channel.push(exposure, b"jpeg")
    assert channel.next_frame(0, timeout=0.01) is None  # not yet delivered
    frame = channel.next_frame(0, timeout=1.0)
    assert frame is not None and time.time() - exposure >= 0.05 and frame.capture == exposure
    lossy = FrameChannel(drop_rate=0.5, rng=np.random.default_rng(0))
    for _ in range(200):
        lossy.push(time.time(), b"x")
    assert 60 < lossy.dropped < 140


# -- the hardware path against the running cell ----------------------------------------------------------
CAMERA_FPS = 10.0


@pytest.fixture(scope="module")
def cell_robot(tmp_path_factory):
    """SO-101 whose front camera is what the cell can render in real time on a loaded 2-core CPU (10 Hz)."""
    folder = tmp_path_factory.mktemp("robot")
    data = yaml.safe_load(find_config("robots", "so101").read_text())
    data["cameras"] = [{"name": "front", "width": 320, "height": 240, "fps": CAMERA_FPS}]
    data["hardware"]["calibration"] = str(PROFILE.resolve(PROFILE.hardware.calibration))
    path = folder / "so101.yaml"
    path.write_text(yaml.safe_dump(data))
    cell = yaml.safe_load(find_config("cells", "default").read_text())
    cell.update(robot=str(path), streams={})
    cell_path = folder / "cell.yaml"
    cell_path.write_text(yaml.safe_dump(cell))
    return path, cell_path


def tiny_checkpoint(folder, cameras):
    """A randomly initialised test-size policy whose actions stay within 0.05 rad of home."""
    import torch

    from robot_stack.policies.diffusion.checkpoint import save_checkpoint
    from robot_stack.policies.diffusion.config import ShapeMeta, preset, replace
    from robot_stack.policies.diffusion.policy import DiffusionPolicy

    torch.manual_seed(0)
    images = tuple(f"{c}_image" for c in cameras)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",), "image_keys": images})
    shape = ShapeMeta(robot="so101", joint_names=tuple(PROFILE.all_joint_names), lowdim_dims={"joint_pos": 6},
                      action_dim=6, image_keys=images)
    policy = DiffusionPolicy(cfg, shape)
    home = np.array(PROFILE.sim.home)
    policy.normalizer.fit({"joint_pos": np.stack([home - 1, home + 1]), "action": np.stack([home - 0.05, home + 0.05])})
    return save_checkpoint(folder / "policy", policy)


def test_deploy_on_the_cell(ros, tmp_path, cell_robot):
    """Cell (default gap) + servo_arm_node + opencv_camera_node + policy_server through the launch files:
    the camera decodes at the profile's rate with stamps as late as the configured latency, and
    three episodes are reset and judged by the harness."""
    from robot_stack.sim.cell.config import load_cell
    from robot_stack.sim.cell.evaluate import CellSession
    from robot_stack.sim.cell.latency import StreamTap, centre_crop, stamp_delays

    robot, cell_file = cell_robot
    latency = load_cell(str(cell_file)).gap.camera.latency_ms / 1000
    contract = Contract(load_profile(robot))
    topic = contract.camera("front").image
    images = []

    def on_image(msg):
        images.append((time.monotonic(), convert.to_sec(msg.header.stamp), centre_crop(convert.image_to_array(msg))))

    ros.node.create_subscription(topic.type, topic.name, on_image, topic.qos)
    chunks = ros.collect(contract.joint_trajectory.type, contract.joint_trajectory.name)
    log = open(tmp_path / "launch.log", "w")
    checkpoint = tiny_checkpoint(tmp_path, ["front"])
    with CellSession(checkpoint, str(cell_file), seed=100, allow_unvalidated=True, log=log) as session:
        tap = StreamTap(f"http://127.0.0.1:{session.camera_port}/front.mjpg")
        session.wait_for_policy()
        # the camera, as opencv_camera_node publishes it
        session.hold(True, 0.1)
        before = session.harness.state()
        time.sleep(8.0)
        after = session.harness.state()
        time.sleep(0.5)  # the last frames of the window reach the test
        c0, c1 = before["cameras"]["front"], after["cameras"]["front"]
        seconds = after["time"] - before["time"]
        exposed = (c1["captured"] + c1["missed"]) - (c0["captured"] + c0["missed"])
        delivered = (c1["captured"] - c1["dropped"]) - (c0["captured"] - c0["dropped"])
        window = [stamp for _, stamp, _ in images if before["time"] + latency < stamp <= after["time"] + latency]
        report = (f"exposed {exposed}, delivered {delivered} (renderer missed {c1['missed'] - c0['missed']}, "
                  f"render {c1['render_ms_median']} ms), published {len(window)} in {seconds:.1f} s")
        # the cell exposes at the profile's rate (exposures its renderer could not take are counted as missed) ...
        assert abs(exposed / seconds - CAMERA_FPS) < 0.15 * CAMERA_FPS, report
        # ... and the driver decodes and publishes every frame the camera delivers, at the profile's rate
        # whenever the renderer kept up (an overloaded host renders fewer, and says so)
        assert len(window) >= delivered - 3, report
        if c1["missed"] == c0["missed"]:
            assert len(window) / seconds > 0.85 * CAMERA_FPS, report
        delays = stamp_delays(list(tap.frames), [(stamp, crop) for _, stamp, crop in images])
        tap.close()
        assert len(delays) > 0.5 * len(window), f"matched {len(delays)} of {len(window)} images"
        # the driver stamps on arrival (OpenCV hides the stream's exposure times): late by the configured latency,
        # plus what the host adds to the delivery, which the cell measures on its side
        median, delivery = float(np.median(delays)), c1["delay_ms_median"] / 1000
        said = f"stamps {median * 1000:.0f} ms after exposure, the cell delivered {delivery * 1000:.0f} ms after " \
               f"(configured {latency * 1000:.0f} ms); {report}"
        assert latency - 0.005 <= median and abs(median - delivery) < 0.06, said
        if c1["missed"] == c0["missed"]:
            assert median < latency + 0.1, said

        # three episodes, reset and judged by the harness
        placed = []
        for i in range(3):
            before = len(chunks)
            success, seconds, progress, message = session.episode(limit=6.0)
            assert message.startswith(f"reset with seed {100 + i}"), message
            placed.append(session.harness.state()["objects"][0][:2])
            assert not success and 0.0 <= progress <= 1.0 and seconds >= 6.0, (success, progress, seconds)
            assert len(chunks) > before, "the policy did not act during the episode"
        assert len({tuple(np.round(p, 4)) for p in placed}) == 3, placed  # a new placement every episode
        state = session.harness.state()
        assert state["episode"] == 3 and state["realtime_factor"] > 0.8, state
    log.close()
    text = (tmp_path / "launch.log").read_text()
    assert "Traceback" not in text, text[text.index("Traceback") - 2000: text.index("Traceback") + 3000]


def test_cell_killed_mid_episode(ros, tmp_path):
    """The cell dies mid-episode: the arm driver names the lost bus in one line, the policy server stops
    publishing, nothing keeps commanding the (absent) arm."""
    from robot_stack.sim.cell.evaluate import CellSession

    contract = Contract(PROFILE)
    chunks = ros.collect(contract.joint_trajectory.type, contract.joint_trajectory.name)
    log_path = tmp_path / "launch.log"
    log = open(log_path, "w")
    with CellSession(tiny_checkpoint(tmp_path, []), allow_unvalidated=True, log=log) as session:
        session.wait_for_policy()
        outcome = []

        def run_episode():
            try:
                outcome.append(session.episode(limit=30.0))
            except UserError as err:
                outcome.append(err)

        episode = threading.Thread(target=run_episode, daemon=True)
        episode.start()
        wait_for(lambda: session.harness.state()["episode"] == 1, 30, "the episode to start")
        time.sleep(2.0)
        assert chunks and time.monotonic() - chunks[-1][0] < 2.0, "the policy is acting"
        cell_pid = session.cell_runner.pids()["cell-1"][-1]
        silent = "no data on joint_pos: not publishing actions"
        said = log_path.read_text().count(silent)
        os.kill(cell_pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: log_path.read_text().count(silent) > said, 20, "policy_server to report the silent arm")
        time.sleep(3.0)
        late = [t for t, _ in chunks if t > killed + 1.5]
        assert not late, f"{len(late)} trajectories published after the cell died"
        log.flush()
        text = log_path.read_text()
        assert "lost the serial port" in text or "does not answer" in text, text[-3000:]
        assert "Traceback" not in text, text[text.index("Traceback") - 1000: text.index("Traceback") + 3000]
        episode.join(timeout=30)
        assert outcome and "the cell stopped" in str(outcome[0]), outcome  # not judged a success
    log.close()


def test_camera_url_that_does_not_answer(ros, spawn, tmp_path):
    """opencv_camera_node reports a stream that does not answer and keeps retrying; when the camera
    comes up it streams."""
    from robot_stack.sim.cell.evaluate import free_port
    import cv2

    from robot_stack.sim.cell.mjpeg import FrameChannel, MjpegServer

    port = free_port()
    contract = Contract(PROFILE)
    images = ros.collect(contract.camera("front").image.type, contract.camera("front").image.name,
                         contract.camera("front").image.qos)
    node = spawn(["opencv_camera_node", "--ros-args", "-p", "camera:=front", "-p",
                  f"device:=http://127.0.0.1:{port}/front.mjpg"], env=ros_environment())
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(node.stdout.readline, "")), daemon=True).start()
    wait_for(lambda: any("does not answer" in line for line in lines), 30, "the node to report the silent URL")
    time.sleep(3.0)
    assert node.poll() is None, "".join(lines)
    channel = FrameChannel()
    server = MjpegServer({"front": channel}, port=port)
    server.start()
    stop = threading.Event()

    def camera():
        k = 0
        while not stop.is_set():
            ok, jpeg = cv2.imencode(".jpg", np.full((480, 640, 3), k % 255, np.uint8))
            channel.push(time.time(), jpeg.tobytes())
            k += 1
            time.sleep(1 / 15)

    threading.Thread(target=camera, daemon=True).start()
    try:
        wait_for(lambda: len(images) > 10, 30, "images once the camera answers")
        assert any("is back" in line for line in lines)
        assert node.poll() is None
    finally:
        stop.set()
        server.close()
