"""Dataset tools throughput: verify, MCAP export, rosbag2 import, LeRobot v3 and zarr 2 exports, twin replay.

A store is recorded in-process from the twin (scripted expert, pick_cube, 10 Hz, one 640x480 camera
rendered by MuJoCo, lossless blosc images; full 10 s episodes), then each tool runs on it; reported:
wall time and steps (frames) per second, output size. Then image reads as training does them
(``arr[a:b]``, 64 frames at a time) from a JPEG and a blosc copy: robot_stack (OpenCV) and, when
``.venv-zarr3`` exists (scripts/zarr_venvs.sh), a generic zarr 3 reader with imagecodecs-zarr.

    .venv/bin/python benchmarks/data_tools.py [--episodes 3] [--width 640 --height 480] [--codec blosc]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def record(path: Path, episodes: int, width: int, height: int, codec: str):
    from robot_stack.data.replay import nominal_task
    from robot_stack.data.store import EpisodeStore
    from robot_stack.profile import load_profile
    from robot_stack.sim.experts import make_expert
    from robot_stack.sim.gym_env import TwinEnv
    from robot_stack.typed_config import to_dict

    base = load_profile("so101")
    profile = dataclasses.replace(base, cameras=(base.camera("front").at_resolution(width, height),))
    task = nominal_task("pick_cube")
    env = TwinEnv(profile, task, cameras=["front"])
    expert = make_expert(profile, task)
    store = EpisodeStore(path, "a", image_codec=codec, fsync=False)
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        expert.reset()
        rows: dict[str, list] = {}
        t0 = 1.7634e9 + 100 * e
        for k in range(env.max_steps):
            action = np.asarray(expert.act({key: v.astype(float) for key, v in obs.items() if not key.endswith("_image")}),
                                np.float32)
            step = {"timestamp": t0 + k / 10.0, "action": action, "intervention": np.bool_(False), **obs,
                    "front_stamp": t0 + k / 10.0 - 0.01}
            for key, value in step.items():
                rows.setdefault(key, []).append(value)
            obs, _, done, _, _ = env.step(action.astype(float))  # the whole episode (expert holds after success)
        store.append_episode({k: np.stack(v) for k, v in rows.items()}, profile=to_dict(profile), task="pick_cube",
                             success=bool(done), extra={"record_rate_hz": 10.0})
    env.close()
    return EpisodeStore(path)


GENERIC_READ = """
import sys, time, zarr
arr = zarr.open(sys.argv[1], mode="r")["data/front_image"]
best = float("inf")
for _ in range(3):
    t = time.perf_counter()
    for a in range(0, arr.shape[0], 64):
        arr[a:a + 64]
    best = min(best, time.perf_counter() - t)
print(1000 * best / arr.shape[0])
"""
ZARR3 = Path(__file__).resolve().parent.parent / ".venv-zarr3" / "bin" / "python"


def image_reads(store, tmp: Path) -> list[tuple[str, float, float]]:
    """(reader, ms per frame, MB per frame) of a JPEG and a blosc copy of the store's images."""
    from robot_stack.data.store import EpisodeStore

    out = []
    frames = store.array("front_image")[: store.n_steps]
    for codec in ("jpeg", "blosc"):
        copy = EpisodeStore(tmp / f"{codec}.zarr", "a", image_codec=codec, fsync=False)
        copy.append_episode({"timestamp": np.arange(len(frames)) * 0.1, "front_image": frames})
        arr = EpisodeStore(copy.path).array("front_image")
        mb = sum(f.stat().st_size for f in (copy.path / "data" / "front_image").rglob("*") if f.is_file()) / 1e6 / len(frames)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for a in range(0, len(frames), 64):
                arr[a:a + 64]
            best = min(best, time.perf_counter() - t)
        out.append((f"robot_stack, {codec} ({'OpenCV' if codec == 'jpeg' else 'numcodecs blosc'})",
                    1000 * best / len(frames), mb))
        if codec == "jpeg" and ZARR3.exists():
            ms = subprocess.run([str(ZARR3), "-c", GENERIC_READ, str(copy.path)], capture_output=True, text=True,
                                check=True).stdout
            out.append(("generic zarr 3.4 + imagecodecs-zarr, jpeg", float(ms), mb))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--codec", choices=("blosc", "jpeg"), default="blosc")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from robot_stack.data.bag import BagImportConfig, import_rosbag2
    from robot_stack.data.export import export_mcap
    from robot_stack.data.lerobot import export_lerobot
    from robot_stack.data.replay import compare
    from robot_stack.data.zarr2 import export_zarr2

    tmp = Path(tempfile.mkdtemp(prefix="data_tools_"))
    try:
        start = time.monotonic()
        store = record(tmp / "src.zarr", args.episodes, args.width, args.height, args.codec)
        steps = store.n_steps
        rows = [("record in-process (twin + render + write)", time.monotonic() - start, steps, store.nbytes_stored())]

        def size(path: Path) -> int:
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

        eps = list(range(store.n_episodes))
        start = time.monotonic()
        export_mcap(store, eps, tmp / "bags")
        rows.append(("export --mcap", time.monotonic() - start, steps, size(tmp / "bags")))
        start = time.monotonic()
        import_rosbag2([tmp / "bags"], tmp / "back.zarr", BagImportConfig(image_codec=args.codec))
        rows.append(("import --format rosbag2", time.monotonic() - start, steps, size(tmp / "back.zarr")))
        for codec in ("av1", "h264"):
            r = export_lerobot(store, eps, tmp / f"lerobot_{codec}", codec=codec, progress=False)
            rows.append((f"export --format lerobot ({codec})", r.seconds, r.frames, r.bytes))
        start = time.monotonic()
        report = store.verify()
        rows.append((f"verify ({report.chunks} chunks, checksums)", time.monotonic() - start, steps, 0))
        start = time.monotonic()
        export_zarr2(store, eps, tmp / "dp.zarr", progress=False)
        rows.append(("export --format zarr2", time.monotonic() - start, steps, size(tmp / "dp.zarr")))
        start = time.monotonic()
        scores = [compare(store, e, "step") for e in eps]
        rows.append(("replay --compare (shift search)", time.monotonic() - start, steps, 0))
        console = Console()
        table = Table(title=f"{steps} steps, {args.episodes} episodes, 10 Hz, front {args.width}x{args.height} ({args.codec}); "
                            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        for col in ("tool", "s", "steps/s", "MB"):
            table.add_column(col, justify="left" if col == "tool" else "right")
        for name, seconds, n, nbytes in rows:
            table.add_row(name, f"{seconds:.2f}", f"{n / seconds:.0f}", f"{nbytes / 1e6:.1f}" if nbytes else "")
        console.print(table)
        reads = Table(title="image reads as training does them (64 frames per read, best of 3)")
        for col in ("reader, codec", "ms/frame", "MB/frame"):
            reads.add_column(col, justify="left" if col.startswith("reader") else "right")
        for name, ms, mb in image_reads(store, tmp):
            reads.add_row(name, f"{ms:.2f}", f"{mb:.3f}")
        console.print(reads)
        console.print(f"load average {os.getloadavg()[0]:.1f}")
        console.print("twin replay of the in-process recording (step hold): mean RMS "
                      + ", ".join(f"{np.degrees(c.raw.rms[:5]).mean():.2f} deg (best shift {c.best.shift_s * 1000:+.0f} ms: "
                                  f"{np.degrees(c.best.rms[:5]).mean():.2f})" for c in scores))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
