"""Dataset operations behind ``robot-stack data``: summary, video, plot, drop, merge."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError


def camera_names(store: EpisodeStore) -> list[str]:
    return [k[: -len("_image")] for k in store.keys if k.endswith("_image")]


def image_codec(store: EpisodeStore) -> str:
    """The codec of the store's image arrays ('jpeg' or 'blosc'), to keep it when copying."""
    from robot_stack.data.jpeg import is_jpeg

    for cam in camera_names(store):
        if any(is_jpeg(c) for c in store.array(f"{cam}_image").metadata.codecs):
            return "jpeg"
    return "blosc"


def _rate(store: EpisodeStore, damaged: Iterable[int]) -> float:
    """Recording rate from the timestamps of the undamaged episodes (median step)."""
    bad = set(damaged)
    steps = []
    for e in range(store.n_episodes):
        if e not in bad and store.episodes[e].length > 1:
            steps.append(np.diff(store.episode(e, ["timestamp"])["timestamp"]))
        if sum(len(d) for d in steps) > 10_000:
            break
    d = np.concatenate(steps) if steps else np.zeros(0)
    return float(1.0 / np.median(d)) if d.size else float("nan")


def summary(store: EpisodeStore, damaged: Iterable[int] = ()) -> dict[str, Any]:
    """Episodes, steps, rate, keys (shape, dtype, stored bytes) and frame-quality counters."""
    ends = store.episode_ends
    lengths = np.diff(np.concatenate([[0], ends]))
    fps = _rate(store, damaged) if "timestamp" in store.keys else float("nan")
    keys = {}
    for key, spec in store.keys.items():
        folder = store.path / "data" / key
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        keys[key] = {"shape": (store.n_steps, *spec["shape"]), "dtype": spec["dtype"], "bytes": size}
    episodes = store.episodes
    return {
        "path": str(store.path),
        "episodes": store.n_episodes,
        "steps": store.n_steps,
        "fps": fps,
        "duration_s": float(store.n_steps / fps) if fps == fps and fps > 0 else float("nan"),
        "lengths": lengths.tolist(),
        "success": sum(1 for e in episodes if e.success),
        "late_frames": sum(sum(e.late_frames.values()) for e in episodes),
        "missing_frames": sum(sum(e.missing_frames.values()) for e in episodes),
        "keys": keys,
        "bytes": store.nbytes_stored(),
    }


def parse_episodes(spec: Sequence[str], n: int) -> list[int]:
    """'3', '0-4', '-1' style episode lists -> sorted unique indices (validated)."""
    out: set[int] = set()
    for item in spec:
        for part in str(item).replace(",", " ").split():
            if re.fullmatch(r"-?\d+", part):
                out.add(int(part) + n if int(part) < 0 else int(part))
            elif m := re.fullmatch(r"(\d+)-(\d+)", part):
                out.update(range(int(m[1]), int(m[2]) + 1))
            else:
                raise UserError(f"bad episode list item {part!r} (use e.g. 3, 0-4, -1)")
    bad = sorted(i for i in out if not 0 <= i < n)
    if bad:
        raise UserError(f"no episode {bad[0]} (store has {n} episodes: 0..{n - 1})")
    return sorted(out)


def _progress(iterable: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="ep", leave=False)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Write the new folder ``out`` as a whole: into a hidden sibling that is renamed to ``out`` on
    success and removed on failure, so a failed export leaves nothing behind."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_damaged(store: EpisodeStore, episodes: Sequence[int], hint: str) -> None:
    """A one-line error naming any damaged episode among ``episodes`` (for copies that must be whole)."""
    from robot_stack.data.integrity import usable_episodes

    usable_episodes(store.verify(episodes=episodes, progress=True), list(episodes), skip_damaged=False, hint=hint)


def drop_episodes(path: Path, episodes: Sequence[int]) -> int:
    """Rewrite the store without ``episodes`` (a copy, then an atomic swap); returns episodes left."""
    src = EpisodeStore(path, "a")
    drop = set(episodes)
    keep = [i for i in range(src.n_episodes) if i not in drop]
    refuse_damaged(src, keep, f"drop them too (robot-stack data drop {path} {{bad}})")
    token = uuid.uuid4().hex[:8]
    tmp = path.with_name(f"{path.name}.drop-{token}")
    old = path.with_name(f"{path.name}.old-{token}")
    try:
        dst = EpisodeStore(tmp, "a", image_codec=image_codec(src))
        for i in _progress(keep, len(keep), "copying"):
            src.copy_episode_to(dst, i)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return len(keep)


def merge_stores(out: Path, inputs: Sequence[Path]) -> int:
    """Append every episode of ``inputs`` to ``out`` (created if missing); returns episodes added."""
    sources = [EpisodeStore(p) for p in inputs]
    for src in sources:
        if src.path.resolve() == out.resolve():
            raise UserError(f"{src.path}: cannot merge a store into itself")
        refuse_damaged(src, range(src.n_episodes), f"drop them first (robot-stack data drop {src.path} {{bad}})")
    codec = image_codec(sources[0]) if sources else "blosc"
    dst = EpisodeStore(out, "a", image_codec=codec)
    added = 0
    for src in sources:
        for i in _progress(range(src.n_episodes), src.n_episodes, f"merging {src.path.name}"):
            src.copy_episode_to(dst, i)
            added += 1
    return added


def write_video(store: EpisodeStore, episode: int, out: Path, fps: float | None = None) -> Path:
    """MP4 (H.264) of one episode's cameras, side by side."""
    import imageio.v2 as imageio
    from tqdm import tqdm

    cams = camera_names(store)
    if not cams:
        raise UserError(f"{store.path}: the store has no camera images (keys: {', '.join(store.keys)})")
    s = store.episode_slice(episode)
    if fps is None:
        ts = store.array("timestamp")[s] if "timestamp" in store.keys else np.zeros(0)
        fps = float(1.0 / np.median(np.diff(ts))) if ts.size > 1 else 10.0
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = [store.array(f"{c}_image") for c in cams]
    height = max(a.shape[1] for a in arrays)
    writer = imageio.get_writer(out, fps=fps, codec="libx264", quality=8, macro_block_size=2, pixelformat="yuv420p")
    try:
        for a in tqdm(range(s.start, s.stop, 32), desc=f"episode {episode}", unit="chunk", leave=False):
            b = min(a + 32, s.stop)
            blocks = []
            for arr in arrays:
                frames = arr[a:b]
                if frames.shape[-1] == 1:
                    frames = np.repeat(frames, 3, axis=-1)
                pad = height - frames.shape[1]
                blocks.append(np.pad(frames, ((0, 0), (0, pad), (0, 0), (0, 0))) if pad else frames)
            for frame in np.concatenate(blocks, axis=2):
                writer.append_data(frame)
    finally:
        writer.close()
    return out


def plot_episode(store: EpisodeStore, episode: int, out: Path) -> Path:
    """PNG with one panel per joint: measured position vs commanded action; interventions shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = store.episode(episode, [k for k in ("timestamp", "joint_pos", "action", "intervention") if k in store.keys])
    if "joint_pos" not in ep:
        raise UserError(f"{store.path}: no joint_pos key to plot")
    t = ep["timestamp"] - ep["timestamp"][0] if "timestamp" in ep else np.arange(len(ep["joint_pos"]))
    profile = store.profile(episode) or {}
    names = [j["name"] for j in profile.get("joints", [])] + ([profile["gripper"]["joint"]] if profile.get("gripper") else [])
    n = ep["joint_pos"].shape[1]
    names = names if len(names) == n else [f"joint {i}" for i in range(n)]
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n + 0.6), sharex=True, squeeze=False)
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(t, ep["joint_pos"][:, j], label="joint_pos", lw=1.2)
        if "action" in ep:
            ax.plot(t, ep["action"][:, j], label="action", lw=1.0, ls="--")
        if "intervention" in ep and ep["intervention"].any():
            ax.fill_between(t, 0, 1, where=ep["intervention"], transform=ax.get_xaxis_transform(),
                            color="orange", alpha=0.2, label="intervention")
        ax.set_ylabel(names[j], fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncols=3)
    axes[-1, 0].set_xlabel("time (s)")
    info = store.episodes[episode]
    fig.suptitle(f"{store.path.name} episode {episode}: {info.task or 'no task'} (success {info.success})", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def import_replay_buffer(source: Path, out: Path, chunk: int = 256) -> int:
    """Append the episodes of a diffusion_policy ReplayBuffer zarr (format 2 or 3) to ``out``."""
    import zarr

    if not (source / "zarr.json").exists() and not (source / ".zgroup").exists():
        raise UserError(f"{source}: not a zarr group (no zarr.json or .zgroup)")
    try:
        root = zarr.open_group(source, mode="r")
        if "episode_ends" in (dict(root.attrs).get("robot_stack") or {}):  # an episode store: its commit record rules
            return merge_stores(out, [source])
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        data = root["data"]
        arrays = {name: data[name] for name in data.array_keys()}
    except (KeyError, ValueError, OSError) as err:
        raise UserError(f"{source}: not a diffusion_policy replay buffer (needs data/<key> and meta/episode_ends: {err})") from None
    if not arrays:
        raise UserError(f"{source}: data/ holds no arrays")
    if np.any(np.diff(np.concatenate([[0], ends])) <= 0) or any(a.shape[0] < (ends[-1] if ends.size else 0) for a in arrays.values()):
        raise UserError(f"{source}: meta/episode_ends is not increasing or exceeds the data length")
    dst = EpisodeStore(out, "a")
    start = 0
    for episode, end in enumerate(_progress(ends, len(ends), f"importing {source.name}")):
        writer = dst.begin_episode()
        try:
            for a in range(start, int(end), chunk):
                b = min(a + chunk, int(end))
                writer.extend({k: arr[a:b] for k, arr in arrays.items()})
            writer.commit(task=f"imported from {source.name}", extra={"source_episode": episode})
        except BaseException:
            writer.discard()
            raise
        start = int(end)
    return len(ends)
