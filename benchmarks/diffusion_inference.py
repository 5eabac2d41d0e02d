"""Diffusion policy on the CPU: inference latency (DDIM 10/16 steps) and training throughput.

Policies use the shipped presets (``lowdim``: joint_pos + object_state; ``image``: joint_pos + two
96x96 cameras, crop 84x84) with random weights (latency does not depend on training). One run,
torch threads fixed (default 2); prints a table of median and p99 latency and samples/s.

    .venv/bin/python benchmarks/diffusion_inference.py [--threads 2] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from robot_stack.policies.diffusion.config import ShapeMeta, preset
from robot_stack.policies.diffusion.policy import DiffusionPolicy

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def make(kind: str) -> tuple[DiffusionPolicy, dict[str, torch.Tensor]]:
    cfg = preset(kind)
    dims = {"joint_pos": 6, "object_state": 6}
    shape = ShapeMeta(robot="so101", joint_names=JOINTS, lowdim_dims={k: dims[k] for k in cfg.obs.lowdim_keys},
                      action_dim=6, image_keys=cfg.obs.image_keys)
    policy = DiffusionPolicy(cfg, shape).eval()
    to = cfg.horizon.n_obs_steps
    obs = {k: torch.rand(1, to, dims[k]) * 2 - 1 for k in cfg.obs.lowdim_keys}
    obs.update({k: torch.randint(0, 256, (1, to, 96, 96, 3), dtype=torch.uint8) for k in cfg.obs.image_keys})
    return policy, obs


def latency(policy: DiffusionPolicy, obs: dict, steps: int, repeats: int) -> tuple[float, float]:
    times = []
    with torch.inference_mode():
        for i in range(repeats + 5):
            t = time.perf_counter()
            policy.predict_action(obs, num_steps=steps)
            if i >= 5:
                times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), float(np.percentile(times, 99))


def throughput(policy: DiffusionPolicy, obs: dict, batch_size: int, iters: int) -> float:
    batch = {k: v.expand(batch_size, *v.shape[1:]).contiguous() for k, v in obs.items()}
    batch["action"] = torch.rand(batch_size, policy.cfg.horizon.horizon, 6) * 2 - 1
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    times = []
    for i in range(iters + 2):
        t = time.perf_counter()
        loss = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    policy.eval()
    return batch_size / statistics.median(times)


def _row(kind: str, params: float, case: str, med: str, p99: str, sps: str) -> None:
    print(f"{kind:<8} {params:>7.1f}M {case:<13} {med:>10} {p99:>8} {sps:>10}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-iters", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{args.threads} torch threads, load average before start {os.getloadavg()[0]:.2f}")
    print(f"{'policy':<8} {'params':>8} {'case':<13} {'median ms':>10} {'p99 ms':>8} {'samples/s':>10}", flush=True)
    for kind in ("lowdim", "image"):
        policy, obs = make(kind)
        params = sum(p.numel() for p in policy.parameters()) / 1e6
        for steps in (10, 16):
            med, p99 = latency(policy, obs, steps, args.repeats)
            _row(kind, params, f"DDIM {steps}", f"{med:.1f}", f"{p99:.1f}", "")
        sps = throughput(policy, obs, args.batch_size, args.train_iters)
        _row(kind, params, f"train b={args.batch_size}", "", "", f"{sps:.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared; figures are from one run)")


if __name__ == "__main__":
    main()
