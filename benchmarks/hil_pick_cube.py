"""Learning gates of HIL RL (RLPD/SAC) on the twin's pick_cube: state observations, 10 Hz, sparse reward,
100-step episodes, in-process (``robot_stack.policies.hil.loop``, no ROS).

    .venv/bin/python benchmarks/hil_pick_cube.py [--robot panda] [--task pick_cube] [--seeds 0 1 2]
        [--steps 15000] [--runs demos scratch intervene] [--jobs 2] [--device cpu] [--out runs/hil_bench]

Runs, per seed:

* ``demos``: 10 scripted demos, no interventions;
* ``scratch``: no demos, no interventions (same budget);
* ``intervene``: 10 demos and the scripted intervener (takes over when the policy stalls).

Prints one table: the scripted expert's success through the RL action space (gate >= 95%), the
final deterministic evaluation (20 episodes) per seed and the median (gates: demos >= 50%, stretch
>= 80%; scratch <= 10%), the intervention rate in the first and last quarter of the run (gate: the
last quarter at most half the first) and, with both runs, intervene's median minus demos'.
Curves go to ``<out>/curves.png``, each run's metrics, agent and buffers to ``<out>/<run>_seed<k>/``;
runs that finished before (a ``summary.json`` there) are reused unless ``--fresh``, so an
interrupted benchmark resumes. ``--device`` is the learner's (``cpu``, ``cuda``, ``auto``; the
runs in parallel share one GPU).

Harder variant, ``--task pick_cube_wide`` (config/tasks/pick_cube_wide.yaml, docs/hil.md): the cube
anywhere in a 2.4x larger area at every yaw and the arm starting up to 0.15 rad per joint from home,
so 10 demos cover few start poses. Its runs and curves go to ``<out>/pick_cube_wide/`` and its
gates are: demos alone fail (median < 50%), intervene beats demos by >= 20 points of median
success. Both tasks, 3 seeds each, demos against interventions (6 runs at a time; ~15-20 min per
run on a CPU core):

    .venv/bin/python benchmarks/hil_pick_cube.py --robot panda --task pick_cube --runs demos intervene \
        --seeds 0 1 2 --jobs 6 --device cuda --out runs/hil_bench
    .venv/bin/python benchmarks/hil_pick_cube.py --robot panda --task pick_cube_wide --runs demos intervene \
        --seeds 0 1 2 --jobs 6 --device cuda --out runs/hil_bench
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from rich.console import Console
from rich.table import Table

from robot_stack.sim.tasks import load_task_config

RUNS = {
    "demos": {"demos": 10},
    "scratch": {"demos": 0, "random_warmup": True, "warmup_steps": 1000},
    "intervene": {"demos": 10, "intervener": {"probability": 0.2, "steps": 20, "patience": 10}},
}


def task_dir(out: str | Path, task: str) -> Path:
    """Where a task's runs and curves go: ``<out>`` for pick_cube (as before), ``<out>/<task>`` for others."""
    name = load_task_config(task).name
    return Path(out) if name == "pick_cube" else Path(out) / name


def run_one(run: str, seed: int, robot: str, task: str, steps: int, out: str, overrides: dict,
            fresh: bool = False) -> dict:
    """One training run in its own process; returns its summary."""
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.loop import Trainer

    folder = task_dir(out, task) / f"{run}_seed{seed}"
    if (folder / "summary.json").is_file() and not fresh:
        return json.loads((folder / "summary.json").read_text())  # finished before: resume the benchmark
    cfg = load_hil_config("pick_cube_state", robot=robot, task=task, seed=seed, env_steps=steps,
                          **{**RUNS[run], **overrides})
    result = Trainer(cfg, folder, progress=False).run()
    first, last = result.intervention_rate(0, 0.25), result.intervention_rate(0.75, 1.0)
    summary = {"run": run, "seed": seed, "task": task, "device": cfg.device, "eval_success": result.eval_success,
               "train_success": result.success_rate(20), "first_quarter": first, "last_quarter": last,
               "wall_s": result.wall_s, "demo_success": result.demo_success,
               "interventions": int(sum(e.intervention_steps for e in result.train_episodes()))}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def expert_success(robot: str, episodes: int, task: str = "pick_cube") -> tuple[float, float]:
    """The scripted expert driving through ``to_target(from_target(...))``: success rate, median steps."""
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.loop import Trainer

    cfg = load_hil_config("pick_cube_state", robot=robot, task=task, demos=0, eval_episodes=0, device="cpu")
    trainer = Trainer(cfg, progress=False)
    logs = [trainer.episode(lambda vec, obs: (trainer.expert_action(obs), False), "demo", learn=False)
            for _ in range(episodes)]
    trainer.env.close()
    return float(np.mean([e.success for e in logs])), float(np.median([e.length for e in logs]))


def fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="panda", help="robot profile (panda: what design.md calibrated on)")
    parser.add_argument("--task", default="pick_cube",
                        help="a pick_cube task: pick_cube, pick_cube_wide (the harder variant) or a task YAML")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=15000, help="env steps per run")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--expert-episodes", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    parser.add_argument("--utd", type=int, default=0, help="override agent.utd_ratio (0: the config's)")
    parser.add_argument("--demos", type=int, default=10,
                        help="scripted demos of the demos and intervene runs (use another --out per count)")
    parser.add_argument("--device", default="cpu", help="learner device: cpu, cuda, cuda:<n> or auto")
    parser.add_argument("--out", default="runs/hil_bench")
    parser.add_argument("--summaries", action="store_true", help="only print the table from <out>/*/summary.json")
    parser.add_argument("--fresh", action="store_true", help="re-run runs that finished before (default: reuse them)")
    args = parser.parse_args(argv)
    from robot_stack.errors import UserError
    from robot_stack.policies.hil.agent import resolve_device

    try:
        if load_task_config(args.task).kind != "pick_cube":
            parser.error(f"--task {args.task}: not a pick_cube task (the pick_cube_state run config)")
        if not args.summaries:
            resolve_device(args.device)  # a GPU that is not there: one line now, not in every run
    except UserError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides: dict = {"device": args.device}
    if args.utd:
        overrides["agent"] = {"utd_ratio": args.utd}
    out = task_dir(args.out, args.task)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    start = time.perf_counter()
    if args.summaries:
        results = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
        results = [r for r in results if r["run"] in args.runs and r["seed"] in args.seeds]
    else:
        jobs = [(run, seed) for seed in args.seeds for run in args.runs]
        console.print(f"{len(jobs)} runs of {args.steps} env steps on {args.robot}/{args.task}, learner on "
                      f"{args.device}, {args.jobs} at a time -> {out} ...")
        # spawned workers: CUDA cannot be used in a child forked from a process that asked torch about the GPU
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, run, seed, args.robot, args.task, args.steps, args.out,
                                   {**overrides, "demos": args.demos if RUNS[run]["demos"] else 0}, args.fresh)
                       for run, seed in jobs]
            results = []
            for f in futures:
                results.append(f.result())
                r = results[-1]
                console.print(f"  {r['run']} seed {r['seed']}: eval {fmt(r['eval_success'])}, "
                              f"train(last 20) {fmt(r['train_success'])}, {r['wall_s'] / 60:.1f} min")
    expert, expert_steps = expert_success(args.robot, args.expert_episodes, args.task)
    table = Table(title=f"HIL RL on the twin: {args.robot}/{args.task}, state obs, 10 Hz, sparse reward, "
                        f"{args.demos} demos, {args.steps} env steps, learner on {args.device} ({platform.machine()}, "
                        f"{os.cpu_count()} CPUs, shared)")
    for column in ("run", "seeds", "eval success per seed", "median", "gate", "pass",
                   "intervention rate 1st -> last quarter", "median min/run"):
        table.add_column(column)
    table.add_row("scripted expert", f"{args.expert_episodes} episodes", f"median {expert_steps:.0f} steps",
                  fmt(expert), ">= 95%", "yes" if expert >= 0.95 else "NO", "-", "-")
    harder = load_task_config(args.task).name != "pick_cube"
    gates = {"demos": ((">= 50% (stretch >= 80%)", lambda m: m >= 0.5) if not harder else
                       ("< 50% (demos alone fail)", lambda m: m < 0.5)),
             "scratch": ("<= 10%", lambda m: m <= 0.1), "intervene": ("last quarter <= 1/2 first", None)}
    medians: dict[str, float] = {}
    for run in args.runs:
        rs = sorted((r for r in results if r["run"] == run), key=lambda r: r["seed"])
        if not rs:
            continue
        med = medians[run] = float(np.median([r["eval_success"] for r in rs]))
        first = float(np.median([r["first_quarter"] for r in rs]))
        last = float(np.median([r["last_quarter"] for r in rs]))
        gate, check = gates[run]
        ok = check(med) if check else last <= 0.5 * first
        if run == "demos" and med >= 0.8 and not harder:
            gate += " stretch met"
        rates = f"{fmt(first)} -> {fmt(last)}" if run == "intervene" else "-"
        table.add_row(run, ",".join(str(r["seed"]) for r in rs), " ".join(fmt(r["eval_success"]) for r in rs),
                      fmt(med), gate, "yes" if ok else "NO", rates,
                      f"{np.median([r['wall_s'] for r in rs]) / 60:.1f}")
    if "demos" in medians and "intervene" in medians:
        gain = medians["intervene"] - medians["demos"]
        gate, ok = (">= +20 points", "yes" if gain >= 0.2 - 1e-9 else "NO") if harder else ("- (harder variant)", "-")
        table.add_row("intervene - demos", "", "median success", f"{100 * gain:+.0f} points", gate, ok, "-", "-")
    console.print(table)
    if not args.summaries:
        from robot_stack.policies.hil.loop import EpisodeLog, plot_curves

        runs = {}
        for path in sorted(out.glob("*/metrics.jsonl")):
            logs = [EpisodeLog(**json.loads(line)) for line in path.read_text().splitlines()]
            runs[path.parent.name] = logs
        console.print(f"curves: {plot_curves(runs, out / 'curves.png', title=f'{args.robot}/{args.task}')}; "
                      f"total {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
