"""DDP path: 2 CPU processes (gloo; ``--procs 2`` or torchrun) compute the same losses as one process."""

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
    proc = subprocess.run([sys.executable, *args, "--out", str(ddp), "--procs", "2"], env=env, timeout=240,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Grad strides" not in proc.stderr, proc.stderr[-3000:]
    assert json.loads((ddp / "run.json").read_text())["world_size"] == 2
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=2e-3), (a, b)
    assert (ddp / "checkpoints" / "latest" / "model.safetensors").is_file()
    # torchrun starts the same processes itself: resuming the run under it continues the same updates
    more = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "robot_stack.cli", "train", "diffusion", "--out", str(ddp), "--resume", "--steps", "8",
                           "--robot", str(small_camera_profile(tmp_path)), "--no-progress"], env=env, timeout=240, capture_output=True, text=True)
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(_losses(ddp)) == 8


def test_a_mistake_found_in_a_training_process_is_one_line(tmp_path):
    """Every process finds the same mistake (the batch does not split over 2 processes): reported once."""
    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=12, cameras=())
    proc = subprocess.run([sys.executable, "-m", "robot_stack.cli", "train", "diffusion", "--data", str(store),
                           "--preset", "tiny", "--robot", "so101", "--steps", "2", "--batch-size", "7",
                           "--out", str(tmp_path / "run"), "--procs", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "robot-stack: error: train.batch_size (7) must be divisible by the number of processes (2)"], proc.stderr


def test_procs_option():
    from robot_stack.errors import UserError
    from robot_stack.policies.diffusion.processes import resolve_procs

    assert resolve_procs("3", "cpu") == 3
    assert resolve_procs("auto", "cpu") == (2 if (os.cpu_count() or 1) >= 2 else 1)
    for bad in ("0", "two", "-1"):
        with pytest.raises(UserError, match="--procs"):
            resolve_procs(bad, "cpu")
