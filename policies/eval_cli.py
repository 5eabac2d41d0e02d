"""``robot-stack eval``: validate a policy on the twin before it goes near hardware."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_stack.cli import add_command
from robot_stack.policies.runner import RuntimeConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "eval",
        "evaluate a policy on the MuJoCo twin (success rate, videos, sim sign-off)",
        "Roll a trained policy out on the twin and report its success rate with a 95% interval, episode\n"
        "lengths and rollout videos. In-process by default: the twin's physics behind the same arm core and\n"
        "policy runner that twin_node and policy_server run, on sim time, with the inference latency added\n"
        "to sim time (--inference-latency). --ros N also runs N episodes through the deploy\n"
        "launch file (twin + policy_server over DDS), on sim time in lock-step (--ros-realtime: real time).\n"
        "A passing in-process run (success rate >= --gate) writes <policy>/sim_validation.json with the\n"
        "runtime configuration it validated, which deploying with sim:=false requires.\n"
        "--target cell runs --episodes episodes through deploy.launch.xml sim:=false against the emulated\n"
        "robot cell instead (robot-stack cell, docs/cell.md), judged from the cell's ground truth; no sign-off.",
    )
    p.add_argument("--policy", required=True, help="checkpoint folder (robot-stack train ... --out)")
    p.add_argument("--task", default="pick_cube", help="task name (config/tasks) or YAML path")
    p.add_argument("--robot", default="so101", help="robot profile name or YAML path")
    p.add_argument("--episodes", type=int, default=50, help="in-process episodes (0: skip)")
    p.add_argument("--ros", type=int, default=0, metavar="N", help="also run N episodes over ROS (deploy.launch.xml)")
    p.add_argument("--gate", type=float, default=0.8, help="success rate needed to pass and sign off")
    p.add_argument("--no-sign-off", action="store_true",
                   help="leave <policy>/sim_validation.json as it is (a check that is not the gate, e.g. robustness)")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode (one seed per episode)")
    p.add_argument("--videos", type=int, default=2, help="episodes to record as mp4")
    p.add_argument("--inference-steps", type=int, default=0, help="DDIM steps (0: the checkpoint's default)")
    p.add_argument("--inference-latency", type=float, default=RuntimeConfig.inference_latency, metavar="S",
                   help="seconds from an observation until its chunk takes effect, added to sim time (default "
                        "%(default)s, as policy_server; below 0: the measured inference time)")
    p.add_argument("--ros-realtime", action="store_true", help="run the --ros episodes in real time, not on sim time")
    p.add_argument("--plan-log", action="store_true",
                   help="write every plan (observations, actions) to <out>/plans_in_process.jsonl and plans_ros.jsonl")
    p.add_argument("--device", default="auto", help="in-process inference device: auto (CUDA when torch sees a GPU), cpu, cuda")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <policy>/eval_<task>)")
    p.add_argument("--target", choices=("twin", "cell"), default="twin",
                   help="twin: in-process (+ --ros) on the twin; cell: the hardware path on the emulated cell")
    p.add_argument("--cell", default="default", help="--target cell: cell name (config/cells) or YAML path")
    p.add_argument("--allow-unvalidated", action="store_true",
                   help="--target cell: deploy without a passing sim sign-off (as allow_unvalidated:=true)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from robot_stack.errors import UserError
    from robot_stack.policies.evaluate import evaluate_in_process, evaluate_over_ros

    if not (Path(args.policy) / "model.safetensors").is_file():
        raise UserError(f"{args.policy}: not a policy checkpoint (no model.safetensors)")
    if not 0.0 <= args.gate <= 1.0:
        raise UserError("--gate must be a success rate between 0 and 1")
    console = Console()
    if args.target == "cell":
        return run_on_cell(args, console)
    out = args.out or Path(args.policy) / f"eval_{Path(args.task).stem}"
    runtime = RuntimeConfig(inference_latency=args.inference_latency)
    passed = True
    if args.episodes > 0:
        report = evaluate_in_process(args.policy, args.task, args.robot, args.episodes, seed=args.seed, gate=args.gate,
                                     videos=args.videos, out_dir=out, inference_steps=args.inference_steps or None,
                                     runtime=runtime, plan_log=out / "plans_in_process.jsonl" if args.plan_log else None,
                                     device=args.device)
        report.save(out, "in_process")
        record = "not written (--no-sign-off)" if args.no_sign_off else report.sign_off(args.policy)
        console.print(report.summary())
        console.print(f"videos: {', '.join(report.videos) or 'none'}; sign-off record: {record}")
        passed = report.passed
    if args.ros > 0:
        report = evaluate_over_ros(args.policy, args.task, args.robot, args.ros, seed=args.seed, gate=args.gate,
                                   sim_time=not args.ros_realtime, runtime=runtime,
                                   inference_steps=args.inference_steps or None, log=out / "ros_launch.log",
                                   plan_log=(out / "plans_ros.jsonl").resolve() if args.plan_log else None)
        report.save(out, "ros")
        console.print(report.summary() + f" ({report.wall_seconds:.0f} s)")
        passed = passed and report.passed
    return 0 if passed else 1


def run_on_cell(args: argparse.Namespace, console) -> int:
    from robot_stack.errors import UserError
    from robot_stack.sim.cell.config import load_cell
    from robot_stack.sim.cell.evaluate import evaluate_on_cell

    cell = load_cell(args.cell)
    if args.episodes <= 0 or args.ros:
        raise UserError("--target cell runs --episodes N (> 0) episodes on the cell; --ros is for the twin")
    out = args.out or Path(args.policy) / f"eval_cell_{cell.name}"
    report = evaluate_on_cell(args.policy, args.cell, args.episodes, seed=args.seed, gate=args.gate,
                              allow_unvalidated=args.allow_unvalidated, log=out / "cell_launch.log")
    report.save(out, "cell")
    console.print(report.summary())
    return 0 if report.passed else 1
