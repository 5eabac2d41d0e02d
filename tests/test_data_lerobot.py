"""``robot-stack data export --format lerobot``: a LeRobotDataset v3.0 folder.

The layout test reads it back with pyarrow and ffmpeg against what lerobot's loader expects. The
round trip through the real ``lerobot`` package runs when a Python with lerobot 0.6.1 is available
(``scripts/lerobot_venv.sh`` makes ``.venv-lerobot``: lerobot 0.6 needs Python >= 3.12 and
torch < 2.12, which the project's Python 3.11 + torch 2.13 environment cannot host).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.store import EpisodeStore
from test_data_replay import record_in_twin

REPO = Path(__file__).resolve().parent.parent
LEROBOT_PYTHON = Path(os.environ.get("LEROBOT_PYTHON", REPO / ".venv-lerobot" / "bin" / "python"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[EpisodeStore, Path]:
    tmp = tmp_path_factory.mktemp("lerobot")
    store = record_in_twin(tmp / "s.zarr", camera=True, steps=20)
    record_in_twin(tmp / "b.zarr", camera=True, steps=13, seed=2).copy_episode_to(store, 0)
    assert main(["data", "export", str(tmp / "s.zarr"), str(tmp / "out"), "--format", "lerobot"]) == 0
    return EpisodeStore(tmp / "s.zarr"), tmp / "out"


def test_layout_matches_lerobot_v3(exported: tuple[EpisodeStore, Path]) -> None:
    import imageio.v2 as imageio
    import pyarrow as pa
    import pyarrow.parquet as pq

    store, out = exported
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["robot_type"] == "so101"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 33, 1)
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [6], "names": [
        "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]}
    assert f["observation.images.front"]["dtype"] == "video" and f["observation.images.front"]["shape"] == [48, 64, 3]
    assert f["observation.images.front"]["info"]["video.codec"] == "av1"
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[name]["shape"] == [1]

    table = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    columns = {k for k, v in f.items() if v["dtype"] != "video"}
    assert set(table.column_names) == columns
    state_type = table.schema.field("observation.state").type  # datasets' Sequence(length=6) of float32
    assert pa.types.is_fixed_size_list(state_type) and state_type.list_size == 6 and state_type.value_type == pa.float32()
    assert str(table.schema.field("intervention").type) == "bool"
    assert str(table.schema.field("timestamp").type) == "float"
    assert str(table.schema.field("index").type) == "int64"
    cols = table.to_pydict()
    np.testing.assert_array_equal(cols["index"], np.arange(33))
    np.testing.assert_array_equal(cols["episode_index"], [0] * 20 + [1] * 13)
    np.testing.assert_array_equal(cols["frame_index"], list(range(20)) + list(range(13)))
    np.testing.assert_allclose(cols["timestamp"], np.array(cols["frame_index"]) / 10, atol=1e-6)
    for i, rows in ((0, slice(0, 20)), (1, slice(20, 33))):
        ep = store.episode(i)
        np.testing.assert_array_equal(np.array(cols["observation.state"][rows], np.float32), ep["joint_pos"])
        np.testing.assert_array_equal(np.array(cols["action"][rows], np.float32), ep["action"])
        np.testing.assert_array_equal(cols["intervention"][rows], ep["intervention"])
        np.testing.assert_allclose(cols["capture_age.front"][rows], ep["timestamp"] - ep["front_stamp"], atol=1e-6)

    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"], e["length"]) for e in episodes] == [(0, 20, 20), (20, 33, 13)]
    assert episodes[1]["videos/observation.images.front/file_index"] == 1 and episodes[1]["tasks"] == ["pick_cube"]
    assert episodes[1]["videos/observation.images.front/to_timestamp"] == pytest.approx(1.3)
    assert episodes[0]["ros_time_start"] == store.episode(0)["timestamp"][0]
    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pd.read_parquet -> index
    assert tasks.to_pydict() == {"task_index": [0], "task": ["pick_cube"]}
    stats = json.loads((out / "meta" / "stats.json").read_text())
    state = np.concatenate([store.episode(i)["joint_pos"] for i in range(2)])
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["max"], state.max(0), rtol=1e-6)
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}

    for i in range(2):  # one frame per step, each close to its own recorded frame (AV1, lossy)
        video = out / "videos" / "observation.images.front" / "chunk-000" / f"file-{i:03d}.mp4"
        frames = np.stack(list(imageio.get_reader(video, "ffmpeg").iter_data())).astype(int)
        recorded = store.episode(i)["front_image"].astype(int)
        assert frames.shape == recorded.shape
        err = np.abs(frames - recorded).mean(axis=(1, 2, 3))
        assert err.max() < 6, err


def test_export_errors_are_one_line(exported: tuple[EpisodeStore, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    store, out = exported
    capsys.readouterr()
    for argv, message in (([str(out)], "exists and is not empty"), ([str(tmp_path / "x"), "--fps", "7.5"], "whole frame rate")):
        assert main(["data", "export", str(store.path), *argv, "--format", "lerobot"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


LOAD = textwrap.dedent(
    """
    import json, sys
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    ds = LeRobotDataset("robot_stack/export", root=sys.argv[1], video_backend="pyav")
    win = LeRobotDataset("robot_stack/export", root=sys.argv[1], video_backend="pyav",
                         delta_timestamps={"observation.images.front": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]})
    items = [ds[i] for i in range(len(ds))]
    w = win[19]
    json.dump({"len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "task": items[0]["task"],
               "state": [it["observation.state"].tolist() for it in items],
               "episode_index": [int(it["episode_index"]) for it in items],
               "front": [it["observation.images.front"].tolist() for it in items],
               "window": [list(w["observation.images.front"].shape), list(w["action"].shape), w["action_is_pad"].tolist()],
               "stats_mean": ds.meta.stats["observation.state"]["mean"].tolist()}, open(sys.argv[2], "w"))
    """
)


@pytest.mark.skipif(not LEROBOT_PYTHON.exists(), reason="no Python with lerobot 0.6.1 (run scripts/lerobot_venv.sh)")
def test_real_lerobot_loads_the_export(exported: tuple[EpisodeStore, Path], tmp_path: Path) -> None:
    store, out = exported
    script = tmp_path / "load.py"
    script.write_text(LOAD)
    proc = subprocess.run([str(LEROBOT_PYTHON), str(script), str(out), str(tmp_path / "got.json")], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "got.json").read_text())
    assert (got["len"], got["episodes"], got["fps"], got["task"]) == (33, 2, 10, "pick_cube")
    state = np.concatenate([store.episode(i)["joint_pos"] for i in range(2)])
    np.testing.assert_array_equal(np.array(got["state"], np.float32), state)
    assert got["episode_index"] == [0] * 20 + [1] * 13
    images = np.concatenate([store.episode(i)["front_image"] for i in range(2)]).transpose(0, 3, 1, 2) / 255.0
    err = np.abs(np.array(got["front"]) - images).mean(axis=(1, 2, 3)) * 255  # decoded by lerobot (pyav), lossy
    assert err.max() < 6, err
    assert got["window"] == [[2, 3, 48, 64], [3, 6], [False, True, True]]  # last frame of episode 0: the future is padding
    np.testing.assert_allclose(got["stats_mean"], state.mean(0), rtol=1e-5, atol=1e-6)
