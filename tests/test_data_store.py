"""Episode store: round trip, zarr layout, crash safety (kill -9), full disk, format version, bad input."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_stack.data import store as store_module
from robot_stack.data.store import FORMAT_VERSION, EpisodeStore
from robot_stack.errors import UserError


def make_episode(seed: int, length: int | None = None, image_shape=(24, 32, 3)) -> dict[str, np.ndarray]:
    """Deterministic episode content for ``seed`` (so a checker can regenerate it)."""
    rng = np.random.default_rng(seed)
    n = length if length is not None else int(rng.integers(5, 60))
    return {
        "timestamp": 100.0 * seed + np.arange(n) * 0.01,
        "joint_pos": rng.standard_normal((n, 6)).astype(np.float32),
        "action": rng.standard_normal((n, 6)).astype(np.float32),
        "intervention": rng.random(n) < 0.3,
        "front_image": rng.integers(0, 256, (n, *image_shape), dtype=np.uint8),
        "front_stamp": 100.0 * seed + np.arange(n) * 0.01 - 0.003,
    }


def assert_episode_equal(store: EpisodeStore, index: int, expected: dict[str, np.ndarray]) -> None:
    got = store.episode(index)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), f"episode {index} key {key} differs"


def test_round_trip_layout_and_windows(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    episodes = [make_episode(i, length=n) for i, n in enumerate((10, 3, 25))]
    for i, ep in enumerate(episodes):
        assert store.append_episode(ep, task="pick", success=i != 1, profile={"name": "so101"}) == i
    reopened = EpisodeStore(tmp_path / "s")
    assert reopened.n_episodes == 3 and reopened.n_steps == 38
    np.testing.assert_array_equal(reopened.episode_ends, [10, 13, 38])
    for i, ep in enumerate(episodes):
        assert_episode_equal(reopened, i, ep)
        assert np.all(np.diff(reopened.episode(i)["timestamp"]) > 0)
    assert [e.success for e in reopened.episodes] == [True, False, True]
    assert reopened.profile(2) == {"name": "so101"} and reopened.episodes[0].task == "pick"
    # plain zarr 3 reads: the diffusion_policy ReplayBuffer layout
    root = zarr.open_group(tmp_path / "s", mode="r")
    assert root["meta/episode_ends"].dtype == np.int64
    np.testing.assert_array_equal(root["meta/episode_ends"][:], [10, 13, 38])
    assert root["data/front_image"].shape == (38, 24, 32, 3) and root["data/front_image"].chunks == (1, 24, 32, 3)
    assert root["data/joint_pos"].dtype == np.float32 and root["data/intervention"].dtype == np.bool_
    assert root.attrs["robot_stack"]["format_version"] == FORMAT_VERSION
    # random access
    window = reopened.sample(2, 5, 16)
    np.testing.assert_array_equal(window["front_image"], episodes[2]["front_image"][5:21])
    starts = reopened.windows(8)
    assert len(starts) == (10 - 7) + 0 + (25 - 7)
    ends = reopened.episode_ends
    for s in starts:  # no window crosses an episode end
        assert not np.any((ends > s) & (ends < s + 8))
    with pytest.raises(UserError, match="does not fit"):
        reopened.sample(1, 0, 4)
    with pytest.raises(UserError, match="no episode 7"):
        reopened.episode(7)


def test_keys_must_match_and_discard_leaves_nothing(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    store.append_episode(make_episode(0, 5))
    writer = store.begin_episode()
    writer.extend(make_episode(1, 30))
    writer.discard()
    bad = make_episode(2, 5)
    bad.pop("action")
    with pytest.raises(UserError, match="missing \\['action'\\]"):
        store.append_episode(bad)
    store.append_episode(make_episode(3, 7))
    reopened = EpisodeStore(tmp_path / "s", "a")
    np.testing.assert_array_equal(reopened.episode_ends, [5, 12])
    assert_episode_equal(reopened, 1, make_episode(3, 7))
    assert zarr.open_group(tmp_path / "s", mode="r")["data/front_image"].shape[0] == 12


def test_uncommitted_tail_is_truncated_on_open(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    store.append_episode(make_episode(0, 6))
    writer = store.begin_episode()
    writer.extend(make_episode(1, 40))  # images hit the disk, never committed (as after a crash)
    assert zarr.open_group(tmp_path / "s", mode="r")["data/front_image"].shape[0] > 6
    (tmp_path / "s" / "data" / "zarr.json.0123abcd.partial").write_bytes(b"half a write")
    reader = EpisodeStore(tmp_path / "s")  # read-only: committed view, nothing changed
    assert reader.n_steps == 6
    EpisodeStore(tmp_path / "s", "a")
    err = capfd.readouterr().err
    assert "discarded" in err and "uncommitted steps" in err and len(err.strip().splitlines()) == 1
    root = zarr.open_group(tmp_path / "s", mode="r")
    assert root["data/front_image"].shape[0] == 6 and root["data/joint_pos"].shape[0] == 6
    assert not list((tmp_path / "s").rglob("*.partial"))


CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_data_store import make_episode
    from robot_stack.data.store import EpisodeStore
    store = EpisodeStore(sys.argv[1], "a", fsync=False)
    print("ready", store.n_episodes, flush=True)
    while True:
        i = store.n_episodes
        store.append_episode(make_episode(i), task=f"episode {i}")
        print("committed", i, flush=True)
    """
)


def test_kill_minus_9_at_random_points_keeps_committed_episodes(tmp_path: Path) -> None:
    """A writer is SIGKILLed at random moments, 24 times; every committed episode survives intact."""
    path = tmp_path / "crash"
    rng = random.Random(1234)
    env = dict(os.environ)
    committed_seen = -1
    for run in range(24):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(Path(__file__).parent)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        first = proc.stdout.readline()
        assert first.startswith("ready"), first + proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("committed")]
        if lines:
            committed_seen = max(committed_seen, int(lines[-1].split()[1]))
        store = EpisodeStore(path, "a")  # repairs; must always open
        assert store.n_episodes >= committed_seen + 1, f"run {run}: lost a committed episode"
        zarr.open_group(path, mode="r")  # plain zarr opens it too
    store = EpisodeStore(path)
    assert store.n_episodes >= 24 // 2, "the writer should have committed episodes in most runs"
    for i in range(store.n_episodes):
        assert_episode_equal(store, i, make_episode(i))
        assert store.episodes[i].task == f"episode {i}"
    root = zarr.open_group(path, mode="r")
    np.testing.assert_array_equal(root["meta/episode_ends"][:], store.episode_ends)
    for key in store.keys:
        assert root[f"data/{key}"].shape[0] == store.n_steps


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_full_disk_fails_the_episode_and_keeps_earlier_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = _mount_tmpfs(mount, "2m")
    if not mounted:  # no tmpfs: make the write path fail like a full disk after a few files
        real_put, calls = store_module._durable_put, {"n": 0}

        def put(path, data, exclusive, fsync):
            calls["n"] += 1
            if calls["n"] > 40 and len(data) > 10_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_put(path, data, exclusive, fsync)

        monkeypatch.setattr(store_module, "_durable_put", put)
    try:
        store = EpisodeStore(mount / "s", "a")
        first = make_episode(0, 5, image_shape=(96, 128, 3))
        store.append_episode(first)
        big = make_episode(1, 100, image_shape=(96, 128, 3))  # 3.7 MB of incompressible frames
        with pytest.raises(OSError) as info:
            store.append_episode(big)
        assert info.value.errno == errno.ENOSPC
        again = EpisodeStore(mount / "s", "a")
        assert again.n_episodes == 1
        assert_episode_equal(again, 0, first)
        again.append_episode(make_episode(2, 4, image_shape=(96, 128, 3)))  # space was given back by the discard
        assert EpisodeStore(mount / "s").n_episodes == 2
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def test_newer_format_and_bad_input_are_one_line_errors(tmp_path: Path) -> None:
    EpisodeStore(tmp_path / "s", "a").append_episode(make_episode(0, 3))
    meta = tmp_path / "s" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["robot_stack"]["format_version"] = FORMAT_VERSION + 1
    meta.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="newer robot_stack") as info:
        EpisodeStore(tmp_path / "s")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no episode store here"):
        EpisodeStore(tmp_path / "missing")
    meta.write_text("{ not json")
    with pytest.raises(UserError, match="corrupt episode store") as info:
        EpisodeStore(tmp_path / "s")
    assert "\n" not in str(info.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="not an episode store"):
        EpisodeStore(tmp_path / "other", "a")
    zarr.create_group(tmp_path / "plain", zarr_format=3)
    with pytest.raises(UserError, match="not a robot_stack episode store"):
        EpisodeStore(tmp_path / "plain")


def test_zarr_local_store_pin() -> None:
    """The crash-safety argument relies on zarr 3.1's store layout and our durable write path."""
    assert zarr.__version__.startswith("3.")
    from zarr.storage import LocalStore

    assert hasattr(LocalStore, "_set"), "zarr changed LocalStore internals: re-check DurableLocalStore"


def test_jpeg_codec_round_trip_with_plain_zarr(tmp_path: Path) -> None:
    """image_codec='jpeg': ~20x smaller, lossy; plain zarr reads it once robot_stack.data is imported."""
    yy, xx = np.mgrid[0:96, 0:128]
    smooth = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    frames = np.stack([np.roll(smooth, k, axis=1) for k in range(6)])
    store = EpisodeStore(tmp_path / "j", "a", image_codec="jpeg")
    store.append_episode({"timestamp": np.arange(6) * 0.1, "front_image": frames})
    store.append_episode({"timestamp": np.arange(3) * 0.1, "front_image": frames[:3]})
    import robot_stack.data  # noqa: F401 - (registers the codec, as any reader of such a store must)

    got = zarr.open_group(tmp_path / "j", mode="r")["data/front_image"][:]
    assert got.shape == (9, 96, 128, 3) and got.dtype == np.uint8
    error = np.abs(got[:6].astype(int) - frames).mean()
    assert 0 < error < 2.0, error
    meta = json.loads((tmp_path / "j" / "data" / "front_image" / "zarr.json").read_text())
    assert meta["codecs"] == [{"name": "imagecodecs_jpeg", "configuration": {"level": 95}}, {"name": "crc32c"}]
    chunk = (tmp_path / "j" / "data" / "front_image" / "c" / "0" / "0" / "0" / "0").read_bytes()
    assert chunk[:2] == b"\xff\xd8" and chunk[-6:-4] == b"\xff\xd9"  # a plain JPEG file per frame, then its crc32c


def test_kill_at_every_write_of_an_episode(tmp_path: Path) -> None:
    """SIGKILL at each file write of appending + committing an episode, with that write torn in half."""
    import shutil
    import threading

    base = tmp_path / "base"
    store = EpisodeStore(base, "a", fsync=False)
    first = [make_episode(i, n) for i, n in enumerate((8, 5))]
    for ep in first:
        store.append_episode(ep)
    new = make_episode(2, 9)
    outcomes: dict[int, int] = {}
    for kill_at in range(1, 200):
        path = tmp_path / f"run{kill_at}"
        shutil.copytree(base, path)
        pid = os.fork()
        if pid == 0:  # child: append one episode, die inside write number `kill_at`
            try:
                real_put, lock, count = store_module._durable_put, threading.Lock(), [0]

                def put(target, data, exclusive, fsync):
                    with lock:
                        count[0] += 1
                        last = count[0] == kill_at
                    if last:  # a torn write: half the bytes in the temporary file, then death
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.with_name(f"{target.name}.dead.partial").write_bytes(bytes(data)[: len(data) // 2])
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real_put(target, data, exclusive, fsync)

                store_module._durable_put = put
                EpisodeStore(path, "a", fsync=False).append_episode(new)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        reopened = EpisodeStore(path, "a")
        outcomes[kill_at] = reopened.n_episodes
        assert reopened.n_episodes in (2, 3), kill_at
        for i, ep in enumerate(first + [new][: reopened.n_episodes - 2]):
            assert_episode_equal(reopened, i, ep)
        root = zarr.open_group(path, mode="r")
        np.testing.assert_array_equal(root["meta/episode_ends"][:], reopened.episode_ends)
        assert not list(path.rglob("*.partial"))
        reopened.append_episode(make_episode(3, 4))  # and the store keeps working
        assert_episode_equal(EpisodeStore(path), reopened.n_episodes - 1, make_episode(3, 4))
        shutil.rmtree(path)
        if not killed:
            break
    assert not killed, "the episode needs fewer than 200 writes"
    assert list(outcomes.values()).count(2) >= 10, outcomes  # most kill points fall before the commit
    assert outcomes[max(outcomes)] == 3
    print("kill point -> episodes after reopening:", outcomes)


def test_repeated_frames_are_stored_as_repeated(tmp_path: Path) -> None:
    """Recording faster than a camera repeats frames; each step still holds its own chunk."""
    frames = make_episode(0, 4)["front_image"]
    steps = frames[[0, 0, 0, 1, 1, 2, 3, 3]]
    store = EpisodeStore(tmp_path / "r", "a", image_codec="blosc")
    writer = store.begin_episode()
    writer.extend({"timestamp": np.arange(3) * 0.01, "front_image": steps[:3]})
    writer.extend({"timestamp": 0.03 + np.arange(5) * 0.01, "front_image": steps[3:]})
    writer.commit()
    np.testing.assert_array_equal(EpisodeStore(tmp_path / "r").episode(0)["front_image"], steps)
    chunks = sorted((tmp_path / "r" / "data" / "front_image" / "c").iterdir(), key=lambda p: int(p.name))
    assert len(chunks) == 8
