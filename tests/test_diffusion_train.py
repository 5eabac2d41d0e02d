"""Diffusion policy training: overfitting a few demos, CLI runs, resume, fine-tuning on interventions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_stack.cli import main as cli_main
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.policies.diffusion import dataset as ds
from robot_stack.policies.diffusion.config import preset, replace
from robot_stack.policies.diffusion.synthetic import write_store
from robot_stack.policies.diffusion.train import EMA, RunOptions, lr_factor, train
from conftest import small_camera_profile

torch.set_num_threads(1)


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_model_overfits_few_demos(tmp_path):
    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=24, seed=1)
    # x0 ("sample") prediction: the tiny model memorises in a few hundred steps (epsilon needs far more)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos", "object_state")}, optim={"lr": 3e-3},
                  scheduler={"prediction_type": "sample"},
                  train={"steps": 800, "val_ratio": 0.0, "val_every": 400, "log_every": 50, "batch_size": 32})
    run = train(RunOptions(out=tmp_path / "run", data=[str(store)], cfg=cfg, progress=False))
    m = metrics(run)
    assert m[-1]["step"] == 800
    assert m[-1]["loss"] < 0.1 * m[0]["loss"], (m[0]["loss"], m[-1]["loss"])
    assert (run / "loss.png").stat().st_size > 1000

    policy = ckpt.load_policy(run / "checkpoints" / "latest")
    data = ds.SequenceDataset(ds.load_store(store, policy.cfg), np.arange(2), policy.cfg)
    items = [data[i] for i in range(0, len(data), 2)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    pred = policy.predict_action(batch, generator=torch.Generator().manual_seed(0))
    executed = slice(1, 1 + policy.cfg.horizon.n_action_steps)
    err = (pred[:, executed] - batch["action"][:, executed]).abs().mean().item()
    hold = (batch["joint_pos"][:, -1:] - batch["action"][:, executed]).abs().mean().item()  # "stay put" baseline
    assert err < 0.03 and err < 0.2 * hold, (err, hold)


def test_lr_schedule():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0)


def test_ema_update_is_the_weighted_average():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GroupNorm(2, 4))
    ema = EMA(model, power=0.75, inv_gamma=1.0, min_decay=0.0, max_decay=0.9999)
    before = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=10)
    d = ema.decay(10)
    assert 0 < d < 1
    for e, b, p in zip(ema.model.parameters(), before, model.parameters()):
        torch.testing.assert_close(e, d * b + (1 - d) * p.detach())


def test_cli_train_resume_and_finetune(tmp_path, capsys):
    demos = write_store(tmp_path / "demos.zarr", n_episodes=3, length=20, cameras=("front", "wrist"), image_hw=(24, 32))
    hil = write_store(tmp_path / "hil.zarr", n_episodes=2, length=20, cameras=("front", "wrist"), image_hw=(24, 32),
                      seed=5, intervention_every=4)
    run = tmp_path / "runs" / "a"
    so101 = str(small_camera_profile(tmp_path))  # the store's 32x24 frames: the shipped regions do not fit them
    common = ["--preset", "tiny", "--batch-size", "8", "--no-progress", "--device", "cpu"]
    assert cli_main(["train", "diffusion", "--data", str(demos), "--out", str(run), "--steps", "6",
                     "--val-every", "3", "--ckpt-every", "3", "--robot", so101, *common]) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["config"]["obs"]["image_keys"] == ["front_image", "wrist_image"] and saved["robot"] == "so101"  # the profile's name
    assert [m["step"] for m in metrics(run)] == [3, 6]  # validation steps and the last one
    assert all(m["val_loss"] is not None for m in metrics(run))
    assert cli_main(["train", "diffusion", "--out", str(run), "--resume", "--steps", "9", "--robot", so101, "--no-progress"]) == 0
    assert [m["step"] for m in metrics(run)] == [3, 6, 9]
    assert json.loads((run / "checkpoints" / "latest" / "config.json").read_text())["step"] == 9
    # an existing run is not overwritten by accident
    assert cli_main(["train", "diffusion", "--data", str(demos), "--out", str(run), *common]) == 2
    assert "already holds a run" in capsys.readouterr().err

    ft = tmp_path / "runs" / "ft"
    assert cli_main(["train", "diffusion", "--data", str(demos), "--interventions", str(hil), "--finetune",
                     str(run / "checkpoints" / "latest"), "--out", str(ft), "--steps", "3", "--robot", so101, *common]) == 0
    base = ckpt.load_policy(run / "checkpoints" / "latest")
    tuned = ckpt.load_policy(ft / "checkpoints" / "latest")
    assert base.normalizer.stats() == tuned.normalizer.stats()  # normaliser kept from the checkpoint
    assert json.loads((ft / "run.json").read_text())["interventions"] == [str(hil)]

    other = write_store(tmp_path / "panda.zarr", n_episodes=2, length=20, n_joints=8, cameras=("front", "wrist"),
                        image_hw=(24, 32), robot="panda")
    assert cli_main(["train", "diffusion", "--data", str(other), "--finetune", str(run / "checkpoints" / "latest"),
                     "--out", str(tmp_path / "runs" / "bad"), "--robot", "panda", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differing keys: robot (checkpoint 'so101', here 'panda')" in err
