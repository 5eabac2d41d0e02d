"""``robot-stack train diffusion``: train, resume or fine-tune a diffusion policy."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from robot_stack.cli import add_command

EXAMPLES = """examples:
  robot-stack train diffusion --data data/pick.zarr --out runs/pick
  robot-stack train diffusion --data data/pick.zarr --out runs/pick_state --preset lowdim
  robot-stack train diffusion --out runs/pick --resume --steps 40000
  robot-stack train diffusion --data data/pick.zarr --out runs/pick_s --preset lowdim --eval-every 1000 --eval-episodes 20
  robot-stack train diffusion --data data/pick.zarr --interventions data/pick_hil.zarr \\
      --finetune runs/pick/checkpoints/latest --out runs/pick_ft --steps 5000
  robot-stack train diffusion --data data/pick.zarr --out runs/pick_ddp --procs 2
  torchrun --nproc_per_node 2 -m robot_stack.cli train diffusion --data data/pick.zarr --out runs/pick_ddp
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "diffusion", "train a diffusion policy (Chi et al. 2023)",
        "Train a diffusion policy on zarr episode stores (diffusion_policy ReplayBuffer layout).\n"
        "Writes run.json, metrics.jsonl, loss.png and checkpoints/{latest,best} into --out; with --eval-every\n"
        "also twin success rates (success.png) and rollout videos (videos/).\n"
        "Observation keys default to joint_pos plus every <camera>_image in the store (presets image,\n"
        "tiny) or joint_pos plus object_state (preset lowdim). With --procs N, or under torchrun, it trains\n"
        "with DDP (gloo on the CPU, NCCL on GPUs).\n\n" + EXAMPLES,
    )
    p.add_argument("--data", action="append", default=[], metavar="ZARR", help="demo store (repeat for several)")
    p.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/<name>")
    p.add_argument("--robot", help="robot profile the data was recorded with (default: named in the store)")
    p.add_argument("--preset", default="image", choices=("image", "lowdim", "tiny"), help="defaults per task type")
    p.add_argument("--config", type=Path, help="YAML with DiffusionConfig sections overriding the preset")
    p.add_argument("--obs-keys", help="comma-separated observation keys, e.g. joint_pos,front_image,wrist_image")
    p.add_argument("--steps", type=int, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, help="seed for splits, sampling and noise")
    p.add_argument("--val-every", type=int, help="steps between validation losses")
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between lines in metrics.jsonl")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="every N steps roll the EMA policy out on the in-process twin: success rate in metrics.jsonl "
                        "and success.png, a video in videos/, checkpoints/best by success rate (None: off)")
    p.add_argument("--eval-episodes", type=int, metavar="K", help="episodes per periodic evaluation (None: the config's, 10)")
    p.add_argument("--eval-task", help="twin task of the periodic evaluations (None: the task the store was recorded on)")
    p.add_argument("--inference-steps", type=int, help="DDIM steps stored for deployment")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<n>")
    p.add_argument("--procs", default="1", metavar="N",
                   help="data-parallel training processes on this machine (DDP; the same updates as one process): "
                        "a number, or auto (one per GPU; 2 on a CPU with 2+ cores: 1.5-1.8x faster on 2 cores)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/latest")
    p.add_argument("--finetune", metavar="CKPT", help="start from this checkpoint's weights and normaliser")
    p.add_argument("--interventions", action="append", default=[], metavar="ZARR",
                   help="store of policy rollouts with human interventions; only intervened steps are used")
    p.add_argument("--intervention-weight", type=float, help="loss weight of intervention samples")
    p.add_argument("--privileged", action="store_true",
                   help="allow observations of the simulator's ground truth (object_state): a sim-only reference")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-damaged", action="store_true",
                   help="train on the undamaged episodes of a damaged store (default: refuse; see robot-stack data verify)")
    p.set_defaults(handler=_run)
    _register_sampler(subparsers)


def _register_sampler(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "sampler", "give a checkpoint a few-step sampler and check it on the twin",
        "Write a copy of a diffusion-policy checkpoint whose sampler is DDIM with --steps steps (same weights),\n"
        "and/or (--check) roll the checkpoint's sampler and the 10-step reference (DDIM 10, leading spacing) out\n"
        "on the twin over the same --episodes seeds: exit 0 when the checkpoint's success is inside or above the\n"
        "reference's 95% interval, 1 otherwise. Policies that predict the clean chunk (scheduler.prediction_type:\n"
        "sample, as config/policies/*.yaml) keep their success at 1-3 steps with --spacing trailing, without\n"
        "distillation. The sampler is stored in the checkpoint: policy_server and eval use it with no flag.\n\n"
        "examples:\n"
        "  robot-stack train sampler runs/pick/checkpoints/latest --out runs/pick/checkpoints/fast --steps 2\n"
        "  robot-stack train sampler runs/pick/checkpoints/fast --check --episodes 50\n",
    )
    p.add_argument("policy", help="checkpoint folder (robot-stack train ... --out)/checkpoints/<name>")
    p.add_argument("--out", type=Path, help="new checkpoint folder with the sampler (default: none written)")
    p.add_argument("--steps", type=int, default=2, help="DDIM steps (network evaluations) per action chunk")
    p.add_argument("--spacing", default="trailing", choices=("trailing", "leading"),
                   help="DDIM timestep spacing: trailing starts from the last training step (needed for 1-3 steps)")
    p.add_argument("--check", action="store_true", help="compare against DDIM 10 on the twin (writes nothing there)")
    p.add_argument("--episodes", type=int, default=50, help="twin episodes per sampler with --check")
    p.add_argument("--task", default="pick_cube", help="twin task for --check")
    p.add_argument("--robot", help="robot profile (default: the checkpoint's)")
    p.set_defaults(handler=_run_sampler)


def _run_sampler(args: argparse.Namespace) -> int:
    from robot_stack.errors import UserError
    from robot_stack.policies.diffusion.checkpoint import read_config
    from robot_stack.policies.diffusion.sampler import compare_samplers, write_sampler_checkpoint

    if not args.out and not args.check:
        raise UserError("nothing to do: give --out <folder> (write a checkpoint with the sampler) and/or --check")
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    _, shape, _ = read_config(args.policy)
    target = args.policy
    if args.out:
        target = write_sampler_checkpoint(args.policy, args.out, args.steps, args.spacing)
        print(f"checkpoint with DDIM {args.steps} ({args.spacing}): {target}")
    if not args.check:
        return 0
    result = compare_samplers(target, args.task, args.robot or shape.robot, args.episodes)
    print(result.summary())
    return 0 if result.within else 1


def _train_overrides(args: argparse.Namespace) -> dict:
    names = {"steps": "steps", "batch_size": "batch_size", "seed": "seed", "val_every": "val_every",
             "ckpt_every": "ckpt_every", "log_every": "log_every", "num_workers": "num_workers", "intervention_weight": "intervention_weight",
             "eval_every": "eval_every", "eval_episodes": "eval_episodes", "eval_task": "eval_task"}
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def merge_config(cfg, user: dict, source: str):
    """``cfg`` with the sections of a ``--config`` mapping laid over it (fields of a section replace
    the preset's, other fields stay)."""
    from robot_stack.errors import UserError
    from robot_stack.policies.diffusion.config import DiffusionConfig
    from robot_stack.typed_config import from_dict, to_dict

    if not isinstance(user, dict):
        raise UserError(f"{source}: expected a mapping of config sections")
    merged = to_dict(cfg)
    for section, values in user.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return from_dict(DiffusionConfig, merged, source)


def build_config(args: argparse.Namespace):
    """Preset, then --config YAML, then command-line options; obs keys chosen from the store."""
    from robot_stack.errors import UserError
    from robot_stack.policies.diffusion.config import preset, replace
    from robot_stack.typed_config import load_yaml

    cfg = preset(args.preset)
    user: dict = {}
    if args.config:
        user = load_yaml(args.config) or {}
        cfg = merge_config(cfg, user, str(args.config))
    obs = {}
    if args.obs_keys:
        keys = [k.strip() for k in args.obs_keys.split(",") if k.strip()]
        obs = {"lowdim_keys": tuple(k for k in keys if not k.endswith("_image")),
               "image_keys": tuple(k for k in keys if k.endswith("_image"))}
    elif not {"lowdim_keys", "image_keys"} & set(user.get("obs") or {}) and (args.data or args.interventions):
        obs = _auto_obs_keys((args.data or args.interventions)[0], cfg, cameras=args.preset != "lowdim")
    try:
        return replace(cfg, obs=obs, train=_train_overrides(args),
                       optim={"lr": args.lr} if args.lr is not None else {},
                       scheduler={"inference_steps": args.inference_steps} if args.inference_steps else {})
    except ValueError as err:
        raise UserError(f"config: {err}") from None


def _auto_obs_keys(store: str, cfg, cameras: bool) -> dict:
    """Low-dim keys of the preset that the store has, plus (``cameras``) every camera in it."""
    import zarr

    try:
        available = set(zarr.open_group(store, mode="r")["data"].array_keys())
    except Exception:  # noqa: BLE001 - the dataset loader reports a missing/corrupt store properly
        return {}
    lowdim = tuple(k for k in cfg.obs.lowdim_keys if k in available) or cfg.obs.lowdim_keys
    images = tuple(sorted(k for k in available if k.endswith("_image"))) if cameras else ()
    return {"lowdim_keys": lowdim, "image_keys": images}


def _run(args: argparse.Namespace) -> int:
    from robot_stack.errors import UserError
    from robot_stack.policies.diffusion.processes import resolve_procs, train_in_processes
    from robot_stack.policies.diffusion.train import RunOptions, train

    if args.resume and args.finetune:
        raise UserError("--resume continues a run, --finetune starts a new one from a checkpoint: use one")
    opts = RunOptions(out=args.out, data=args.data, interventions=args.interventions, robot=args.robot,
                      resume=args.resume, finetune=args.finetune, device=args.device, progress=not args.no_progress,
                      skip_damaged=args.skip_damaged)
    if args.resume:
        opts.train_overrides = _train_overrides(args)
    else:
        opts.cfg = build_config(args)
        from robot_stack.contract import check_deployable

        check_deployable(opts.cfg.obs.keys, None, args.privileged, "this policy")
    procs = resolve_procs(args.procs, args.device)
    if procs > 1 and "WORLD_SIZE" not in os.environ:  # under torchrun the processes exist already
        train_in_processes(opts, procs)
        out = opts.out
    else:
        out = train(opts)
    print(f"run folder: {out} (checkpoints/latest, checkpoints/best, loss.png)")
    return 0
