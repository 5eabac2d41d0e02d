"""DDP path: torchrun with 2 CPU processes (gloo) computes the same losses as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from robot_stack.policies.diffusion.synthetic import write_store
from conftest import small_camera_profile


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    store = write_store(tmp_path / "demos.zarr", n_episodes=3, length=20, cameras=("front",), image_hw=(24, 32))
    args = ["-m", "robot_stack.cli", "train", "diffusion", "--data", str(store), "--preset", "tiny",
            "--robot", str(small_camera_profile(tmp_path)),
            "--steps", "6", "--batch-size", "8", "--val-every", "100", "--log-every", "1", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    subprocess.run([sys.executable, *args, "--out", str(single)], check=True, env=env, timeout=240)
    ddp = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args, "--out", str(ddp)], env=env, timeout=240, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ddp / "run.json").read_text())["world_size"] == 2
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=2e-3), (a, b)
    assert (ddp / "checkpoints" / "latest" / "model.safetensors").is_file()
