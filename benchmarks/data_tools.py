"""Dataset tools throughput: MCAP export, rosbag2 import, LeRobot v3 export, twin replay --compare.

A store is recorded in-process from the twin (scripted expert, pick_cube, 10 Hz, one 640x480 camera
rendered by MuJoCo, lossless blosc images; full 10 s episodes), then each tool runs on it; reported:
wall time and steps (frames) per second, output size.

    .venv/bin/python benchmarks/data_tools.py [--episodes 3] [--width 640 --height 480] [--codec blosc]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def record(path: Path, episodes: int, width: int, height: int, codec: str):  # noqa: ANN201
    from robot_stack.data.replay import nominal_task
    from robot_stack.data.store import EpisodeStore
    from robot_stack.profile import load_profile
    from robot_stack.sim.experts import make_expert
    from robot_stack.sim.gym_env import TwinEnv
    from robot_stack.typed_config import to_dict

    base = load_profile("so101")
    profile = dataclasses.replace(base, cameras=(dataclasses.replace(base.camera("front"), width=width, height=height),))
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
        console.print("twin replay of the in-process recording (step hold): mean RMS "
                      + ", ".join(f"{np.degrees(c.raw.rms[:5]).mean():.2f} deg (best shift {c.best.shift_s * 1000:+.0f} ms: "
                                  f"{np.degrees(c.best.rms[:5]).mean():.2f})" for c in scores))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
