"""Diffusion policy on the CPU: inference latency (DDIM 10/16 steps) and training throughput.

Policies use the shipped presets (``lowdim``: joint_pos + object_state; ``image``: joint_pos + two
96x96 cameras, crop 84x84) and the CPU configs in ``config/policies`` on top of them
(``lowdim_small``: the ``robot-stack demo`` policy; ``image_small``: narrower encoder and U-Net, here
with the same two cameras), with random weights (latency does not depend on training). One run,
torch threads fixed (default 2); prints a table of median and p99 latency and samples/s. Inference
runs the U-Net steps as a TorchScript trace (the default); the "eager" row shows the same without.

    .venv/bin/python benchmarks/diffusion_inference.py [--threads 2] [--repeats 50] [--policies image image_small] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from robot_stack.policies.diffusion.cli import merge_config
from robot_stack.policies.diffusion.config import DiffusionConfig, ShapeMeta, preset
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.resources import share_dir
from robot_stack.typed_config import load_yaml

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
POLICIES = {"lowdim": ("lowdim", None), "lowdim_small": ("lowdim", "lowdim_small"), "image": ("image", None),
            "image_small": ("image", "image_small")}


def config(kind: str) -> DiffusionConfig:
    """A preset, with a ``config/policies/<name>.yaml`` on top (merged as ``robot-stack train --config``)."""
    base, override = POLICIES[kind]
    if not override:
        return preset(base)
    path = share_dir() / "config" / "policies" / f"{override}.yaml"
    return merge_config(preset(base), load_yaml(path), str(path))


def make(kind: str, device: torch.device) -> tuple[DiffusionPolicy, dict[str, torch.Tensor]]:
    cfg = config(kind)
    dims = {"joint_pos": 6, "ee_pose": 7, "object_state": 7}
    shape = ShapeMeta(robot="so101", joint_names=JOINTS, lowdim_dims={k: dims[k] for k in cfg.obs.lowdim_keys},
                      action_dim=6, image_keys=cfg.obs.image_keys)
    policy = DiffusionPolicy(cfg, shape).to(device).eval()
    to = cfg.horizon.n_obs_steps
    obs = {k: torch.rand(1, to, dims[k], device=device) * 2 - 1 for k in cfg.obs.lowdim_keys}
    obs.update({k: torch.randint(0, 256, (1, to, 96, 96, 3), dtype=torch.uint8, device=device)
                for k in cfg.obs.image_keys})
    return policy, obs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency(policy: DiffusionPolicy, obs: dict, steps: int, repeats: int, device: torch.device) -> tuple[float, float]:
    times = []
    with torch.inference_mode():
        for i in range(repeats + 5):
            _sync(device)
            t = time.perf_counter()
            policy.predict_action(obs, num_steps=steps)
            _sync(device)
            if i >= 5:
                times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), float(np.percentile(times, 99))


def throughput(policy: DiffusionPolicy, obs: dict, batch_size: int, iters: int, device: torch.device) -> float:
    batch = {k: v.expand(batch_size, *v.shape[1:]).contiguous() for k, v in obs.items()}
    batch["action"] = torch.rand(batch_size, policy.cfg.horizon.horizon, 6, device=device) * 2 - 1
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    times = []
    for i in range(iters + 2):
        _sync(device)
        t = time.perf_counter()
        loss = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    policy.eval()
    return batch_size / statistics.median(times)


def _row(kind: str, params: float, case: str, med: str, p99: str, sps: str) -> None:
    print(f"{kind:<12} {params:>7.1f}M {case:<16} {med:>10} {p99:>8} {sps:>10}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-iters", type=int, default=5)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--ddim", nargs="+", type=int, default=[10, 16], help="DDIM step counts to time")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (GPU rows: run it on a GPU machine)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch (use --device cpu)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{args.threads} torch threads, load average before start {os.getloadavg()[0]:.2f}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'policy':<12} {'params':>8} {'case':<16} {'median ms':>10} {'p99 ms':>8} {'samples/s':>10}", flush=True)
    for kind in args.policies:
        policy, obs = make(kind, device)
        params = sum(p.numel() for p in policy.parameters()) / 1e6
        for steps in args.ddim:
            med, p99 = latency(policy, obs, steps, args.repeats, device)
            _row(kind, params, f"DDIM {steps}", f"{med:.1f}", f"{p99:.1f}", "")
        policy.trace_unet = False  # the same without the TorchScript U-Net step, to show what it saves
        med, p99 = latency(policy, obs, args.ddim[0], args.repeats, device)
        _row(kind, params, f"DDIM {args.ddim[0]} eager", f"{med:.1f}", f"{p99:.1f}", "")
        sps = throughput(policy, obs, args.batch_size, args.train_iters, device)
        _row(kind, params, f"train b={args.batch_size}", "", "", f"{sps:.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared; figures are from one run)")


if __name__ == "__main__":
    main()
