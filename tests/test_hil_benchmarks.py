"""The HIL benchmarks' command lines (not the runs): tasks, devices, where the results go."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from conftest import REPO


def load(name: str, monkeypatch):
    for var in ("MUJOCO_GL", "OMP_WAIT_POLICY"):  # what the scripts set for themselves stays theirs
        monkeypatch.setenv(var, os.environ.get(var, "egl" if var == "MUJOCO_GL" else "PASSIVE"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pick_cube_benchmark_arguments(monkeypatch, capsys):
    bench = load("hil_pick_cube", monkeypatch)
    args = bench.parse_args([])
    assert (args.task, args.device, args.runs, args.seeds) == ("pick_cube", "cpu", ["demos", "scratch", "intervene"],
                                                                [0, 1, 2])
    args = bench.parse_args(["--task", "pick_cube_wide", "--runs", "demos", "intervene", "--jobs", "6"])
    assert (args.task, args.runs, args.jobs) == ("pick_cube_wide", ["demos", "intervene"], 6)
    # pick_cube results stay where they were; another task's go to their own folder
    assert bench.task_dir("runs/b", "pick_cube") == Path("runs/b")
    assert bench.task_dir("runs/b", "pick_cube_wide") == Path("runs/b/pick_cube_wide")
    with pytest.raises(SystemExit):
        bench.parse_args(["--task", "push"])
    assert "not a pick_cube task" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cuda"])
    assert "hil device cuda: no CUDA GPU visible to torch (use device: cpu)" in capsys.readouterr().err
    assert bench.parse_args(["--device", "cuda", "--summaries"]).summaries  # reading results needs no GPU


def test_throughput_benchmark_learner_row_runs(monkeypatch):
    bench = load("hil_throughput", monkeypatch)
    assert bench.updates_per_s("cpu", 1, 0.2) > 0
