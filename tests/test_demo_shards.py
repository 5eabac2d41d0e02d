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
