"""The sim-to-real table: paired evaluation of K checkpoints on the twin and on the emulated cell (SIMPLER).

A deployable (image) policy is trained on demos recorded "on hardware": the scripted expert drives
the cell through the hardware path (servo_arm_node, opencv_camera_node, the recorder; the expert
sees the cube through the cell's harness, as an operator's eyes). Training snapshots at several
step counts give checkpoints of varying quality; each is evaluated on the twin (in-process, the
sign-off path) and on the cell (deploy.launch.xml sim:=false, judged by the harness). The table
shows both success rates, the gap per checkpoint, their Pearson correlation and the mean maximum
rank violation (MMRV: lower is better; 0 = the twin ranks the checkpoints as the cell does).

As a reference for the gap itself, the scripted expert (which sees the cube: the twin's state, the
cell's harness) runs on the twin, on the cell without gap (``config/cells/twin.yaml``) and on the cell.

Every stage is resumable: the demos, each snapshot and each evaluation are kept in ``--run`` and
skipped when present, so an interrupted run continues where it stopped.

    nice -n 5 .venv/bin/python benchmarks/sim_to_real.py [--cell default] [--run runs/sim_to_real]
        [--record 80] [--steps 500,1000,2000,4000] [--twin-episodes 20] [--cell-episodes 10] [--expert-episodes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")

OBS_KEYS = "joint_pos,ee_pose,front_image"


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def mmrv(sim: np.ndarray, real: np.ndarray) -> float:
    """Mean maximum rank violation (Li et al., SIMPLER 2024): for each policy, the largest real-success
    difference to another policy that the simulator orders the other way round; averaged."""
    sim, real = np.asarray(sim, float), np.asarray(real, float)
    n = len(sim)
    worst = [max((abs(real[i] - real[j]) for j in range(n) if (sim[i] < sim[j]) != (real[i] < real[j])), default=0.0)
             for i in range(n)]
    return float(np.mean(worst))


def expert_on_cell(cell: str, episodes: int, log: Path, dataset: Path | None = None) -> tuple[int, int]:
    """The scripted expert as the operator of the cell, through the hardware path (recorded into ``dataset``,
    successes only); returns (successes, episodes) from its own count."""
    import re

    from robot_stack.launcher import LaunchRunner
    from robot_stack.resources import share_dir
    from robot_stack.sim.cell.config import load_cell
    from robot_stack.sim.cell.evaluate import free_port

    config = load_cell(cell)
    tmp = Path(f"/tmp/robot_stack_sim_to_real_{os.getpid()}")
    tmp.mkdir(exist_ok=True)
    args = {"cell": cell, "robot": config.robot, "task": config.task, "cameras": "front" if dataset else "none",
            "drivers": "true", "expert": "true", "episodes": str(episodes), "dataset": str(dataset or ""),
            "bus": str(tmp / "arm"), "leader_bus": str(tmp / "leader"), "camera_port": str(free_port()),
            "harness_port": str(free_port())}
    print(f"the expert runs {episodes} episodes on cell {cell!r}" + (f", recorded into {dataset}" if dataset else "")
          + f" (log: {log})", flush=True)
    with open(log, "w") as out:
        runner = LaunchRunner(share_dir() / "launch" / "cell.launch.xml", args, stdout=out, stderr=out).start()
        try:
            while not (done := re.search(r"\[expert\]: done: (\d+)/(\d+)", log.read_text())):
                time.sleep(5)
                if runner.wait(0) is not None:
                    raise SystemExit(f"the cell stopped early: see {log}")
            time.sleep(5)  # the recorder commits the last episode
        finally:
            runner.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return int(done.group(1)), int(done.group(2))


def expert_on_twin(task: str, robot: str, episodes: int) -> tuple[int, int]:
    """The scripted expert in-process on the twin (benchmarks/sim_experts.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from sim_experts import run

    return round(run(robot, task, episodes)["success"] * episodes), episodes


def train_snapshots(store: Path, run: Path, steps: list[int], config: Path) -> dict[int, Path]:
    """Train in stages (resuming), keeping checkpoints/latest after each stage as a snapshot."""
    snapshots = {}
    for k in steps:
        snap = run / "snapshots" / f"step_{k:06d}"
        if not (snap / "model.safetensors").is_file():
            cmd = [sys.executable, "-m", "robot_stack.cli", "train", "diffusion", "--data", str(store), "--out",
                   str(run / "train"), "--preset", "image", "--config", str(config), "--obs-keys", OBS_KEYS,
                   "--steps", str(k), "--ckpt-every", str(min(steps)), "--no-progress"]
            if (run / "train" / "checkpoints" / "latest").is_dir():
                cmd.append("--resume")
            print(f"training to step {k}: {' '.join(cmd[2:])}", flush=True)
            subprocess.run(["nice", "-n", "5", *cmd], check=True)
            shutil.copytree(run / "train" / "checkpoints" / "latest", snap, dirs_exist_ok=True)
        snapshots[k] = snap
    return snapshots


def evaluate(snapshots: dict[int, Path], run: Path, cell: str, twin_episodes: int, cell_episodes: int) -> dict:
    from robot_stack.policies.evaluate import evaluate_in_process
    from robot_stack.sim.cell.config import load_cell
    from robot_stack.sim.cell.evaluate import evaluate_on_cell

    config = load_cell(cell)
    path = run / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for k, snap in snapshots.items():
        entry = results.setdefault(str(k), {})
        if "twin" not in entry:
            report = evaluate_in_process(snap, config.task, config.robot, twin_episodes, seed=1000, videos=0)
            entry["twin"] = [report.successes, len(report.episodes)]
            path.write_text(json.dumps(results, indent=1))
        if "cell" not in entry:
            report = evaluate_on_cell(snap, cell, cell_episodes, seed=3000, allow_unvalidated=True,
                                      log=run / f"cell_eval_{k}.log")
            entry["cell"] = [report.successes, len(report.episodes)]
            path.write_text(json.dumps(results, indent=1))
        print(f"step {k}: twin {entry['twin'][0]}/{entry['twin'][1]}, cell {entry['cell'][0]}/{entry['cell'][1]}",
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="default")
    parser.add_argument("--run", type=Path, default=Path("runs/sim_to_real"))
    parser.add_argument("--record", type=int, default=80, help="expert episodes to record (successes are kept)")
    parser.add_argument("--steps", default="500,1000,2000,4000", help="training snapshots (K >= 4)")
    parser.add_argument("--config", type=Path, default=Path("config/policies/image_small.yaml"))
    parser.add_argument("--twin-episodes", type=int, default=20)
    parser.add_argument("--cell-episodes", type=int, default=10)
    parser.add_argument("--expert-episodes", type=int, default=10,
                        help="reference: the scripted expert on the twin, the cell without gap and the cell (0: skip)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from robot_stack.data.store import EpisodeStore
    from robot_stack.resources import apply_ros_environment

    apply_ros_environment()
    # stopped from outside (kill, or Ctrl-C of a background job): unwind, so the launched processes stop too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    steps = sorted(int(s) for s in args.steps.split(","))
    args.run.mkdir(parents=True, exist_ok=True)
    store = args.run / "cell_demos.zarr"
    if not store.exists():
        expert_on_cell(args.cell, args.record, args.run / "record.log", dataset=store)
    demos = EpisodeStore(store)
    experts = json.loads((args.run / "experts.json").read_text()) if (args.run / "experts.json").is_file() else {}
    if args.expert_episodes and not experts:
        from robot_stack.sim.cell.config import load_cell

        config = load_cell(args.cell)
        experts = {"twin (in-process)": expert_on_twin(config.task, config.robot, args.expert_episodes),
                   "cell 'twin' (gap: none)": expert_on_cell("twin", args.expert_episodes, args.run / "expert_twin.log"),
                   f"cell {args.cell!r}": expert_on_cell(args.cell, args.expert_episodes, args.run / "expert_cell.log")}
        (args.run / "experts.json").write_text(json.dumps(experts, indent=1))
    snapshots = train_snapshots(store, args.run, steps, args.config)
    results = evaluate(snapshots, args.run, args.cell, args.twin_episodes, args.cell_episodes)

    twin = np.array([results[str(k)]["twin"][0] / results[str(k)]["twin"][1] for k in steps])
    cell = np.array([results[str(k)]["cell"][0] / results[str(k)]["cell"][1] for k in steps])
    load = os.getloadavg()
    console = Console(width=160)
    episodes = demos.episodes
    late = sum(e.late_frames.get("front", 0) for e in episodes)
    missing = sum(e.missing_frames.get("front", 0) for e in episodes)
    console.print(f"sim-to-real on cell {args.cell!r}: image policy ({OBS_KEYS}) trained on {demos.n_episodes} expert "
                  f"demos recorded on the cell ({demos.n_steps} steps; front camera: {late} late, {missing} missing "
                  f"frames); {platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
                  f"{load[2]:.2f}")
    table = Table("checkpoint", "twin success", "cell success", "gap (twin - cell)")
    for k, t, c in zip(steps, twin, cell):
        r = results[str(k)]
        table.add_row(f"step {k}", f"{r['twin'][0]}/{r['twin'][1]} = {t:.0%}", f"{r['cell'][0]}/{r['cell'][1]} = {c:.0%}",
                      f"{t - c:+.0%}")
    console.print(table)
    console.print(f"Pearson r = {pearson(twin, cell):.2f}, MMRV = {mmrv(twin, cell):.3f} (K = {len(steps)})")
    if experts:
        console.print("reference, the scripted expert (sees the cube: twin state, or the cell's harness): " +
                      ", ".join(f"{where} {k}/{n}" for where, (k, n) in experts.items()))


if __name__ == "__main__":
    main()
