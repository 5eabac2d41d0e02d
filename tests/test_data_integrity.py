"""Damaged stores: every damage is named by ``data verify`` and ``data info`` and refused by training and
export; ``--skip-damaged`` uses the rest; a failed export leaves nothing behind; a kill inside the commit
window leaves every committed episode visible to training."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_stack.cli import main
from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError
from robot_stack.policies.diffusion import dataset as ds
from robot_stack.policies.diffusion.config import preset, replace
from test_data_store import make_episode

LENGTH = 40  # 26 episodes of 40 steps: low-dim chunk 0 (steps 0-1023) holds episodes 0-25, chunk 1 episode 25


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _shorten_index(store: Path) -> None:
    zarr.open_array(store / "meta" / "episode_ends", mode="r+").resize((10,))


# case -> (damage, damaged episodes, the place named)
CASES: dict[str, tuple[Callable[[Path], None], list[int], str]] = {
    "deleted chunk": (lambda s: (s / "data/joint_pos/c/1/0").unlink(), [25], "data/joint_pos"),
    "deleted image chunk": (lambda s: (s / "data/front_image/c/130/0/0/0").unlink(), [3], "data/front_image"),
    "shortened meta/episode_ends": (_shorten_index, list(range(10, 26)), "meta/episode_ends"),
    "garbled chunk": (lambda s: _garble(s / "data/action/c/0/0"), list(range(26)), "data/action"),
    "garbled timestamp chunk": (lambda s: _garble(s / "data/timestamp/c/1"), [25], "data/timestamp"),
}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "healthy.zarr"
    store = EpisodeStore(path, "a", fsync=False)
    for i in range(26):
        store.append_episode(make_episode(i, LENGTH), task="pick", profile={"name": "so101"})
    assert store.verify().ok
    return path


def _cfg():
    return replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",), "image_keys": ("front_image",)})


@pytest.mark.parametrize("case", list(CASES))
def test_damage_is_named_and_refused(case: str, healthy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    damage, episodes, place = CASES[case]
    path = tmp_path / "s.zarr"
    shutil.copytree(healthy, path)
    damage(path)

    report = EpisodeStore(path).verify()
    assert sorted(report.damaged()) == episodes, report.summary()
    assert all(report.damaged()[e] == [place] for e in episodes)

    capsys.readouterr()
    assert main(["data", "verify", str(path)]) == 1
    out = capsys.readouterr().out
    noun = "episode" if len(episodes) == 1 else "episodes"
    assert f"{len(episodes)} damaged {noun}" in out and place in out
    span = str(episodes[0]) if len(episodes) == 1 else f"{episodes[0]}-{episodes[-1]}"
    assert f"{noun} {span}: {place}" in out

    assert main(["data", "info", str(path), "--episodes"]) == 0  # no crash, and the damage is flagged
    out = capsys.readouterr().out
    assert "DAMAGED" in out and place in out

    with pytest.raises(UserError) as err:
        ds.load_store(path, _cfg())
    message = str(err.value)
    assert "\n" not in message and "damaged episode" in message and place in message and "--skip-damaged" in message
    if len(episodes) < 26:
        buffer = ds.load_store(path, _cfg(), skip_damaged=True)
        assert len(buffer.episode_ends) == 26 - len(episodes)
        assert f"skipping {len(episodes)} damaged episode" in capsys.readouterr().err
        kept = [e for e in range(26) if e not in episodes]
        np.testing.assert_array_equal(buffer.data["joint_pos"][:LENGTH], make_episode(kept[0], LENGTH)["joint_pos"])

    assert main(["data", "export", str(path), str(tmp_path / "bags"), "--format", "mcap"]) == 2
    assert "damaged episode" in capsys.readouterr().err and not (tmp_path / "bags").exists()


def test_training_cli_refuses_a_damaged_store_in_one_line(healthy: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(healthy, path)
    CASES["deleted image chunk"][0](path)
    code = main(["train", "diffusion", "--data", str(path), "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--obs-keys", "joint_pos,front_image", "--robot", "so101", "--steps", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert code == 2 and len(lines) == 1, err
    assert "1 damaged episode (3): data/front_image chunk 130 (step 130) missing" in lines[0], lines
    assert "--skip-damaged trains on the other 25" in lines[0] and "Traceback" not in err


def test_repair_rewrites_the_index_and_drop_removes_damaged_episodes(healthy: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(healthy, path)
    _shorten_index(path)
    assert main(["data", "verify", str(path), "--repair"]) == 0
    np.testing.assert_array_equal(zarr.open_group(path, mode="r")["meta/episode_ends"][:], EpisodeStore(path).episode_ends)
    CASES["deleted image chunk"][0](path)
    assert main(["data", "drop", str(path), "1"]) == 2  # would copy a damaged episode: refused, named
    assert "drop them too (robot-stack data drop" in capsys.readouterr().err
    assert main(["data", "drop", str(path), "3"]) == 0
    store = EpisodeStore(path)
    assert store.n_episodes == 25 and store.verify().ok


def test_failed_mcap_export_leaves_nothing_behind(healthy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_stack.data import export

    path = tmp_path / "s.zarr"
    store = EpisodeStore(path, "a", fsync=False)
    from test_data_bag import recorded_episode, small_profile
    from robot_stack.typed_config import to_dict

    for i in range(3):
        store.append_episode(recorded_episode(i, 12, 1.7e9 + 10 * i), profile=to_dict(small_profile()), task="pick_cube")
    real, calls = export._write_bag, []

    def failing(store, episode, bag, typestore):  # the disk fills up in the third bag
        calls.append(episode)
        if episode == 2:
            bag.mkdir()
            (bag / "metadata.yaml").write_text("partial")
            raise OSError(28, "No space left on device")
        return real(store, episode, bag, typestore)

    monkeypatch.setattr(export, "_write_bag", failing)
    with pytest.raises(OSError):
        export.export_mcap(EpisodeStore(path), [0, 1, 2], tmp_path / "bags")
    assert calls == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"], "a failed export left files behind"
    monkeypatch.setattr(export, "_write_bag", real)
    bags = export.export_mcap(EpisodeStore(path), [0, 1, 2], tmp_path / "bags")
    assert [b.name for b in bags] == [f"episode_{i:06d}" for i in range(3)] and all(b.is_dir() for b in bags)


def test_kill_inside_the_commit_window_keeps_every_committed_episode_for_training(tmp_path: Path) -> None:
    """SIGKILL after the commit record is written and before meta/episode_ends follows it: training
    (and every reader) sees the committed episode; verify notes the lagging index; the next writer fixes it."""
    path = tmp_path / "s.zarr"
    store = EpisodeStore(path, "a", fsync=False)
    for i in range(3):
        store.append_episode(make_episode(i, LENGTH), profile={"name": "so101"})
    pid = os.fork()
    if pid == 0:  # child: commit a fourth episode, die between the commit record and the index
        try:
            child = EpisodeStore(path, "a", fsync=False)
            child._write_episode_ends = lambda: os.kill(os.getpid(), signal.SIGKILL)
            child.append_episode(make_episode(3, LENGTH), profile={"name": "so101"})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert len(zarr.open_group(path, mode="r")["meta/episode_ends"][:]) == 3  # the index lags by one
    reader = EpisodeStore(path)
    assert reader.n_episodes == 4
    report = reader.verify()
    assert report.ok and "one commit behind" in report.notes[0]
    buffer = ds.load_store(path, _cfg())
    np.testing.assert_array_equal(buffer.episode_ends, [40, 80, 120, 160])
    np.testing.assert_array_equal(buffer.data["joint_pos"][120:], make_episode(3, LENGTH)["joint_pos"])
    EpisodeStore(path, "a")  # the next writer rewrites the index
    np.testing.assert_array_equal(zarr.open_group(path, mode="r")["meta/episode_ends"][:], [40, 80, 120, 160])
