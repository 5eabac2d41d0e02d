"""The write-ahead journal of an episode being recorded: what a crash leaves is recovered on the next open
for writing, marked, never merged silently; a saved (sealed) episode is committed whole; a discarded one
never comes back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.journal import read_journal
from robot_stack.data.store import EpisodeStore
from test_data_store import assert_episode_equal, make_episode

META = {"profile": {"name": "so101"}, "info": {"task": "pick", "operator": "ci", "extra": {"record_rate_hz": 10.0}}}


def crash_while_recording(path: Path, steps: int, then=None, seed: int = 1) -> None:
    """A child process records ``steps`` steps one by one into a journaled episode, runs ``then(writer)``,
    and is SIGKILLed."""
    pid = os.fork()
    if pid == 0:
        try:
            writer = EpisodeStore(path, "a", fsync=False).begin_episode(journal=META)
            episode = make_episode(seed, 40)
            for i in range(steps):
                writer.extend({k: v[i:i + 1] for k, v in episode.items()})
            if then is not None:
                then(writer)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    EpisodeStore(tmp_path / "s.zarr", "a", fsync=False).append_episode(make_episode(0, 12), profile={"name": "so101"})
    return tmp_path / "s.zarr"


def test_episode_in_flight_is_recovered_marked(store: Path, capfd: pytest.CaptureFixture) -> None:
    crash_while_recording(store, 25)
    assert EpisodeStore(store).n_episodes == 1 and len(EpisodeStore(store).pending_journals()) == 1  # read-only: no change
    assert main(["data", "info", str(store)]) == 0
    assert "an interrupted recording waits in the journal" in capfd.readouterr().out
    reopened = EpisodeStore(store, "a")
    err = capfd.readouterr().err
    assert "recovered episode 1 (25 steps, 2.5 s)" in err and "robot-stack data drop" in err
    info = reopened.episodes[1]
    assert info.length == 25 and info.success is None and info.extra["recovered"] is True
    assert info.task == "pick" and info.operator == "ci" and reopened.profile(1) == {"name": "so101"}
    expected = {k: v[:25] for k, v in make_episode(1, 40).items()}
    assert_episode_equal(reopened, 1, expected)  # frames (from their chunk files) and low-dim (from the journal)
    assert not reopened.pending_journals() and reopened.verify().ok
    reopened.append_episode(make_episode(2, 5))  # and recording goes on after it
    assert EpisodeStore(store).n_episodes == 3
    assert main(["data", "drop", str(store), "1"]) == 0  # the recovered episode can be discarded
    after = EpisodeStore(store)
    assert after.n_episodes == 2 and not any(e.extra.get("recovered") for e in after.episodes)


def test_saved_episode_is_committed_whole_after_a_crash_before_its_commit(store: Path) -> None:
    crash_while_recording(store, 30, lambda w: w.seal(task="pick", success=True, extra={"record_rate_hz": 10.0}))
    reopened = EpisodeStore(store, "a")
    info = reopened.episodes[1]
    assert info.length == 30 and info.success is True and "recovered" not in info.extra
    assert_episode_equal(reopened, 1, {k: v[:30] for k, v in make_episode(1, 40).items()})


def test_torn_last_record_and_missing_frame_cut_the_recovery(store: Path) -> None:
    crash_while_recording(store, 20)
    journal = EpisodeStore(store).pending_journals()[0]
    data = journal.read_bytes()
    journal.write_bytes(data[:-7])  # the last record torn mid-write
    assert len(read_journal(journal)[1]) == 19
    arr = EpisodeStore(store).array("front_image")
    (store / arr.path / "c" / str(12 + 15) / "0" / "0" / "0").unlink()  # frame of step 15 never reached the disk
    reopened = EpisodeStore(store, "a")
    assert reopened.episodes[1].length == 15
    assert_episode_equal(reopened, 1, {k: v[:15] for k, v in make_episode(1, 40).items()})


def test_discarded_and_committed_episodes_leave_no_journal(store: Path) -> None:
    writer = EpisodeStore(store, "a").begin_episode(journal=META)
    writer.extend(make_episode(5, 10))
    writer.discard()
    writer2 = EpisodeStore(store, "a").begin_episode(journal=META)
    writer2.extend(make_episode(6, 10))
    writer2.seal(task="pick", success=True)
    writer2.commit(task="pick", success=True)
    reopened = EpisodeStore(store, "a")
    assert reopened.n_episodes == 2 and not reopened.pending_journals()
    assert reopened.episodes[1].uid == writer2.uid


def test_journal_of_a_committed_episode_is_removed_not_recovered_twice(store: Path) -> None:
    def commit_then_die(writer) -> None:  # killed after the commit, before the journal went away
        writer._journal.close(remove=False)
        writer._journal = None
        writer.commit(task="pick")

    crash_while_recording(store, 10, commit_then_die)
    assert EpisodeStore(store).n_episodes == 2 and len(EpisodeStore(store).pending_journals()) == 1
    reopened = EpisodeStore(store, "a")
    assert reopened.n_episodes == 2 and not reopened.pending_journals()


def test_journal_is_durable_at_least_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_stack.data import store as store_module

    syncs: list[float] = []
    monkeypatch.setattr(store_module, "_syncfs", lambda path: syncs.append(1.0))
    monkeypatch.setattr(store_module, "SYNC_PERIOD_S", 0.05)
    writer = EpisodeStore(tmp_path / "s.zarr", "a").begin_episode(journal=META)
    episode = make_episode(3, 30)
    import time

    for i in range(30):
        writer.extend({k: v[i:i + 1] for k, v in episode.items()})
        time.sleep(0.01)
    assert writer.sync() == 30 and writer.durable == 30
    assert len(syncs) >= 3  # periodic (every SYNC_PERIOD_S) plus the explicit one
    np.testing.assert_array_equal(np.concatenate([np.frombuffer(r["arrays"]["joint_pos"][2], np.float32)
                                                  for r in read_journal(writer._journal.path)[1]]),
                                  episode["joint_pos"].ravel())


def test_an_episode_the_store_would_refuse_is_never_acknowledged(store: Path) -> None:
    """Seal checks keys and shapes against the store first: a doomed commit must not be answered 'saved'."""
    from robot_stack.errors import UserError

    writer = EpisodeStore(store, "a", fsync=False).begin_episode(journal=META)
    episode = make_episode(4, 10)
    episode["joint_pos"] = episode["joint_pos"][:, :0]  # e.g. a stream that never arrived, recorded empty
    writer.extend(episode)
    with pytest.raises(UserError, match="'joint_pos' is stored as float32 \\(6,\\) per step, got float32 \\(0,\\)"):
        writer.seal(task="pick")
    writer.discard()
    assert not EpisodeStore(store).pending_journals()
