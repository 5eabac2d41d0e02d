"""``robot-stack demo --record-procs``: how demos are split over parallel recordings (the recording itself:
test_demo_images, the learning gate)."""

import pytest

from robot_stack.demo import record_procs, shards
from robot_stack.errors import UserError


def test_shards_cover_the_seeds_one_recording_would():
    for demos in (1, 2, 5, 100):
        for procs in (1, 2, 3, 8):
            parts = shards(demos, procs)
            seeds = [s for seed, n in parts for s in range(seed, seed + n)]
            assert seeds == list(range(demos)) and all(n > 0 for _, n in parts), (demos, procs, parts)
    assert shards(100, 2) == [(0, 50), (50, 50)] and shards(5, 2) == [(0, 3), (3, 2)] and shards(1, 2) == [(0, 1)]


def test_record_procs_option():
    assert record_procs("3") == 3 and record_procs("auto") in (1, 2)
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(UserError, match="--record-procs"):
            record_procs(bad)


def test_robustness_task_is_the_visual_variant_of_an_image_demo():
    import argparse

    from robot_stack.demo import robustness_task

    def task(**kw):
        base = dict(images=True, task="pick_cube", robustness_task="auto", robustness_episodes=30)
        return robustness_task(argparse.Namespace(**{**base, **kw}))

    assert task() == "pick_cube_visual"
    assert task(images=False) is None  # a low-dim policy does not see cameras, lights or colours
    assert task(task="reach") is None  # no reach_visual: nothing to check
    assert task(robustness_task="none") is None and task(robustness_episodes=0) is None
    assert task(robustness_task="pick_cube_wide", images=False) == "pick_cube_wide"


def test_demo_refuses_an_unknown_task_before_recording(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "robot-stack"
    for flag in ("--task", "--record-task", "--robustness-task"):
        run = subprocess.run([str(cli), "demo", flag, "no_such_task", "--out", str(tmp_path / "d")],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and "unknown task 'no_such_task'" in run.stderr and "Traceback" not in run.stderr
        assert not (tmp_path / "d").exists(), flag
