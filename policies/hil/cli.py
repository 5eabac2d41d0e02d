"""``robot-stack hil``: human-in-the-loop RL (HIL-SERL style) on the twin or on hardware."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robot_stack.cli import add_command

DEVICE_HELP = ("where the learner's networks learn: auto (cuda if torch sees a GPU, else cpu), cpu, cuda, "
               "cuda:<n> (default: the run config's device)")

EXAMPLES = """workflow:
  robot-stack launch teleop.launch.xml device:=expert episodes:=20 dataset:=data/pick.zarr   # demos
  robot-stack hil run device:=expert run_dir:=runs/hil demos:=data/pick.zarr       # twin + intervener
  robot-stack hil run sim:=false device:=spacemouse classifier:=runs/clf demos:=data/pick.zarr   # hardware
  robot-stack hil run sim:=false learner_host:=gpu-box device:=leader classifier:=runs/clf      # robot side
  robot-stack hil learner --run-dir runs/hil --demos data/pick.zarr --device cuda   # ... on gpu-box
  robot-stack hil plot runs/hil
  robot-stack hil classifier --data data/pick.zarr --out runs/clf
  robot-stack hil train --out runs/hil_sim                                     # in-process, no ROS
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "hil", "human-in-the-loop RL (HIL-SERL style): actor, learner, reward classifier",
        "Reinforcement learning with human interventions (RLPD/SAC from demos, interventions and a\n"
        "reward classifier). The actor runs on the robot (twin or hardware) and the learner anywhere on\n"
        "the same ROS 2 domain; transitions and weights travel as typed, validated messages (no pickle).\n"
        "See docs/hil.md.\n\n" + EXAMPLES)
    p.set_defaults(handler=lambda _args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="hil_command", metavar="<command>")

    run = add_command(sub, "run", "run hil.launch.xml: robot (twin or hardware), teleop, actor and learner",
                      "Run launch/hil.launch.xml with the given name:=value arguments (see --show-args):\n"
                      "sim:=true|false, robot:=, task:=, device:= (keyboard, gamepad, spacemouse, leader,\n"
                      "expert = the twin's scripted intervener, none), learner_host:= (local, or the machine\n"
                      "running 'robot-stack hil learner'), run_dir:=, demos:=, classifier:=, max_episodes:=,\n"
                      "learner_device:= (auto, cpu, cuda, cuda:<n>).")
    run.add_argument("launch_args", nargs="*", metavar="name:=value", help="launch arguments")
    run.add_argument("--show-args", action="store_true", help="list the launch arguments and exit")
    run.add_argument("--print", dest="dry_run", action="store_true", help="print the processes without starting them")
    run.set_defaults(handler=_run)

    for name, what in (("learner", "the learner node (on the GPU machine or locally)"),
                       ("actor", "the actor node alone (robot drivers and teleop started separately)")):
        q = add_command(sub, name, f"run {what}",
                        f"Run {what}; both sides need the same ROS_DOMAIN_ID and run config. Options become\n"
                        f"node parameters (see docs/hil.md for the others).")
        q.add_argument("--config", default="pick_cube_state", help="HIL run config (config/hil name or YAML path)")
        q.add_argument("--robot", default="", help="robot profile; empty: the run config's")
        q.add_argument("--task", default="", help="task; empty: the run config's")
        if name == "learner":
            q.add_argument("--run-dir", required=True, help="checkpoints, metrics.jsonl, episodes.png (resumed if present)")
            q.add_argument("--demos", default="", help="recorded demo dataset (zarr) for the demo buffer; empty: none")
            q.add_argument("--checkpoint-period", type=float, default=60.0, metavar="S", help="seconds between checkpoints")
            q.add_argument("--weights-period", type=float, default=0.0, metavar="S",
                           help="seconds between weight publications (0: the config's weights_period_s)")
            q.add_argument("--device", default="", help=DEVICE_HELP)
        else:
            q.add_argument("--episodes", default="twin", choices=("twin", "operator"),
                           help="twin: reset/task_success services; operator: teleop episode buttons (hardware)")
            q.add_argument("--classifier", default="", help="reward classifier checkpoint; empty: the run config's reward")
            q.add_argument("--max-episodes", type=int, default=0, help="exit after this many episodes (0: never)")
        q.set_defaults(handler=_node, node=name)

    c = add_command(sub, "classifier", "train the binary reward classifier on recorded episodes",
                    "Train the success classifier from a recorded store (labels from a per-step\n"
                    "success_label key, or the last frames of successful episodes) and print the held-out\n"
                    "accuracy, precision and recall. Use it with classifier:=<out> in hil run.")
    c.add_argument("--data", required=True, type=Path, help="recorded episode store (zarr)")
    c.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    c.add_argument("--keys", help="comma-separated low-dimensional keys (default: ee_pose,object_state)")
    c.add_argument("--image-key", help="<camera>_image key fed through a small conv net")
    c.add_argument("--epochs", type=int, help="training epochs")
    c.add_argument("--final-k", type=int, help="positives per successful episode (its last frames)")
    c.add_argument("--min-accuracy", type=float, default=0.0, metavar="A",
                   help="exit 1 when the held-out accuracy is below A (e.g. 0.95)")
    c.set_defaults(handler=_classifier)

    t = add_command(sub, "train", "train in-process on the twin (no ROS): demos, RL, scripted interventions",
                    "The learning core's in-process loop on the twin (TwinEnv): scripted demos, RLPD updates,\n"
                    "the scripted intervener; writes metrics.jsonl, curves.png, the agent and both buffers.")
    t.add_argument("--config", default="pick_cube_state", help="HIL run config (config/hil name or YAML path)")
    t.add_argument("--out", required=True, type=Path, help="run folder")
    t.add_argument("--seed", type=int, help="seed (default: the config's)")
    t.add_argument("--env-steps", type=int, help="environment steps (default: the config's)")
    t.add_argument("--task", help="twin task, e.g. pick_cube_wide (default: the config's)")
    t.add_argument("--robot", help="robot profile (default: the config's)")
    t.add_argument("--device", help=DEVICE_HELP)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(handler=_train)

    pl = add_command(sub, "plot", "plot success and intervention rate per episode of a run",
                     "Read <run_dir>/metrics.jsonl and write <run_dir>/episodes.png (or --out).")
    pl.add_argument("run_dir", type=Path, help="run folder (of hil run, hil learner or hil train)")
    pl.add_argument("--out", type=Path, help="PNG to write (default: <run_dir>/episodes.png)")
    pl.set_defaults(handler=_plot)


def _run(args: argparse.Namespace) -> int:
    from robot_stack.cli import main
    from robot_stack.errors import UserError
    from robot_stack.resources import share_dir

    bad = [a for a in args.launch_args if ":=" not in a]
    if bad:
        raise UserError(f"expected name:=value launch arguments, got {bad[0]!r} (see robot-stack hil run --show-args)")
    flags = ["--show-args"] if args.show_args else ["--print"] if args.dry_run else []
    return main(["launch", str(share_dir() / "launch" / "hil.launch.xml"), *args.launch_args, *flags])


def _node(args: argparse.Namespace) -> int:
    params = {"config": args.config, "robot": args.robot, "task": args.task}
    if args.node == "learner":
        params.update(run_dir=str(Path(args.run_dir).expanduser().resolve()), demos=args.demos,
                      checkpoint_period_s=float(args.checkpoint_period), weights_period_s=float(args.weights_period),
                      device=args.device)
        from robot_stack.policies.hil.learner_node import main
    else:
        params.update(episodes=args.episodes, classifier=args.classifier, max_episodes=args.max_episodes)
        from robot_stack.policies.hil.actor_node import main
    sys.argv = [f"hil_{args.node}", "--ros-args", *[x for k, v in params.items() for x in ("-p", f"{k}:={_yaml(v)}")]]
    main()
    return 0


def _yaml(value: object) -> str:
    """A parameter value as ROS reads it from ``-p name:=value`` (YAML): strings stay strings."""
    import json

    return json.dumps(value) if isinstance(value, str) else str(value)


def _classifier(args: argparse.Namespace) -> int:
    from robot_stack.policies.hil.classifier import ClassifierConfig, train_classifier

    fields = {}
    if args.keys is not None:
        fields["keys"] = tuple(k for k in args.keys.split(",") if k)
    for name in ("image_key", "epochs", "final_k"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    from robot_stack.errors import UserError

    try:
        cfg = ClassifierConfig(**fields)
    except ValueError as err:
        raise UserError(f"classifier options: {err}") from None
    report = train_classifier(args.data, args.out, cfg)
    for text in report.lines():
        print(text)
    print(f"checkpoint: {args.out}")
    if report.heldout_accuracy < args.min_accuracy:
        print(f"held-out accuracy {report.heldout_accuracy:.3f} is below --min-accuracy {args.min_accuracy}",
              file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.loop import train

    overrides = {k: v for k in ("seed", "env_steps", "task", "robot", "device") if (v := getattr(args, k)) is not None}
    result = train(load_hil_config(args.config, **overrides), args.out, progress=not args.no_progress)
    eps = result.train_episodes()
    print(f"{result.env_steps} env steps in {result.wall_s / 60:.1f} min, {len(eps)} episodes; success rate "
          f"{result.success_rate():.0%} over the last 20, interventions {result.intervention_rate(0, 1):.1%} of steps")
    if result.eval_success is not None:
        print(f"final evaluation (deterministic): {result.eval_success:.0%} success")
    print(f"run folder: {args.out} (metrics.jsonl, curves.png, agent/, buffers/; robot-stack hil plot adds episodes.png)")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from robot_stack.errors import UserError
    from robot_stack.policies.hil.progress import plot, read_metrics

    logs = read_metrics(args.run_dir / "metrics.jsonl")
    if not any(e.kind == "train" for e in logs):
        raise UserError(f"{args.run_dir}: no finished training episodes in metrics.jsonl yet")
    out = plot(logs, args.out or args.run_dir / "episodes.png", f"HIL {args.run_dir.name}")
    n = sum(e.kind == "train" for e in logs)
    print(f"{out}: {n} episodes")
    return 0
