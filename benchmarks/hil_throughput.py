"""HIL learner and in-process loop throughput, on the CPU and on a CUDA GPU when torch sees one.

* ``learner updates/s``: ``SACAgent.update`` at the pick_cube_state config (batch 256, 2 critics with
  LayerNorm, 256x256, ``utd_ratio`` critic updates per actor update) on ``mixed_batch`` batches drawn
  from two filled buffers; every update samples its batch in numpy, moves it to the device and
  reads its losses back, as the learner does. CPU with 1 and with ``--threads`` torch threads; cuda.
* ``in-process loop env steps/s``: ``Trainer`` on the twin's pick_cube (state observations, panda,
  10 Hz policy steps), UTD 2, ``--threads`` torch threads, 2 scripted demos: env steps per second
  once past warmup, so every step includes the env step, acting and the 2 updates (the issue's
  target: >= 10 env steps/s at UTD 2 on 2 CPU cores).

Rows for a device torch cannot use are skipped with a note. Each figure is the median of
``--rounds`` rounds. OpenMP threads sleep when idle (``OMP_WAIT_POLICY=PASSIVE`` unless set):
on a machine shared with other jobs, spinning threads make 2 torch threads ~50x slower than 1.

    .venv/bin/python benchmarks/hil_throughput.py [--seconds 10] [--loop-steps 600] [--rounds 3] [--threads 2]
        [--robot panda] [--task pick_cube]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")
# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With 2 threads on 2 cores that
# other processes use too, spinning threads wait on descheduled ones at every parallel region
# (measured 0.9 instead of 66 updates/s); set OMP_WAIT_POLICY=ACTIVE to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from rich.console import Console
from rich.table import Table


def updates_per_s(device: str, threads: int, seconds: float) -> float:
    from robot_stack.policies.hil.agent import SACAgent
    from robot_stack.policies.hil.buffer import ReplayBuffer, mixed_batch
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.spaces import RLSpace

    torch.set_num_threads(threads)
    cfg = load_hil_config("pick_cube_state", robot="panda")
    space = RLSpace(cfg.robot, "pick_cube", cfg)
    rng = np.random.default_rng(0)
    agent = SACAgent(cfg.agent, space.obs_dim, space.act_dim, space.state_dim, seed=0, device=device)
    bufs = [ReplayBuffer(5000, space.obs_dim, space.act_dim) for _ in range(2)]
    for b in bufs:
        for _ in range(2000):
            b.add(rng.normal(size=space.obs_dim), rng.uniform(-1, 1, space.act_dim), float(rng.random() < 0.05),
                  rng.normal(size=space.obs_dim), False)
    g = cfg.agent.utd_ratio

    def update(n: int) -> None:
        batch = mixed_batch(bufs[0], bufs[1], cfg.agent.batch_size, cfg.agent.demo_ratio, rng)
        agent.update(batch, update_actor=n % g == g - 1)  # returns host floats: the device is done with it

    for n in range(20):  # warm up (allocator, cuBLAS handles, kernel selection)
        update(n)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        update(n)
        n += 1
    return n / (time.perf_counter() - start)


def loop_env_steps_per_s(device: str, threads: int, steps: int, robot: str, task: str) -> float:
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.loop import Trainer

    warmup = 100
    cfg = load_hil_config("pick_cube_state", robot=robot, task=task, device=device, torch_threads=threads, demos=2,
                          warmup_steps=warmup, env_steps=warmup + steps, eval_episodes=0, agent={"utd_ratio": 2})
    stamps: list[float] = []
    trainer = Trainer(cfg, progress=False,
                      on_step=lambda r: stamps.append(time.perf_counter()) if r.kind == "train" else None)
    trainer.run()
    timed = stamps[warmup:]  # the steps that learn: env step, acting and utd_ratio updates each
    return (len(timed) - 1) / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of updates per updates/s figure")
    parser.add_argument("--loop-steps", type=int, default=600, help="env steps past warmup per loop figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the loop and the second CPU row")
    parser.add_argument("--robot", default="panda")
    parser.add_argument("--task", default="pick_cube")
    args = parser.parse_args()
    console = Console()
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else ""
    rows: list[tuple[str, str, list[float] | str, str]] = []  # (measure, device, values or note, target)
    for threads in sorted({1, args.threads}):
        rows.append((f"learner updates/s (SACAgent.update, batch 256, {threads} thread{'s' * (threads > 1)})",
                     "cpu", [], ""))
    rows.append(("learner updates/s (SACAgent.update, batch 256)", "cuda", [] if cuda else "skipped: no CUDA GPU "
                 "visible to torch", ""))
    rows.append((f"in-process loop env steps/s (UTD 2, state obs, {args.threads} threads)", "cpu", [], ">= 10"))
    rows.append((f"in-process loop env steps/s (UTD 2, state obs, {args.threads} threads)", "cuda",
                 [] if cuda else "skipped: no CUDA GPU visible to torch", ""))
    for r in range(args.rounds):
        for measure, device, values, _ in rows:
            if isinstance(values, str):
                continue
            if measure.startswith("learner"):
                threads = 1 if "1 thread)" in measure else args.threads
                values.append(updates_per_s(device, threads, args.seconds))
            else:
                values.append(loop_env_steps_per_s(device, args.threads, args.loop_steps, args.robot, args.task))
            console.print(f"round {r + 1}/{args.rounds}: {measure} on {device}: {values[-1]:.1f}", style="dim")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(title=f"HIL throughput: {args.robot}/{args.task}, pick_cube_state agent ({platform.machine()}, "
                        f"{os.cpu_count()} CPUs, load {load:.1f}{', ' + gpu if gpu else ''}; torch {torch.__version__}, "
                        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; medians of {args.rounds})")
    for column in ("measure", "device", "median", "min-max", "target"):
        table.add_column(column)
    for measure, device, values, target in rows:
        if isinstance(values, str):
            table.add_row(measure, device, "-", values, target)
            continue
        med = float(np.median(values))
        ok = "" if not target else (" (met)" if med >= float(target.split()[-1]) else " (NOT met)")
        table.add_row(measure, device, f"{med:.1f}", f"{min(values):.1f}-{max(values):.1f}", target + ok)
    console.print(table)


if __name__ == "__main__":
    main()
