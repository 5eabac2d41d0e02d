"""``robot-stack data``: info, video, plot, drop, merge and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.store import EpisodeStore
from test_data_store import assert_episode_equal, make_episode

PROFILE = {"name": "so101", "joints": [{"name": f"j{i}"} for i in range(6)]}


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    store = EpisodeStore(tmp_path / "demo.zarr", "a")
    for i, n in enumerate((12, 20, 9, 15)):
        store.append_episode(make_episode(i, n), task="pick", success=i % 2 == 0, profile=PROFILE)
    return tmp_path / "demo.zarr"


def test_info(store_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", str(store_path), "--episodes"]) == 0
    out = capsys.readouterr().out
    assert "4 episodes, 56 steps, 100.0 Hz" in out and "2 successful" in out
    assert "front_image" in out and "(56, 24, 32, 3)" in out and "uint8" in out


def test_video_and_plot(store_path: Path, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    assert main(["data", "video", str(store_path), "1", "-o", str(tmp_path / "ep1.mp4")]) == 0
    frames = list(imageio.get_reader(tmp_path / "ep1.mp4", "ffmpeg").iter_data())
    assert len(frames) == 20 and frames[0].shape == (24, 32, 3)
    assert main(["data", "plot", str(store_path), "-1", "-o", str(tmp_path / "last.png")]) == 0
    png = imageio.imread(tmp_path / "last.png")
    assert png.shape[0] > 400 and png.shape[1] > 600


def test_drop_and_merge(store_path: Path, tmp_path: Path) -> None:
    assert main(["data", "drop", str(store_path), "1", "-1"]) == 0
    store = EpisodeStore(store_path)
    np.testing.assert_array_equal(store.episode_ends, [12, 21])
    assert_episode_equal(store, 0, make_episode(0, 12))
    assert_episode_equal(store, 1, make_episode(2, 9))
    assert [e.success for e in store.episodes] == [True, True]
    assert store.profile(1) == PROFILE
    assert not list(tmp_path.glob("demo.zarr.*")), "drop left temporary folders"
    out = tmp_path / "all.zarr"
    assert main(["data", "merge", str(out), str(store_path), str(store_path)]) == 0
    merged = EpisodeStore(out)
    assert merged.n_episodes == 4
    assert_episode_equal(merged, 3, make_episode(2, 9))


def test_bad_input_is_one_line(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["data", "info", str(tmp_path / "missing.zarr")], "no episode store here"),
        (["data", "video", str(store_path), "7"], "no episode 7"),
        (["data", "drop", str(store_path), "1-x"], "bad episode list item"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    other = EpisodeStore(tmp_path / "other.zarr", "a")
    ep = make_episode(0, 5)
    ep["extra_key"] = np.zeros(5, np.float32)
    other.append_episode(ep)
    assert main(["data", "merge", str(tmp_path / "other.zarr"), str(store_path)]) == 2
    assert "episode keys differ" in capsys.readouterr().err
    (store_path / "zarr.json").write_text("garbage")
    proc = subprocess.run([str(Path(sys.executable).parent / "robot-stack"), "data", "info", str(store_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "corrupt episode store" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_export_mcap_round_trip(tmp_path: Path) -> None:
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image, JointState

    from robot_stack.convert import image_to_array, to_sec
    from robot_stack.profile import load_profile
    from robot_stack.typed_config import to_dict

    profile = to_dict(load_profile("so101").with_cameras(["front"]))
    store = EpisodeStore(tmp_path / "s.zarr", "a")
    episodes = [make_episode(i, n) for i, n in enumerate((7, 4))]
    for ep in episodes:
        ep["joint_vel"] = ep["joint_pos"] * 2
        store.append_episode(ep, profile=profile)
    assert main(["data", "export", str(tmp_path / "s.zarr"), "--mcap", str(tmp_path / "bags")]) == 0
    bag = tmp_path / "bags" / "episode_000001"
    assert (bag / "metadata.yaml").exists() and list(bag.glob("*.mcap"))
    with Reader(bag) as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
        assert topics == {"/joint_states": 4, "/arm_controller/commands": 4, "/gripper_controller/commands": 4,
                          "/teleop/intervention": 4, "/front/color/image_raw": 4}  # fully qualified, as ros2 bag records
        images = [m for c, t, m in reader.messages() if c.topic == "/front/color/image_raw"]
        joints = [m for c, t, m in reader.messages() if c.topic == "/joint_states"]
    first = deserialize_message(bytes(images[2]), Image)
    np.testing.assert_array_equal(image_to_array(first), episodes[1]["front_image"][2])
    assert to_sec(first.header.stamp) == pytest.approx(episodes[1]["front_stamp"][2], abs=1e-9)
    js = deserialize_message(bytes(joints[3]), JointState)
    np.testing.assert_allclose(js.position, episodes[1]["joint_pos"][3], rtol=1e-6)
    assert list(js.name) == load_profile("so101").all_joint_names


def test_import_diffusion_policy_zarr_v2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A zarr format 2 ReplayBuffer as diffusion_policy writes it (numcodecs Blosc), imported."""
    import numcodecs
    import zarr

    src = zarr.open_group(tmp_path / "pusht.zarr", mode="w", zarr_format=2)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    state = rng.standard_normal((30, 5)).astype(np.float32)
    src.create_array("data/img", data=img, chunks=(1, 16, 16, 3), compressors=numcodecs.Blosc())
    src.create_array("data/state", data=state, chunks=(10, 5))
    src.create_array("meta/episode_ends", data=np.array([12, 30], dtype=np.int64))
    assert main(["data", "import", str(tmp_path / "pusht.zarr"), str(tmp_path / "ours.zarr")]) == 0
    store = EpisodeStore(tmp_path / "ours.zarr")
    np.testing.assert_array_equal(store.episode_ends, [12, 30])
    np.testing.assert_array_equal(store.episode(1)["img"], img[12:])
    np.testing.assert_array_equal(store.episode(0)["state"], state[:12])
    assert main(["data", "import", str(tmp_path / "ours.zarr" / "data"), str(tmp_path / "x.zarr")]) == 2
    assert "not a diffusion_policy replay buffer" in capsys.readouterr().err
