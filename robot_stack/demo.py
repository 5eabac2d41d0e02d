"""``robot-stack demo``: the whole loop on the MuJoCo twin, no hardware needed.

1. record scripted demonstrations through the teleop/recorder path (``launch/teleop.launch.xml``:
   twin + scripted expert + recorder over DDS, exactly as a human teleoperator would record), in
   ``--record-procs`` parallel launches merged into one store;
2. train a diffusion policy on them (``robot-stack train diffusion``);
3. evaluate it in the in-process twin (success rate, videos, sim sign-off) and through the ROS
   deploy path (``launch/deploy.launch.xml``: twin + policy_server) (``robot-stack eval``); an image
   policy also under the task's visual randomisation (``--robustness-task``), reported, not gated;
4. print a short report and write ``<out>/report.md``.

Every step prints the equivalent command, so each can be re-run or changed on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import time
from pathlib import Path

from robot_stack.cli import add_command

IMAGE_CAMERAS = "front,wrist"
"""The cameras of the image demo (``config/policies/visuomotor.yaml`` observes both)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "demo",
        "record demos on the twin, train a diffusion policy, evaluate it (the main job)",
        __doc__.split("\n\n", 1)[1] if __doc__ else "",
    )
    p.add_argument("--robot", default="so101", help="robot profile")
    p.add_argument("--task", default="pick_cube", help="twin task (reach, pick_cube, push)")
    p.add_argument("--demos", type=int, default=100, help="scripted demonstrations to record")
    p.add_argument("--record-procs", default="auto", metavar="N", help="parallel recordings (each a twin, expert and "
                   "recorder on a ROS domain of its own), merged into one store; auto: 2 on a CPU with 2+ cores")
    p.add_argument("--steps", type=int, default=6000, help="training steps")
    p.add_argument("--images", action="store_true", help="visuomotor policy (front and wrist cameras, joints; what hardware publishes) "
                   "instead of the privileged low-dim reference (the cube's pose from the simulator)")
    p.add_argument("--record-task", metavar="TASK", help="task the demos are recorded on (default: --task); e.g. "
                   "pick_cube_visual: pick_cube's scenes under visual randomisation (camera pose, lights, colours), "
                   "domain randomisation for a policy that tolerates them")
    p.add_argument("--robustness-task", default="auto", metavar="TASK",
                   help="also evaluate in-process on TASK, reported beside the gate, not part of it; auto: <task>_visual "
                        "(config/tasks) for an image policy, where it exists; none: skip")
    p.add_argument("--robustness-episodes", type=int, default=30, help="episodes of the robustness evaluation")
    p.add_argument("--episodes", type=int, default=50, help="in-process evaluation episodes")
    p.add_argument("--ros-episodes", type=int, default=5, help="evaluation episodes through the ROS deploy path")
    p.add_argument("--gate", type=float, default=0.8, help="success rate the policy must reach")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (must not hold a previous demo)")
    p.set_defaults(handler=run)


def _say(console, step: str, command: list[str]) -> None:
    if step:
        console.rule(f"[bold]{step}")
    console.print(f"[dim]$ {shlex.join(command)}")


def shards(demos: int, procs: int) -> list[tuple[int, int]]:
    """(first scene seed, episodes) of each parallel recording: contiguous seeds, so that together they record
    the scenes one recording would (seeds 0 to demos - 1; the expert discards a failed episode either way)."""
    procs = max(1, min(procs, demos))
    counts = [demos // procs + (k < demos % procs) for k in range(procs)]
    return [(sum(counts[:k]), n) for k, n in enumerate(counts)]


def record_procs(value: str) -> int:
    """``--record-procs``: a count, or ``auto``: 2 on a CPU with at least 2 cores (1 on one core)."""
    from robot_stack.devices import cpu_processes, process_count

    return process_count(value, "--record-procs", "recordings") or cpu_processes()


def record(args: argparse.Namespace, store: Path, console) -> float:
    """Record ``args.demos`` expert episodes through the ROS teleop path into ``store``; returns seconds.

    With ``--record-procs`` N > 1, N launches (twin + expert + recorder each, on ROS domains
    ``ROS_DOMAIN_ID`` + 0..N-1, so they never see each other) record contiguous seed ranges into stores of
    their own, merged into ``store`` at the end (``robot-stack data merge``). A recording is latency-bound
    (each node waits for the others at every lock-step gate), so two share 2 cores well."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from robot_stack.cli import main as cli
    from robot_stack.data.store import EpisodeStore
    from robot_stack.errors import UserError
    from robot_stack.launcher import LaunchRunner
    from robot_stack.resources import share_dir

    parts = shards(args.demos, record_procs(args.record_procs))
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    domain = int(domain) if domain.isdigit() else 0
    runs = []  # (runner, log file, log path, store) of each launch
    start = time.monotonic()
    try:
        for k, (seed, count) in enumerate(parts):
            part = store if len(parts) == 1 else store.parent / f"{store.stem}_{k}.zarr"
            launch_args = {"device": "expert", "robot": args.robot, "task": args.record_task or args.task, "dataset": str(part),
                           "episodes": str(count), "seed": str(seed), "cameras": IMAGE_CAMERAS if args.images else "none"}
            if args.images:  # sim time in lock-step: every camera frame recorded, however slowly the twin renders
                launch_args["sim_time"] = "true"
            env = {} if len(parts) == 1 else {"ROS_DOMAIN_ID": str((domain + k) % 233)}
            title = "1/3 record demonstrations (twin + scripted expert + recorder over DDS)"
            _say(console, title if k == 0 else "", [*(f"{n}={v}" for n, v in env.items()), "robot-stack", "launch",
                                                    "teleop.launch.xml", *(f"{n}:={v}" for n, v in launch_args.items())])
            log_path = store.parent / (f"record_{k}.log" if len(parts) > 1 else "record.log")
            log = open(log_path, "w")
            runner = LaunchRunner(share_dir() / "launch" / "teleop.launch.xml", launch_args, stdout=log, stderr=log, env=env)
            runs.append((runner, log, log_path, part))
            runner.start()
        experts = [next(pids[-1] for name, pids in r.pids().items() if name.startswith("expert")) for r, *_ in runs]
        with Progress(TextColumn("demos"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            job = bar.add_task("demos", total=args.demos)
            while any(Path(f"/proc/{pid}").exists() and r.supervisor.running for pid, (r, *_) in zip(experts, runs)):
                time.sleep(1.0)
                bar.update(job, completed=sum(_count_saved(path) for _, _, path, _ in runs))
            bar.update(job, completed=sum(_count_saved(path) for _, _, path, _ in runs))
    finally:
        for runner, log, *_ in runs:
            if runner.supervisor is not None:
                runner.stop()
            log.close()
    missing = [str(path) for _, _, path, part in runs if not part.exists() or EpisodeStore(part).n_episodes == 0]
    if missing:
        raise UserError(f"no demonstrations were recorded: see {', '.join(missing)}")
    if len(runs) > 1:
        merge = ["data", "merge", str(store), *(str(part) for *_, part in runs)]
        _say(console, "", ["robot-stack", *merge])
        if cli(merge) != 0:
            raise UserError(f"merging the recordings into {store} failed (see above)")
        for *_, part in runs:
            shutil.rmtree(part)
    return time.monotonic() - start


def _count_saved(log_path: Path) -> int:
    return sum("[recorder]: saved episode" in line for line in log_path.read_text(errors="ignore").splitlines())


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from robot_stack.cli import main as cli
    from robot_stack.data.store import EpisodeStore
    from robot_stack.errors import UserError

    console = Console()
    out: Path = args.out
    if (out / "policy" / "run.json").exists() or any(out.glob("demos*.zarr")):
        raise UserError(f"{out} already holds a demo run: pass another --out or delete it")
    from robot_stack.tasks import load_task_config

    robust = robustness_task(args)
    for task in {args.task, args.record_task, robust} - {None}:
        load_task_config(task)  # an unknown task: one line now, not after the recording
    out.mkdir(parents=True, exist_ok=True)
    store = out / "demos.zarr"
    began = time.monotonic()

    record_s = record(args, store, console)
    demos = EpisodeStore(store)
    console.print(f"recorded {demos.n_episodes} demos ({demos.n_steps} steps) in {record_s:.0f} s -> {store}")

    policy_dir = out / "policy"
    train_cmd = ["train", "diffusion", "--data", str(store), "--out", str(policy_dir), "--robot", args.robot,
                 "--preset", "image" if args.images else "lowdim", "--steps", str(args.steps),
                 "--procs", "auto"]
    from robot_stack.resources import share_dir

    config = share_dir() / "config" / "policies" / ("visuomotor.yaml" if args.images else "lowdim_small.yaml")
    train_cmd += ["--config", str(config)]
    if not args.images:
        train_cmd += ["--privileged"]  # the low-dim policy observes the cube's pose: a simulation-only reference
    _say(console, "2/3 train a diffusion policy", ["robot-stack", *train_cmd])
    t = time.monotonic()
    if cli(train_cmd) != 0:
        raise UserError("training failed (see above)")
    train_s = time.monotonic() - t
    checkpoint = policy_dir / "checkpoints" / "latest"  # diffusion policies keep improving as val loss rises

    eval_dir = out / "eval"
    eval_cmd = ["eval", "--policy", str(checkpoint), "--task", args.task, "--robot", args.robot, "--episodes",
                str(args.episodes), "--ros", str(args.ros_episodes), "--gate", str(args.gate), "--out", str(eval_dir)]
    _say(console, "3/3 evaluate on the twin (in-process, then over ROS with policy_server)", ["robot-stack", *eval_cmd])
    t = time.monotonic()
    code = cli(eval_cmd)
    eval_s = time.monotonic() - t

    if robust:
        robust_cmd = ["eval", "--policy", str(checkpoint), "--task", robust, "--robot", args.robot, "--episodes",
                      str(args.robustness_episodes), "--gate", "0", "--no-sign-off", "--out", str(out / "eval_robustness")]
        _say(console, "", ["robot-stack", *robust_cmd])
        t = time.monotonic()
        cli(robust_cmd)
        eval_s += time.monotonic() - t

    reports = {p.stem: json.loads(p.read_text()) for p in sorted(eval_dir.glob("*.json"))}
    table = Table("", "value", title=f"robot-stack demo: {args.task} on {args.robot} ({'images' if args.images else 'low-dim'})")
    table.add_row("demonstrations", f"{demos.n_episodes} ({record_s:.0f} s through ROS)")
    late, missing = frame_counts(demos)
    if args.images:
        table.add_row("recorded frames", f"late {late}, missing {missing} (stale images: the gate needs 0 and 0)")
    table.add_row("training", f"{args.steps} steps in {train_s:.0f} s; curves: {policy_dir / 'loss.png'}")
    for name, rep in reports.items():
        table.add_row(f"success ({name.replace('_', '-')})", success_rate(rep))
    robust_report = out / "eval_robustness" / "in_process.json"
    if robust and robust_report.exists():
        table.add_row(f"robustness ({robust}, not gated)", success_rate(json.loads(robust_report.read_text())))
    if "in_process" in reports and "ros" in reports:
        table.add_row("one execution path", parity(reports["in_process"], reports["ros"]))
    videos = reports.get("in_process", {}).get("videos", [])
    table.add_row("videos", ", ".join(videos) or "none")
    passed = code == 0 and (not args.images or late == missing == 0)
    table.add_row("gate", f"{args.gate:.0%}: {'PASS' if passed else 'FAIL'} (sign-off: {checkpoint / 'sim_validation.json'})")
    table.add_row("total time", f"{(time.monotonic() - began) / 60:.1f} min (eval {eval_s:.0f} s)")
    console.print(table)
    lines = [f"# robot-stack demo: {args.task} on {args.robot}", ""]
    lines += [f"- {row}" for row in _rows(table)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    console.print(f"report: {out / 'report.md'}")
    return 0  # the loop ran end to end; the gate verdict is in the report (robot-stack eval exits 1 on FAIL)


def success_rate(report: dict) -> str:
    """An evaluation report's successes, rate and 95% interval, as the demo's table shows them."""
    lo, hi = report["ci95"]
    return f"{report['successes']}/{len(report['episodes'])} = {report['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})"


def robustness_task(args: argparse.Namespace) -> str | None:
    """The task of the robustness evaluation: ``--robustness-task``, where ``auto`` is ``<task>_visual`` for an
    image policy when config/tasks has it (visual randomisation a low-dim policy does not see), else none."""
    from robot_stack.errors import UserError
    from robot_stack.resources import find_config

    if args.robustness_task == "none" or args.robustness_episodes <= 0:
        return None
    if args.robustness_task != "auto":
        return args.robustness_task
    if not args.images:
        return None
    variant = f"{Path(args.task).stem}_visual"
    try:
        find_config("tasks", variant)
    except UserError:  # no such variant: nothing to check
        return None
    return variant


def parity(in_process: dict, ros: dict) -> str:
    """Episodes with the same seed in-process and over ROS: how many agree (success, and length within 1 step)."""
    local = {e["seed"]: e for e in in_process["episodes"]}
    pairs = [(local[e["seed"]], e) for e in ros["episodes"] if e["seed"] in local]
    same = sum(a["success"] == b["success"] and abs(a["steps"] - b["steps"]) <= 1 for a, b in pairs)
    return f"{same}/{len(pairs)} seeds give the same result in-process and over ROS (success, length within 1 step)"


def frame_counts(store) -> tuple[int, int]:
    """Late and missing camera frames over a store's episodes (the recorder's counts; 0 and 0 on sim time)."""
    late = sum(sum(e.late_frames.values()) for e in store.episodes)
    return late, sum(sum(e.missing_frames.values()) for e in store.episodes)


def _rows(table) -> list[str]:
    columns = [list(c.cells) for c in table.columns]
    return [f"{k}: {v}" for k, v in zip(*columns)]
