"""rosbag2 (MCAP) import: a store exported with ``data export --mcap`` imports back to the same data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.store import EpisodeStore
from robot_stack.profile import load_profile
from robot_stack.typed_config import to_dict

RATE = 10.0


def small_profile():
    """so101 with one small 15 fps camera (slower than... no: faster than the 10 Hz recording)."""
    p = load_profile("so101")
    front = dataclasses.replace(p.camera("front").at_resolution(32, 24), fps=15)
    return dataclasses.replace(p, cameras=(front,))


def recorded_episode(seed: int, n: int, t0: float) -> dict[str, np.ndarray]:
    """What the recorder stores: a 10 Hz grid of absolute ROS times, nearest-earlier 15 fps frames."""
    rng = np.random.default_rng(seed)
    t = t0 + np.arange(n) / RATE
    frame_times = t0 - 0.05 + np.arange(3 * n) / 15.0
    k = np.searchsorted(frame_times, t, side="right") - 1
    frames = rng.integers(0, 256, (3 * n, 24, 32, 3), dtype=np.uint8)
    quat = rng.standard_normal((n, 4))
    cube = np.concatenate([rng.uniform(0.1, 0.3, (n, 3)), quat / np.linalg.norm(quat, axis=1, keepdims=True)], axis=1)
    return {
        "timestamp": t,
        "joint_pos": rng.standard_normal((n, 6)).astype(np.float32),
        "joint_vel": rng.standard_normal((n, 6)).astype(np.float32),
        "action": rng.standard_normal((n, 6)).astype(np.float32),
        "ee_pose": np.concatenate([rng.standard_normal((n, 3)), quat / np.linalg.norm(quat, axis=1, keepdims=True)],
                                  axis=1).astype(np.float32),
        "object_state": cube.astype(np.float32),
        "intervention": rng.random(n) < 0.3,
        "front_image": frames[k],
        "front_stamp": frame_times[k],
    }


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    store = EpisodeStore(tmp_path / "rec.zarr", "a")
    info = {"width": 32, "height": 24, "frame_id": "front_optical", "distortion_model": "plumb_bob",
            "d": [0.1, 0, 0, 0, 0], "k": [30.0, 0, 15.5, 0, 30.0, 11.5, 0, 0, 1], "r": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
            "p": [30.0, 0, 15.5, 0, 0, 30.0, 11.5, 0, 0, 0, 1, 0]}
    for i, n in enumerate((23, 9)):
        store.append_episode(recorded_episode(i, n, 1.7634e9 + 123.456789 * (i + 1)), profile=to_dict(small_profile()),
                             task="pick_cube", operator="ci", success=bool(i == 0),
                             extra={"record_rate_hz": RATE, "camera_info": {"front": info}})
    return tmp_path / "rec.zarr"


def test_mcap_export_imports_back_equal(store_path: Path, tmp_path: Path) -> None:
    assert main(["data", "export", str(store_path), "--mcap", str(tmp_path / "bags")]) == 0
    assert main(["data", "import", str(tmp_path / "bags"), str(tmp_path / "back.zarr"), "--format", "rosbag2"]) == 0
    src, back = EpisodeStore(store_path), EpisodeStore(tmp_path / "back.zarr")
    assert back.n_episodes == src.n_episodes == 2
    assert set(back.keys) == set(src.keys)
    for i in range(2):
        a, b = src.episode(i), back.episode(i)
        np.testing.assert_allclose(b["timestamp"], a["timestamp"], rtol=0, atol=1e-6)  # float64 seconds vs ns
        for key in a:
            assert b[key].dtype == a[key].dtype and b[key].shape == a[key].shape, key
            if key == "ee_pose":  # the recorder re-normalises quaternions (float64, then float32)
                np.testing.assert_allclose(b[key], a[key], rtol=0, atol=2e-7)
            elif key != "timestamp":  # everything else bit for bit, images included (lossless)
                assert b[key].tobytes() == a[key].tobytes(), (i, key)
        ea, eb = src.episodes[i], back.episodes[i]
        assert (eb.task, eb.operator, eb.success) == (ea.task, ea.operator, ea.success)
        assert back.profile(i) == src.profile(i)
        assert eb.extra["camera_info"] == ea.extra["camera_info"]
        assert eb.extra["dropped_steps"] == 0 and eb.extra["action_fallback_steps"] == 0
        assert eb.extra["source_bag"] == f"episode_{i:06d}"


def test_import_resamples_a_faster_bag_like_the_recorder(store_path: Path, tmp_path: Path) -> None:
    """Imported at 5 Hz: every other step, each stream nearest-earlier; then at 20 Hz: each step twice."""
    assert main(["data", "export", str(store_path), "--mcap", str(tmp_path / "bags"), "--episodes", "0"]) == 0
    bag = tmp_path / "bags" / "episode_000000"
    for rate, out in ((5.0, "slow.zarr"), (20.0, "fast.zarr")):
        assert main(["data", "import", str(bag), str(tmp_path / out), "--rate", str(rate)]) == 0
    src = EpisodeStore(store_path).episode(0)
    slow = EpisodeStore(tmp_path / "slow.zarr").episode(0)
    assert len(slow["timestamp"]) == 12
    for key in ("joint_pos", "action", "front_image", "front_stamp", "object_state"):
        np.testing.assert_array_equal(slow[key], src[key][::2])
    fast = EpisodeStore(tmp_path / "fast.zarr")
    f = fast.episode(0)
    assert len(f["timestamp"]) == 2 * 23 - 1
    np.testing.assert_array_equal(f["joint_pos"], np.repeat(src["joint_pos"], 2, axis=0)[:-1])
    np.testing.assert_allclose(np.diff(f["timestamp"]), 0.05, atol=1e-6)
    assert fast.episodes[0].extra["record_rate_hz"] == 20.0


def test_import_errors_are_one_line(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "export", str(store_path), "--mcap", str(tmp_path / "bags"), "--episodes", "1"]) == 0
    bag = tmp_path / "bags" / "episode_000001"
    capsys.readouterr()
    cases = [
        ([str(tmp_path), str(tmp_path / "o1.zarr"), "--format", "rosbag2"], "not a rosbag2 folder"),
        ([str(bag), str(tmp_path / "o2.zarr"), "--cameras", "wrist"], "has no camera 'wrist'"),
        ([str(bag), str(tmp_path / "o4.zarr"), "--robot", "so101", "--cameras", "wrist"], "no wrist/color/image_raw topic"),
        ([str(bag), str(tmp_path / "o3.zarr"), "--robot", "so101"], "profile says 640x480"),
    ]
    for argv, message in cases:
        assert main(["data", "import", *argv]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
