"""``robot-stack data replay``: twin replay and --compare (sim-to-real gap), and publishing on the contract.

Stores here are recorded from the twin in-process (``TwinEnv`` + the scripted expert, one step per
policy period, the action ramped in as ``TwinEnv.step`` does), so a ``linear`` replay from the
recorded initial state must reproduce them exactly; a twin with an injected actuation latency or
with heavier joint damping stands in for hardware whose gap the comparison must show. (A store
recorded over ROS through the launch runner is compared in tests/test_teleop_record.py.)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for
from robot_stack.cli import main
from robot_stack.data.replay import TwinReplayer, compare, nominal_task
from robot_stack.data.store import EpisodeStore
from robot_stack.profile import load_profile
from robot_stack.typed_config import to_dict

T0 = 1.7634e9


def small_camera_profile():
    p = load_profile("so101")
    return dataclasses.replace(p, cameras=(dataclasses.replace(p.camera("front").at_resolution(64, 48), fps=10),))


def record_in_twin(path: Path, *, latency_ticks: int = 0, damping: float = 1.0, camera: bool = False,
                   seed: int = 1, steps: int = 25) -> EpisodeStore:
    """One pick_cube episode of the scripted expert in TwinEnv; the 'robot' may be perturbed."""
    from robot_stack.sim.experts import make_expert
    from robot_stack.sim.gym_env import TwinEnv

    profile = small_camera_profile() if camera else load_profile("so101").with_cameras([])
    task = nominal_task("pick_cube")
    env = TwinEnv(profile, task, cameras=["front"] if camera else [])
    env.sim.model.dof_damping[env.sim.dof_index] *= damping
    expert = make_expert(profile, task)
    obs, _ = env.reset(seed=seed)
    env.sim.latency = latency_ticks
    expert.reset()
    rows: dict[str, list] = {}
    for k in range(steps):
        action = np.asarray(expert.act({key: v.astype(float) for key, v in obs.items() if not key.endswith("_image")}),
                            np.float32)
        step = {"timestamp": T0 + k / 10.0, "action": action, "intervention": np.bool_(k % 7 == 0), **obs}
        if camera:
            step["front_stamp"] = T0 + k / 10.0 - 0.004
        for key, value in step.items():
            rows.setdefault(key, []).append(value)
        obs, *_ = env.step(action.astype(float))
    env.close()
    store = EpisodeStore(path, "a")
    store.append_episode({k: np.stack(v) for k, v in rows.items()}, profile=to_dict(profile), task="pick_cube",
                         success=True, extra={"record_rate_hz": 10.0})
    return store


def test_twin_recording_replays_exactly_and_perturbations_show(tmp_path: Path) -> None:
    nominal = compare(record_in_twin(tmp_path / "twin.zarr"), 0, "linear", max_shift_ticks=3)
    assert nominal.raw.shift_ticks == 0 and nominal.best.shift_ticks == 0
    assert np.abs(nominal.raw.error).max() < 1e-6, nominal.raw.max_abs  # same physics, same commands: identical (float32)
    assert nominal.raw.success is True and nominal.raw.recorded_success is True

    late = compare(record_in_twin(tmp_path / "late.zarr", latency_ticks=3), 0, "linear", max_shift_ticks=5)
    assert np.degrees(late.raw.rms[:5]).mean() > 0.5, late.raw.rms  # clearly visible
    assert late.best.shift_ticks == -3  # the robot answered 30 ms later than the twin: found exactly
    assert np.abs(late.best.error).max() < 1e-6

    damped = compare(record_in_twin(tmp_path / "damped.zarr", damping=3.0), 0, "linear", max_shift_ticks=3)
    assert np.degrees(damped.best.rms[:5]).mean() > 1.0, damped.best.rms  # physics differ: no shift explains it
    # step interpolation on a ramped recording: a constant lead, also found
    step = compare(EpisodeStore(tmp_path / "twin.zarr"), 0, "step", max_shift_ticks=6)
    assert np.degrees(step.raw.rms[:5]).mean() > 0.2 and step.best.score() < step.raw.score()


def test_replay_cli_compare_table_png_and_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import imageio.v2 as imageio

    record_in_twin(tmp_path / "cam.zarr", camera=True, steps=12)
    png = tmp_path / "gap.png"
    assert main(["data", "replay", str(tmp_path / "cam.zarr"), "--compare", "--interpolation", "linear", "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert "shoulder_pan" in out and "deg" in out and "mean RMS joint error 0.00 deg" in out, out
    image = imageio.imread(png)
    assert image.shape[0] > 600 and image.shape[1] > 600
    video = tmp_path / "twin.mp4"
    assert main(["data", "replay", str(tmp_path / "cam.zarr"), "--episode", "-1", "--video", str(video),
                 "--interpolation", "linear"]) == 0
    frames = list(imageio.get_reader(video, "ffmpeg").iter_data())
    assert len(frames) == 12 and frames[0].shape == (96, 64, 3)  # recorded frame above the twin's render
    recorded = EpisodeStore(tmp_path / "cam.zarr").episode(0)["front_image"]
    # the twin renders the state it replays: each replayed frame is close to the recorded one (H.264, lossy)
    assert np.abs(frames[5][:48].astype(int) - recorded[5]).mean() < 8
    assert np.abs(frames[5][48:].astype(int) - recorded[5]).mean() < 8


def test_replay_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = EpisodeStore(tmp_path / "bare.zarr", "a")
    store.append_episode({"timestamp": np.arange(5) * 0.1, "joint_pos": np.zeros((5, 6), np.float32),
                          "action": np.zeros((5, 6), np.float32)})
    for argv, message in (
        (["--episode", "3"], "no episode 3"),
        ([], "has no robot profile"),
    ):
        assert main(["data", "replay", str(tmp_path / "bare.zarr"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_replayer_restores_objects_and_state(tmp_path: Path) -> None:
    store = record_in_twin(tmp_path / "s.zarr", steps=3)
    replayer = TwinReplayer(store, 0)
    try:
        replayer._restore()
        obs = replayer.env._obs()
        ep = store.episode(0)
        np.testing.assert_array_equal(obs["joint_pos"], ep["joint_pos"][0])
        np.testing.assert_allclose(obs["object_state"], ep["object_state"][0], atol=1e-7)
    finally:
        replayer.close()


def test_ros_replay_is_recorded_back_by_the_recorder(spawn, ros, tmp_path: Path) -> None:
    """The episode published on the contract and re-recorded by recorder_node (lossless): same steps and frames."""
    import yaml
    from std_srvs.srv import Trigger

    src = record_in_twin(tmp_path / "src.zarr", camera=True, steps=30)
    profile_yaml = tmp_path / "profile.yaml"
    profile_yaml.write_text(yaml.safe_dump(src.profile(0)))
    out = tmp_path / "again.zarr"
    recorder = spawn([str(Path(sys.executable).parent / "recorder_node"), "--ros-args", "-p", f"robot:={profile_yaml}",
                      "-p", f"store:={out}", "-p", "record_rate_hz:=10.0", "-p", "image_codec:=blosc",
                      "-p", "task:=pick_cube", "-p", "fsync:=false"])
    wait_for(lambda: ros.node.count_subscribers("joint_states") > 0, 60, "recorder subscriptions")
    player = spawn([str(Path(sys.executable).parent / "robot-stack"), "data", "replay", str(tmp_path / "src.zarr"),
                    "--ros", "--wait", "10"])
    wait_for(lambda: ros.call(Trigger, "episode/start", timeout=20.0).success, 60, "episode/start (streams arriving)")
    log = player.communicate(timeout=120)[0]
    assert player.returncode == 0, log
    assert "published episode 0" in log and "joint_states 30" in log and "front 30" in log, log
    reply = ros.call(Trigger, "episode/save", timeout=30.0)
    assert reply.success, reply.message
    recorder.terminate()
    recorder.communicate(timeout=60)
    a, b = src.episode(0), EpisodeStore(out).episode(0)
    assert len(b["timestamp"]) >= 15, len(b["timestamp"])  # started late (discovery), then every step
    # each re-recorded step is one recorded step: joints, action, object state and the frame all of the same step
    k = np.array([int(np.flatnonzero((a["joint_pos"] == row).all(axis=1))[0]) for row in b["joint_pos"]])
    live = k[: int(np.argmax(k == k.max())) + 1]  # after the replay ends the recorder holds the last sample
    assert np.all(np.diff(k) >= 0) and np.mean(np.diff(live) == 1) > 0.8 and live[-1] == 29, k
    np.testing.assert_array_equal(b["object_state"], a["object_state"][k])  # stamped streams: the same step
    # commands count from their arrival (a few ms after the joint_states of the same step): that step or the one before
    same = (b["action"] == a["action"][k]).all(axis=1)
    before = (b["action"] == a["action"][np.maximum(k - 1, 0)]).all(axis=1)
    assert np.all(same | before) and same.mean() > 0.6, (same, before)
    flags = b["intervention"]
    assert np.all((flags == a["intervention"][k]) | (flags == a["intervention"][np.maximum(k - 1, 0)]))
    np.testing.assert_array_equal(b["front_image"], a["front_image"][k])  # lossless, exactly what was recorded
    # relative timing kept: stamps of consecutive frames 0.1 s apart as recorded (new clock)
    np.testing.assert_allclose(np.diff(b["front_stamp"])[np.diff(k) == 1], 0.1, atol=2e-3)
