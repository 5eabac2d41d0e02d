"""The price of deployability: success against training time, pixels vs the privileged low-dim reference.

    .venv/bin/python benchmarks/visuomotor.py --data runs/demo/demos.zarr
    .venv/bin/python benchmarks/visuomotor.py --out runs/visuomotor_bench --report   (the table of finished runs)

Trains, on the same demo store (recorded with the front and wrist cameras, e.g. by
``robot-stack demo --images``), the deployable policy (``config/policies/visuomotor.yaml``: cameras,
joints, end-effector pose) and the privileged reference (``lowdim_small.yaml`` with ``object_state``,
``--privileged``), each evaluating itself on the twin every ``--eval-every`` steps; then prints, per
policy and evaluation, the step, the training minutes up to it (the run's own samples/s, evaluations
excluded; for a run trained in one go) and the success rate with its 95% interval. A run folder that
exists is reported, not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
POLICIES = {  # name -> (config, extra train arguments)
    "pixels (deployable)": ("visuomotor.yaml", []),
    "object_state (privileged)": ("lowdim_small.yaml", ["--preset", "lowdim", "--privileged"]),
}


def train(data: str, out: Path, steps: int, eval_every: int, episodes: int) -> None:
    from robot_stack.cli import main as cli

    for name, (config, extra) in POLICIES.items():
        run = out / config.removesuffix(".yaml")
        if (run / "run.json").exists():
            continue
        args = ["train", "diffusion", "--data", data, "--out", str(run), "--config",
                str(REPO / "config" / "policies" / config), "--steps", str(steps), "--eval-every", str(eval_every),
                "--eval-episodes", str(episodes), *extra]
        if cli(args) != 0:
            raise SystemExit(f"training {name} failed")


def curve(run: Path) -> list[tuple[int, float, int, int, tuple[float, float]]]:
    """(step, training minutes, successes, episodes, ci95) of each twin evaluation in ``run``'s metrics."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    batch = json.loads((run / "run.json").read_text())["config"]["train"]["batch_size"]
    rate = {m["step"]: m["samples_per_s"] for m in rows if "samples_per_s" in m}
    out = []
    for m in rows:
        if "eval_success_rate" in m and m["step"] in rate:
            minutes = m["step"] * batch / rate[m["step"]] / 60.0  # samples/s counts training only, from step 0
            out.append((m["step"], minutes, m["eval_successes"], m["eval_episodes"], tuple(m["eval_ci95"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="demo store with front and wrist images (robot-stack demo --images)")
    parser.add_argument("--out", type=Path, default=Path("runs/visuomotor_bench"), help="folder of the two runs")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of each policy")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between twin evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--report", action="store_true", help="only print the table of the runs in --out")
    args = parser.parse_args()
    if not args.report:
        if not args.data:
            parser.error("give --data <store.zarr> (or --report for finished runs)")
        train(args.data, args.out, args.steps, args.eval_every, args.eval_episodes)

    from rich.console import Console
    from rich.table import Table

    table = Table("policy", "step", "training min", "success", "95% CI",
                  title=f"success against training time ({args.out})")
    for name, (config, _) in POLICIES.items():
        run = args.out / config.removesuffix(".yaml")
        if not (run / "metrics.jsonl").exists():
            table.add_row(name, "-", "-", "not trained", "")
            continue
        for step, minutes, k, n, (lo, hi) in curve(run):
            table.add_row(name, str(step), f"{minutes:.1f}", f"{k}/{n} = {k / n:.0%}", f"{lo:.0%}-{hi:.0%}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
