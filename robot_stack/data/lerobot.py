"""Export an episode store as a LeRobotDataset v3.0 folder (``LeRobotDataset(repo_id, root=out)`` loads it).

Layout (as lerobot 0.6 writes it; checked against its loader)::

    meta/info.json                               codebase_version v3.0, fps, features, totals, path templates
    meta/stats.json                              per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                           task (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet     per episode: length, tasks, data and video file + frame ranges, stats/*
    data/chunk-000/file-000.parquet              one row per frame (files roll over at ~100 MB)
    videos/observation.images.<cam>/chunk-000/file-EEE.mp4   one file per episode and camera

Features: ``observation.state`` (joint_pos), ``observation.velocity`` (joint_vel), ``observation.ee_pose``,
``observation.environment_state`` (object_state), ``action``, ``intervention`` (bool),
``observation.images.<cam>`` (video) and ``capture_age.<cam>`` (float32 s: how old the frame was
at its tick, from the measured capture stamps), plus LeRobot's ``timestamp`` (frame_index / fps,
exact: ticks lie on a fixed grid), ``frame_index``, ``episode_index``, ``index`` and ``task_index``;
each episode row keeps its absolute start (``ros_time_start``, float64 s). Other
stored keys keep their name (images become videos). Videos are AV1 (SVT-AV1, yuv420p, GOP 2, CRF 30:
LeRobot's defaults) or H.264, written with the ffmpeg of imageio-ffmpeg; they are lossy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.data.ops import staged_folder
from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
RENAME = {"joint_pos": "observation.state", "joint_vel": "observation.velocity", "ee_pose": "observation.ee_pose",
          "object_state": "observation.environment_state", "action": "action", "intervention": "intervention"}
VIDEO_CODECS = {"av1": ("libsvtav1", ["-g", "2", "-crf", "30", "-preset", "8"]),
                "h264": ("libx264", ["-g", "2", "-crf", "23", "-preset", "veryfast"])}
STATS_IMAGE_FRAMES = 100


@dataclass
class ExportReport:
    episodes: int
    frames: int
    videos: int
    bytes: int
    seconds: float


def _is_image(spec: dict[str, Any]) -> bool:
    shape = tuple(spec["shape"])
    return spec["dtype"] == "uint8" and len(shape) == 3 and shape[-1] == 3


def _feature_name(key: str) -> str:
    if key in RENAME:
        return RENAME[key]
    if key.endswith("_stamp"):
        return f"capture_age.{key[: -len('_stamp')]}"
    if key.endswith("_image"):
        return f"observation.images.{key[: -len('_image')]}"
    return key.replace("/", "_")


def _names(key: str, profile: dict[str, Any] | None, width: int) -> list[str] | None:
    joints = [j["name"] for j in (profile or {}).get("joints", [])]
    if (profile or {}).get("gripper"):
        joints.append(profile["gripper"]["joint"])
    if key in ("joint_pos", "joint_vel", "action") and len(joints) == width:
        return joints
    if key == "ee_pose" and width == 7:
        return ["x", "y", "z", "qx", "qy", "qz", "qw"]
    return None


def _fps(store: EpisodeStore, fps: float | None) -> int:
    if fps is None:
        if "timestamp" not in store.keys or store.n_steps < 2:
            raise UserError(f"{store.path}: no timestamps to tell the frame rate; pass --fps")
        ends = store.episode_ends
        ts = store.array("timestamp")[: store.n_steps]
        inside = np.ones(len(ts) - 1, bool)
        inside[ends[:-1] - 1] = False
        fps = 1.0 / float(np.median(np.diff(ts)[inside]))
    if abs(fps - round(fps)) > 1e-3 * fps or round(fps) < 1:
        raise UserError(f"LeRobot datasets need a whole frame rate; this store runs at {fps:.4f} Hz")
    return int(round(fps))


# -- statistics (as lerobot.datasets.compute_stats) ---------------------------------------------------
def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    v = values.astype(np.float64).reshape(len(values), -1) if values.ndim > 1 else values.astype(np.float64)[:, None]
    out = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0), "count": np.array([len(v)])}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(v, q, axis=0)
    return out


def _image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of frames (N, H, W, 3) in [0, 1], shaped (3, 1, 1) as LeRobot keeps them
    (like LeRobot, on frames downsampled to about 150 px)."""
    stride = max(1, max(frames.shape[1:3]) // 150)
    frames = frames[:, ::stride, ::stride]
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    s = _stats(pixels)
    return {k: (v if k == "count" else v.reshape(3, 1, 1)) for k, v in s.items()} | {"count": np.array([len(frames)])}


def _aggregate(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pooled stats of episodes (count-weighted means and variances; quantiles count-weighted, as LeRobot)."""
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    w = (counts / counts.sum()).reshape(-1, *([1] * np.ndim(stats[0]["mean"])))
    means = np.stack([s["mean"] for s in stats])
    mean = (w * means).sum(0)
    var = (w * (np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2)).sum(0)
    out = {"min": np.min([s["min"] for s in stats], axis=0), "max": np.max([s["max"] for s in stats], axis=0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())])}
    for q in QUANTILES:
        key = f"q{int(round(q * 100)):02d}"
        out[key] = (w * np.stack([s[key] for s in stats])).sum(0)
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


# -- writers ------------------------------------------------------------------------------------------
class _VideoWriter:
    def __init__(self, path: Path, fps: int, size: tuple[int, int], codec: str):
        import os

        import imageio_ffmpeg

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (it prints its banner per video otherwise)
        vcodec, params = VIDEO_CODECS[codec]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.gen = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, codec=vcodec, pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1,
            output_params=params, ffmpeg_log_level="error")
        self.gen.send(None)

    def write(self, frames: np.ndarray) -> None:
        for frame in frames:
            self.gen.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self.gen.close()


def _arrow_column(values: np.ndarray, dtype: str) -> Any:
    import pyarrow as pa

    arrow_type = pa.from_numpy_dtype(np.dtype(dtype))
    if values.ndim == 1:
        return pa.array(values, type=arrow_type)
    flat = pa.array(values.reshape(len(values), -1).reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(arrow_type, values.shape[1]))  # as `datasets` writes it


def _hf_feature(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``datasets`` feature of a LeRobot feature (stored in the parquet schema, as ``datasets`` writes it)."""
    shape = tuple(spec["shape"])
    value = {"dtype": spec["dtype"], "_type": "Value"}
    return value if shape == (1,) else {"feature": value, "length": shape[0], "_type": "List"}


def _tasks_table(tasks: list[str]) -> Any:
    """meta/tasks.parquet: index ``task`` -> ``task_index``, with the pandas metadata ``pd.read_parquet`` uses."""
    import pyarrow as pa

    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                                       "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.3.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 >= CHUNKS_SIZE else (chunk, file + 1)


def export_lerobot(store: EpisodeStore, episodes: Sequence[int], out: Path, *, fps: float | None = None,
                   task: str | None = None, codec: str = "av1", progress: bool = True) -> ExportReport:
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    start = time.monotonic()
    if codec not in VIDEO_CODECS:
        raise UserError(f"unknown video codec {codec!r} (use {', '.join(VIDEO_CODECS)})")
    if not episodes:
        raise UserError(f"{store.path}: no episodes to export")
    rate = _fps(store, fps)
    specs = store.keys
    profile = store.profile(episodes[0])
    images = [k for k, s in specs.items() if _is_image(s)]
    stamps = [k for k in specs if k.endswith("_stamp") and k[: -len("_stamp")] + "_image" in images and "timestamp" in specs]
    lowdim = [k for k in specs if k not in images and k != "timestamp"]
    bad = [k for k in lowdim if len(specs[k]["shape"]) > 1]
    if bad:
        raise UserError(f"{store.path}: keys {bad} are neither images (H, W, 3) uint8 nor vectors; LeRobot cannot hold them")

    features: dict[str, dict[str, Any]] = {}
    for key in lowdim:
        shape = tuple(specs[key]["shape"]) or (1,)
        dtype = "float32" if key in stamps else specs[key]["dtype"]
        features[_feature_name(key)] = {"dtype": dtype, "shape": list(shape), "names": _names(key, profile, shape[0])}
    vcodec = "av1" if codec == "av1" else "h264"
    for key in images:
        h, w, c = specs[key]["shape"]
        features[_feature_name(key)] = {
            "dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": vcodec, "video.pix_fmt": "yuv420p",
                     "video.fps": rate, "video.channels": c, "video.g": 2, "video.crf": 30 if codec == "av1" else 23,
                     "is_depth_map": False, "has_audio": False},
        }
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}

    tasks: list[str] = []
    episode_rows: list[dict[str, Any]] = []
    ep_stats: list[dict[str, dict[str, np.ndarray]]] = []
    data_writer, data_loc, data_bytes, index = None, (0, 0), 0, 0
    hf_meta = {b"huggingface": json.dumps({"info": {"features": {
        name: _hf_feature(f) for name, f in features.items() if f["dtype"] != "video"}}}).encode()}
    with staged_folder(out) as tmp:
        bar = tqdm(total=sum(store.episodes[e].length for e in episodes), desc="lerobot export", unit="frame",
                   disable=not progress, leave=False)
        for new_index, episode in enumerate(episodes):
            info = store.episodes[episode]
            label = task if task is not None else (info.task or "unspecified")
            if label not in tasks:
                tasks.append(label)
            s = store.episode_slice(episode)
            n = s.stop - s.start
            data = store.episode(episode, lowdim + (["timestamp"] if "timestamp" in specs else []))
            for key in stamps:  # absolute capture stamps -> age at the tick (float32 keeps microseconds)
                data[key] = (data["timestamp"] - data[key]).astype(np.float32)
            stats: dict[str, dict[str, np.ndarray]] = {}
            columns: dict[str, Any] = {}
            for key in lowdim:
                name, values = _feature_name(key), data[key]
                columns[name] = _arrow_column(values, features[name]["dtype"])
                stats[name] = _stats(values)
            frame_index = np.arange(n, dtype=np.int64)
            extra = {"timestamp": (frame_index / rate).astype(np.float32), "frame_index": frame_index,
                     "episode_index": np.full(n, new_index, np.int64), "index": np.arange(index, index + n, dtype=np.int64),
                     "task_index": np.full(n, tasks.index(label), np.int64)}
            for name, values in extra.items():
                columns[name] = _arrow_column(values, features[name]["dtype"])
                stats[name] = _stats(values)
            table = pa.table(columns).replace_schema_metadata(hf_meta)
            if data_writer is not None and data_bytes > DATA_FILE_MB * 1e6:
                data_writer.close()
                data_writer, data_loc, data_bytes = None, _next_file(*data_loc), 0
            if data_writer is None:
                path = tmp / DATA_PATH.format(chunk_index=data_loc[0], file_index=data_loc[1])
                path.parent.mkdir(parents=True, exist_ok=True)
                data_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            data_writer.write_table(table)
            data_bytes += table.nbytes
            row: dict[str, Any] = {
                "episode_index": new_index, "tasks": [label], "length": n,
                "data/chunk_index": data_loc[0], "data/file_index": data_loc[1],
                "dataset_from_index": index, "dataset_to_index": index + n,
            }
            if "timestamp" in data:
                row["ros_time_start"] = float(data["timestamp"][0])
            video_loc = (new_index // CHUNKS_SIZE, new_index % CHUNKS_SIZE)
            for key in images:
                name = _feature_name(key)
                h, w, _ = specs[key]["shape"]
                writer = _VideoWriter(tmp / VIDEO_PATH.format(video_key=name, chunk_index=video_loc[0], file_index=video_loc[1]),
                                      rate, (w, h), codec)
                sample = np.unique(np.linspace(0, n - 1, min(n, STATS_IMAGE_FRAMES)).astype(int))
                sampled = []
                try:
                    arr = store.array(key)
                    for a in range(0, n, 64):
                        frames = arr[s.start + a : s.start + min(a + 64, n)]
                        writer.write(frames)
                        sampled.append(frames[sample[(sample >= a) & (sample < a + 64)] - a])
                finally:
                    writer.close()
                stats[name] = _image_stats(np.concatenate(sampled))
                row |= {f"videos/{name}/chunk_index": video_loc[0], f"videos/{name}/file_index": video_loc[1],
                        f"videos/{name}/from_timestamp": 0.0, f"videos/{name}/to_timestamp": n / rate}
            for name, st in stats.items():
                row |= {f"stats/{name}/{k}": np.asarray(v).tolist() for k, v in st.items()}
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            episode_rows.append(row)
            ep_stats.append(stats)
            index += n
            bar.update(n)
        bar.close()
        if data_writer is not None:
            data_writer.close()
        episodes_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path, compression="snappy")
        pq.write_table(_tasks_table(tasks), tmp / "meta" / "tasks.parquet")
        stats = {name: _aggregate([s[name] for s in ep_stats]) for name in ep_stats[0]}
        (tmp / "meta" / "stats.json").write_text(json.dumps(_jsonable(stats), indent=2))
        info_json = {
            "codebase_version": CODEBASE_VERSION, "robot_type": (profile or {}).get("name"),
            "total_episodes": len(episodes), "total_frames": index, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
            "fps": rate, "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if images else None, "features": features,
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info_json, indent=4))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return ExportReport(episodes=len(episodes), frames=index, videos=len(images) * len(episodes), bytes=size,
                        seconds=time.monotonic() - start)
