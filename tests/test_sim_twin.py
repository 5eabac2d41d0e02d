"""The twin as a real process over DDS: the robot contract, resets, cameras, bad input, and parity
with the in-process gym env."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, RosHarness, wait_for

from robot_stack import convert
from robot_stack.arm.kinematics import Kinematics
from robot_stack.camera_info import Intrinsics
from robot_stack.contract import Contract
from robot_stack.profile import load_profile
from robot_stack.resources import ros_environment
from robot_stack.sim.experts import make_expert
from robot_stack.sim.gym_env import TwinEnv
from robot_stack.policies.observations import observation_dict
from robot_stack.sim.tasks import object_state_from_poses

TWIN = str(Path(os.sys.executable).parent / "twin_node")
SEED = 3
CAM = {"name": "front", "width": 160, "height": 120, "fps": 10}


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory) -> Path:
    """SO-101 with one small camera, so rendering keeps up on a loaded CI machine."""
    data = yaml.safe_load(open(load_profile("so101").source))
    data["cameras"] = [CAM]
    path = tmp_path_factory.mktemp("profile") / "so101_small_cam.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Twin:
    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen([TWIN, "--ros-args", *args], env=ros_environment(), stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def harness():
    h = RosHarness()
    yield h
    h.close()


@pytest.fixture(scope="module")
def twin(profile_path, tmp_path_factory, harness):
    t = Twin(["-p", f"robot:={profile_path}", "-p", "task:=pick_cube", "-p", f"seed:={SEED}"],
             tmp_path_factory.mktemp("twin") / "twin.log")
    contract = Contract(load_profile(str(profile_path)))
    from sensor_msgs.msg import JointState

    states = harness.collect(JointState, contract.joint_states.name, contract.joint_states.qos)
    try:
        wait_for(lambda: len(states) > 5 or t.proc.poll() is not None, 90, "twin joint_states")
        assert t.proc.poll() is None, t.output()
        yield t
    finally:
        t.stop()


class Probe:
    """Latest contract state seen by the harness."""

    def __init__(self, harness: RosHarness, profile_path: Path, ns: str = "", sim_time: bool = False,
                 keep_all: bool = False):
        """``sim_time``: the twin publishes /clock (else its stamps are wall time)."""
        from geometry_msgs.msg import PoseStamped
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState

        from robot_stack.contract import qos

        self.h, self.ns, self.sim_time = harness, ns, sim_time
        self.sim_clock: float | None = None
        if sim_time:  # depth 1: the newest clock, however far behind the harness reads its other topics
            harness.node.create_subscription(Clock, "/clock", self._on_clock, qos(1))
        self.profile = load_profile(str(profile_path))
        self.c = Contract(self.profile)
        # keep_all: 10 s of 100 Hz state, for tests that read the history (this Python harness may stall for a
        # second on a loaded machine); else the contract's depth, which keeps what it reads recent
        depth = (lambda topic: qos(1000)) if keep_all else (lambda topic: topic.qos)
        self.states = harness.collect(JointState, ns + self.c.joint_states.name, depth(self.c.joint_states))
        self.poses = harness.collect(PoseStamped, ns + self.c.ee_pose.name, depth(self.c.ee_pose))
        self.objects = harness.collect(self.c.object_poses.type, ns + self.c.object_poses.name, depth(self.c.object_poses))
        wait_for(lambda: self.states and self.poses and self.objects, 30, "twin state topics")

    @staticmethod
    def newest(received: list):
        """The message with the latest stamp: the harness's two executor threads may append out of order."""
        return max(received, key=lambda r: convert.to_sec(r[1].header.stamp))[1]

    def q(self) -> np.ndarray:
        return convert.joint_state_arrays(self.newest(self.states), self.profile.all_joint_names)[0]

    def ee(self) -> np.ndarray:
        return convert.pose_arrays(self.newest(self.poses))[0]

    def obj(self, kind: str = "pick_cube") -> np.ndarray:
        msg = self.newest(self.objects)
        assert msg.header.frame_id == self.profile.frames.base
        rows = [[p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y, p.orientation.z,
                 p.orientation.w] for p in msg.poses]
        return object_state_from_poses(kind, np.array(rows))

    def stamp(self) -> float:
        return convert.to_sec(self.newest(self.states).header.stamp)

    def publisher(self, topic):
        pub = self.h.node.create_publisher(topic.type, self.ns + topic.name, topic.qos)
        wait_for(lambda: pub.get_subscription_count() > 0, 20, f"subscriber on {topic.name}")
        return pub

    def reset(self, seed: int) -> str:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        from std_srvs.srv import Trigger

        request = SetParameters.Request(parameters=[Parameter(
            name="seed", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed))])
        assert self.h.call(SetParameters, f"{self.ns or '/'}twin/set_parameters", request).results[0].successful
        message = self.h.call(Trigger, self.ns + self.c.reset_service.name).message
        self.catch_up()
        return message

    def _on_clock(self, msg) -> None:
        self.sim_clock = convert.to_sec(msg.clock)

    def now(self) -> float:
        """The twin's time now: its newest /clock (sim time) or the wall clock."""
        if not self.sim_time:
            return time.time()
        wait_for(lambda: self.sim_clock is not None, 20, "/clock")
        return self.sim_clock

    def catch_up(self) -> None:
        """Wait for state stamped after now: on a loaded machine this harness reads its 100 Hz topics up to
        a second behind."""
        now = self.now()
        newest = lambda received: convert.to_sec(self.newest(received).header.stamp)  # noqa: E731
        wait_for(lambda: min(newest(self.states), newest(self.poses), newest(self.objects)) > now, 20, "current state")


@pytest.fixture(scope="module")
def probe(twin, harness, profile_path):
    return Probe(harness, profile_path)


def test_joint_trajectory_converges(probe):
    q0 = probe.q()
    goal = q0.copy()
    goal[:3] += [0.3, -0.2, 0.25]
    msg = convert.make_trajectory(probe.profile.all_joint_names, [0.5, 1.0], np.vstack([(q0 + goal) / 2, goal]))
    probe.publisher(probe.c.joint_trajectory).publish(msg)
    wait_for(lambda: np.abs(probe.q() - goal).max() < 0.01, 20, "joint_states to reach the trajectory's end")


def test_gripper_command_moves_the_gripper(probe):
    from std_msgs.msg import Float64MultiArray

    target = 0.5 * (probe.profile.gripper.open + probe.profile.gripper.closed)
    probe.publisher(probe.c.gripper_commands).publish(Float64MultiArray(data=[target]))
    wait_for(lambda: abs(probe.q()[-1] - target) < 0.02, 20, "the gripper joint to reach its command")


def test_cartesian_pose_is_reached_within_5mm(probe):
    kin = Kinematics(probe.profile)
    n_arm = len(probe.profile.joints)
    q_goal = np.array(probe.profile.sim.home[:n_arm]) + [0.25, 0.2, -0.15, 0.1, 0.3]
    position, quat = kin.fk(q_goal)
    pub = probe.publisher(probe.c.target_pose)
    pub.publish(convert.make_pose(position, quat, probe.profile.frames.base))
    wait_for(lambda: np.linalg.norm(probe.ee() - position) < 0.005, 30, "ee_pose within 5 mm of the target")


def test_cartesian_twist_moves_the_end_effector(probe):
    time.sleep(0.5)
    probe.catch_up()
    start = probe.ee()
    pub = probe.publisher(probe.c.target_twist)
    began = time.monotonic()
    for _ in range(20):  # streamed at 20 Hz for about 1 s: +2 cm/s along z
        pub.publish(convert.make_twist([0.0, 0.0, 0.02], [0.0, 0.0, 0.0], probe.profile.frames.base))
        time.sleep(0.05)
    streamed = time.monotonic() - began
    time.sleep(0.5)  # the stream stops: the watchdog holds the arm
    probe.catch_up()
    moved = probe.ee() - start
    watchdog = probe.profile.control.watchdog_periods * probe.profile.control_period
    assert 0.01 < moved[2] < 0.02 * (streamed + watchdog) + 0.003 and np.abs(moved[:2]).max() < 0.005, moved


def test_bad_commands_are_rejected_without_moving(probe, twin):
    from std_msgs.msg import Float64MultiArray

    time.sleep(0.5)
    probe.catch_up()
    before = probe.q()
    names = list(probe.profile.all_joint_names)
    names[1] = "no_such_joint"
    probe.publisher(probe.c.joint_trajectory).publish(
        convert.make_trajectory(names, [0.5], (before + 0.3)[None, :]))
    commands = probe.publisher(probe.c.joint_commands)
    time.sleep(1.2)  # rejections are logged at most once a second
    commands.publish(Float64MultiArray(data=[float("nan")] * len(probe.profile.joints)))
    time.sleep(1.2)
    commands.publish(Float64MultiArray(data=[0.1, 0.2]))
    time.sleep(1.2)
    probe.catch_up()
    assert np.abs(probe.q() - before).max() < 2e-3
    out = twin.output()
    assert "rejected joint_trajectory" in out and "no_such_joint" in out
    assert "rejected commands: command contains NaN" in out
    assert "rejected commands: command has 2 values" in out


def test_reset_with_the_same_seed_gives_the_same_state(probe):
    assert probe.reset(11) == "reset with seed 11"
    first_obj, first_q = probe.obj(), probe.q()
    goal = first_q.copy()
    goal[0] += 0.4
    probe.publisher(probe.c.joint_trajectory).publish(
        convert.make_trajectory(probe.profile.all_joint_names, [0.3], goal[None, :]))
    wait_for(lambda: abs(probe.q()[0] - goal[0]) < 0.05, 20, "arm to move")
    probe.reset(11)
    assert np.allclose(probe.obj(), first_obj, atol=1e-4)  # sampled at slightly different times while the cube settles
    assert np.allclose(probe.q(), first_q, atol=1e-3)
    probe.reset(12)
    assert not np.allclose(probe.obj()[:2], first_obj[:2], atol=1e-3)


def test_task_success_reports_progress_and_pause_stops_time(probe):
    from std_srvs.srv import SetBool, Trigger

    reply = probe.h.call(Trigger, probe.c.task_success_service.name)
    assert reply.success is False and "progress=" in reply.message
    assert probe.h.call(SetBool, probe.c.pause_service.name, SetBool.Request(data=True)).success
    paused = time.time()
    time.sleep(1.3)
    assert probe.stamp() < paused + 0.02, "a paused twin does not advance"  # real time: stamps are the wall clock
    probe.h.call(SetBool, probe.c.pause_service.name, SetBool.Request(data=False))
    probe.catch_up()
    assert abs(probe.stamp() - time.time()) < 0.5, "in real time, stamps follow the wall clock (pauses skipped)"


def test_camera_stream_stamps_and_info(probe):
    """Real-time mode: capture stamps increase, at most at the configured rate; CameraInfo matches the MJCF fovy.
    (The wall-clock frame rate depends on the renderer: see benchmarks/sim_realtime.py.)"""
    from sensor_msgs.msg import CameraInfo, Image

    topics = probe.c.camera("front")
    images = probe.h.collect(Image, topics.image.name, topics.image.qos)
    infos = probe.h.collect(CameraInfo, topics.info.name, topics.info.qos)
    wait_for(lambda: len(images) >= 4 and len(infos) >= 4, 60, "images")
    stamps = np.array([convert.to_sec(m.header.stamp) for _, m in images])
    assert np.all(np.diff(stamps) > 0), "image stamps increase strictly"
    assert np.all(np.diff(stamps) >= 1.0 / CAM["fps"] - 1e-3), "never faster than the configured rate"
    image = convert.image_to_array(images[-1][1])
    assert image.shape == (CAM["height"], CAM["width"], 3) and image.std() > 5
    info = infos[-1][1]
    assert (info.width, info.height) == (CAM["width"], CAM["height"])
    assert info.header.frame_id == images[-1][1].header.frame_id == "front_color_optical_frame"
    assert np.allclose(np.array(info.k).reshape(3, 3), Intrinsics.from_fovy(CAM["width"], CAM["height"], 45.0).K)
    info_stamps = {convert.to_sec(m.header.stamp) for _, m in infos}
    assert stamps[-2] in info_stamps, "every image has a CameraInfo with the same stamp"


def test_ros_path_matches_the_in_process_env(harness, profile_path, tmp_path):
    """Same seed and action sequence: same observation keys/shapes/dtypes/bounds and trajectory.
    (Paced at 0.3x with /clock, so neither the twin nor this Python harness falls behind on a loaded machine.)"""
    from sensor_msgs.msg import Image

    twin = Twin(["-p", f"robot:={profile_path}", "-p", "task:=pick_cube", "-p", "realtime_factor:=0.3",
                 "-r", "__ns:=/parity"], tmp_path / "parity.log")
    env = TwinEnv(str(profile_path), "pick_cube", cameras=["front"])
    try:
        probe = Probe(harness, profile_path, "/parity/", sim_time=True, keep_all=True)
        obs, _ = env.reset(seed=21)
        expert = make_expert(env.profile, env.task_config)
        actions, expected = [], [obs]
        for _ in range(12):
            actions.append(expert.act({k: v.astype(float) for k, v in obs.items()}))
            obs, *_ = env.step(actions[-1])
            expected.append(obs)

        probe.reset(21)
        front = probe.c.camera("front").image
        images: list = []
        subscription = probe.h.node.create_subscription(Image, probe.ns + front.name, images.append, front.qos)
        wait_for(lambda: images, 20, "an image")
        probe.h.node.destroy_subscription(subscription)  # one is enough; decoding more slows the harness
        q_start = probe.q()
        assert np.allclose(q_start, expected[0]["joint_pos"], atol=1e-3)
        assert np.allclose(probe.obj(), expected[0]["object_state"], atol=1e-3)  # the cube settles
        pose = probe.poses[-1][1]
        ros_obs = observation_dict(q_start, np.zeros_like(q_start), convert.pose_arrays(pose), probe.obj(),
                                   {"front": convert.image_to_array(images[-1])})
        assert set(ros_obs) == set(expected[0])
        for key, value in ros_obs.items():
            assert value.shape == expected[0][key].shape and value.dtype == expected[0][key].dtype, key
        assert env.observation_space.contains(ros_obs)

        dt = 1.0 / env.profile.control.policy_rate_hz
        start = probe.now() + 1.0  # time for the message to arrive before it starts
        times = dt * np.arange(1, len(actions) + 1)
        msg = convert.make_trajectory(probe.profile.all_joint_names, times, np.array(actions), convert.to_stamp(start))
        probe.publisher(probe.c.joint_trajectory).publish(msg)
        wait_for(lambda: probe.stamp() > start + times[-1] + 0.05, 30, "the trajectory to finish")
        history = [(convert.to_sec(m.header.stamp), m) for _, m in probe.states]
        stamps = np.array([s for s, _ in history])
        positions = np.array([convert.joint_state_arrays(m, probe.profile.all_joint_names)[0] for _, m in history])
        order = np.argsort(stamps)
        stamps, positions = stamps[order], positions[order]
        checked = 0
        for k, t in enumerate(times, start=1):  # the state at the step's time, between the two samples around it
            i = np.searchsorted(stamps, start + t)
            if 0 < i < len(stamps) and stamps[i] - stamps[i - 1] <= 2.5 * probe.profile.control_period:
                q = np.array([np.interp(start + t, stamps, positions[:, j]) for j in range(positions.shape[1])])
                assert np.abs(q - expected[k]["joint_pos"]).max() < 0.03, (k, q, expected[k]["joint_pos"])
                checked += 1  # else a harness reading a second behind on a loaded machine lost the samples
        assert checked >= 4, f"only {checked} of {len(times)} steps' states received"
        assert np.allclose(probe.obj()[:3], expected[-1]["object_state"][:3], atol=0.01)
    finally:
        env.close()
        twin.stop()


def test_two_cameras_publish_every_frame_at_their_rate_on_sim_time(tmp_path, harness):
    """Sim time (realtime_factor != 1, /clock): the renderer and the subscribers pace the twin, so
    over a fixed sim window each of the profile's two cameras (640x480 at 30 Hz) publishes
    window x fps frames, counted, not timed; frame k shows the first 100 Hz control tick at or
    after k / fps, so stamps are 1/fps apart to within a tick (30 or 40 ms here), never further."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from robot_stack.contract import qos

    profile = load_profile("so101")
    assert [(c.name, c.width, c.height, c.fps) for c in profile.cameras] == [
        ("front", 640, 480, 30), ("wrist", 640, 480, 30)]
    contract = Contract(profile)
    clocks = harness.collect(Clock, "/clock", 10)
    diagnostics = harness.collect(DiagnosticArray, contract.diagnostics.name, contract.diagnostics.qos)
    images = {name: harness.collect(Image, f"/cams/{contract.camera(name).image.name}", qos(100))
              for name in profile.camera_names}
    twin = Twin(["-p", "robot:=so101", "-p", "task:=pick_cube", "-p", "realtime_factor:=0.0", "-r", "__ns:=/cams"],
                tmp_path / "cams.log")
    try:
        def stamps_of(name: str) -> list[float]:
            return [convert.to_sec(m.header.stamp) for _, m in images[name]]

        # the window (1.5 sim seconds) opens once both cameras' frames arrive: the twin runs as fast as it
        # can from its start, maybe before this harness has discovered it
        wait_for(lambda: all(images.values()) or twin.proc.poll() is not None, 180, "first frames")
        assert twin.proc.poll() is None, twin.output()
        start = max(min(stamps_of(n)) for n in images) + 0.2
        end = start + 1.5
        wait_for(lambda: min(max(stamps_of(n)) for n in images) > end + 0.1 or twin.proc.poll() is not None, 180,
                 "frames past the window")
        assert twin.proc.poll() is None, twin.output()
        assert max(convert.to_sec(m.clock) for _, m in clocks) > end, "/clock carries sim time"
        dt = profile.control_period
        window = {}
        for name, received in images.items():
            stamps = np.array(sorted(convert.to_sec(m.header.stamp) for _, m in received))
            assert len(np.unique(stamps)) == len(stamps), f"{name}: a frame published twice"
            window[name] = stamps[(stamps > start) & (stamps <= end)]
            period = 1.0 / profile.camera(name).fps
            assert abs(len(window[name]) - (end - start) / period) <= 1, (name, len(window[name]))
            assert np.all(np.abs(np.diff(window[name]) - period) < dt), (name, np.diff(window[name]))
            assert np.all(np.abs(np.round(window[name] / dt) * dt - window[name]) < 1e-6), "stamps on control ticks"
        assert np.array_equal(window["front"], window["wrist"]), "cameras at one rate capture the same ticks"
        wait_for(lambda: any(s.name.startswith("/cams/twin") for _, m in diagnostics for s in m.status), 10,
                 "diagnostics")
        status = [s for _, m in diagnostics for s in m.status if s.name.startswith("/cams/twin")]
        values = {kv.key: kv.value for kv in status[-1].values}
        assert values["dropped_frames"] == "0" and int(values["rendered_frames"]) > 0
    finally:
        twin.stop()


def test_bad_profile_exits_with_one_line_error(tmp_path):
    data = yaml.safe_load(open(load_profile("so101").source))
    data["joints"][0]["name"] = "shoulder_spin"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([TWIN, "--ros-args", "-p", f"robot:={path}"], env=ros_environment(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "'shoulder_spin' is not in the model" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_panda_torque_motors_follow_trajectories_and_poses(harness, tmp_path):
    """The Panda MJCF has torque motors: the twin's PD + bias compensation takes the same commands."""
    path = Path(load_profile("panda").source)
    twin = Twin(["-p", f"robot:={path}", "-p", "task:=reach", "-p", "cameras:=none", "-r", "__ns:=/panda"],
                tmp_path / "panda.log")
    try:
        probe = Probe(harness, path, "/panda/")
        q0 = probe.q()
        goal = q0.copy()
        goal[[0, 1, 3]] += [0.3, 0.2, 0.3]
        probe.publisher(probe.c.joint_trajectory).publish(
            convert.make_trajectory(probe.profile.all_joint_names, [1.0], goal[None, :]))
        wait_for(lambda: np.abs(probe.q()[:7] - goal[:7]).max() < 0.01, 30, "the Panda to reach the trajectory's end")
        position, quat = Kinematics(probe.profile).fk(q0[:7] + np.array([-0.2, 0.1, 0.1, 0.2, 0.0, 0.1, 0.2]))
        probe.publisher(probe.c.target_pose).publish(convert.make_pose(position, quat, probe.profile.frames.base))
        wait_for(lambda: np.linalg.norm(probe.ee() - position) < 0.005, 30, "the Panda EE within 5 mm of the pose")
    finally:
        twin.stop()
