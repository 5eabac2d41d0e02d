"""The field's own readers open our files with no robot_stack installed.

* MCAP export: ``rosbags`` 0.11 deserialises every message, ``rosbags-convert`` converts it to a ROS 1 bag,
  the ``mcap`` reader reads it.
* Store images (JPEG, codec ``imagecodecs_jpeg``): a generic zarr 3 reader (zarr 3.4.2 + imagecodecs-zarr,
  Python 3.12, ``.venv-zarr3``) opens the store with ``zarr.open`` alone.
* ``data export --format zarr2``: opened the way diffusion_policy's ``ReplayBuffer.copy_from_path`` opens a
  store, on its pinned zarr 2.12.0 / numcodecs 0.10.2 / imagecodecs 2022.9.26 (``.venv-zarr2``). diffusion_policy
  is not on PyPI and nothing is fetched here: the script below repeats copy_from_path's calls (``zarr.open``,
  ``zarr.copy_store`` of ``/meta`` and of each ``/data/<key>`` into a ``MemoryStore``, ReplayBuffer's shape
  assertions) and decodes JPEG chunks with ``imagecodecs.jpeg_decode`` into the squeezed output buffer, as the
  codec that diffusion_policy registers (``codecs/imagecodecs_numcodecs.py``) does.

The two venvs come from ``scripts/zarr_venvs.sh``; without them those tests skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.store import EpisodeStore
from test_data_bag import store_path  # noqa: F401 - the fixture: a store with a full robot profile
from test_data_store import make_episode

REPO = Path(__file__).resolve().parent.parent
ZARR2 = REPO / ".venv-zarr2" / "bin" / "python"
ZARR3 = REPO / ".venv-zarr3" / "bin" / "python"


def _bags(store: Path, out: Path) -> list[Path]:
    assert main(["data", "export", str(store), str(out), "--format", "mcap"]) == 0
    return sorted(out.iterdir())


def test_rosbags_reads_every_message_of_the_mcap_export(store_path: Path, tmp_path: Path) -> None:  # noqa: F811
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    store = EpisodeStore(store_path)
    for episode, bag in enumerate(_bags(store_path, tmp_path / "bags")):
        counts: dict[str, int] = {}
        with Reader(bag) as reader:
            for conn, _, raw in reader.messages():
                msg = typestore.deserialize_cdr(raw, conn.msgtype)  # "CDR message size mismatch" before
                counts[conn.topic] = counts.get(conn.topic, 0) + 1
                if conn.topic == "/joint_states":
                    assert len(msg.position) == 6 and len(msg.effort) == 0
        n = store.episodes[episode].length
        assert counts["/joint_states"] == n and counts["/front/color/image_raw"] == n, counts
        first = store.episode(episode)["joint_pos"][0]
        with Reader(bag) as reader:
            conn = next(c for c in reader.connections if c.topic == "/joint_states")
            msg = typestore.deserialize_cdr(next(reader.messages([conn]))[2], conn.msgtype)
        np.testing.assert_array_equal(msg.position, first.astype(np.float64))
        with open(next(bag.glob("*.mcap")), "rb") as f:  # the mcap reader reads everything too
            assert sum(1 for _ in make_reader(f).iter_messages()) == sum(counts.values())


def test_rosbags_convert_writes_a_ros1_bag(store_path: Path, tmp_path: Path) -> None:  # noqa: F811
    from rosbags.rosbag1 import Reader
    from rosbags.typesys import Stores, get_typestore

    bag = _bags(store_path, tmp_path / "bags")[0]
    out = tmp_path / "episode0.bag"
    convert = Path(sys.executable).parent / "rosbags-convert"
    proc = subprocess.run([str(convert), "--src", str(bag), "--dst", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    typestore = get_typestore(Stores.ROS1_NOETIC)
    n = EpisodeStore(store_path).episodes[0].length
    with Reader(out) as reader:
        joints = [typestore.deserialize_ros1(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == "/joint_states"]
        images = [c for c, _, _ in reader.messages() if c.topic == "/front/color/image_raw"]
    assert len(joints) == n and len(images) == n
    np.testing.assert_array_equal(joints[0].position, EpisodeStore(store_path).episode(0)["joint_pos"][0].astype(np.float64))
    assert out.stat().st_size > n * 24 * 32 * 3  # every frame in it: not the broken 4 KB bag of before


@pytest.fixture
def jpeg_store(tmp_path: Path) -> Path:
    store = EpisodeStore(tmp_path / "jpeg.zarr", "a", image_codec="jpeg", fsync=False)
    for i in range(3):
        store.append_episode(make_episode(i, 20 + i, image_shape=(48, 64, 3)), task="pick", profile={"name": "so101"})
    return tmp_path / "jpeg.zarr"


GENERIC_ZARR3 = textwrap.dedent("""
    import json, sys, zarr, numpy as np
    root = zarr.open(sys.argv[1], mode="r")          # no robot_stack: imagecodecs-zarr provides imagecodecs_jpeg
    data = root["data"]
    out = {k: data[k][:] for k in data.array_keys()}
    out["episode_ends"] = root["meta/episode_ends"][:]
    np.savez(sys.argv[2], **out)
    print(json.dumps({"zarr": zarr.__version__, "codec": type(data["front_image"].metadata.codecs[0]).__module__}))
""")


@pytest.mark.skipif(not ZARR3.exists(), reason="no .venv-zarr3 (run scripts/zarr_venvs.sh)")
def test_generic_zarr3_reader_opens_a_jpeg_store(jpeg_store: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(ZARR3), "-c", GENERIC_ZARR3, str(jpeg_store), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert info["zarr"].startswith("3.") and info["codec"] == "imagecodecs.zarr"
    got = np.load(tmp_path / "out.npz")
    store = EpisodeStore(jpeg_store)
    np.testing.assert_array_equal(got["episode_ends"], store.episode_ends)
    for key in store.keys:  # the same pixels as robot_stack decodes (libjpeg-turbo both)
        np.testing.assert_array_equal(got[key], store.array(key)[: store.n_steps], err_msg=key)


REPLAY_BUFFER = textwrap.dedent("""
    import json, os, sys, imagecodecs, numcodecs, numpy as np, zarr
    from numcodecs.abc import Codec
    from numcodecs.registry import register_codec

    class Jpeg(Codec):  # decodes as diffusion_policy's registered imagecodecs_jpeg: into the squeezed output
        codec_id = "imagecodecs_jpeg"
        def __init__(self, level=None, **kwargs):
            self.level = level
        def encode(self, buf):
            return imagecodecs.jpeg_encode(np.squeeze(buf), level=self.level)
        def decode(self, buf, out=None):
            if out is None:
                return imagecodecs.jpeg_decode(buf)
            imagecodecs.jpeg_decode(buf, out=np.squeeze(out, axis=0) if out.shape[0] == 1 else out)
            return out

    register_codec(Jpeg)
    # ReplayBuffer.copy_from_path(path, store=zarr.MemoryStore())
    group = zarr.open(os.path.expanduser(sys.argv[1]), "r")
    src_store = group.store
    src_root = zarr.group(src_store)
    store = zarr.MemoryStore()
    root = zarr.group(store=store)
    zarr.copy_store(source=src_store, dest=store, source_path="/meta", dest_path="/meta", if_exists="replace")
    root.create_group("data", overwrite=True)
    for key in src_root["data"].keys():
        path = "/data/" + key
        zarr.copy_store(source=src_store, dest=store, source_path=path, dest_path=path, if_exists="replace")
    # ReplayBuffer.__init__
    assert "data" in root and "meta" in root and "episode_ends" in root["meta"]
    for key, value in root["data"].items():
        assert value.shape[0] == root["meta"]["episode_ends"][-1], key
    out = {k: v[:] for k, v in root["data"].items()}
    out["episode_ends"] = root["meta"]["episode_ends"][:]
    np.savez(sys.argv[2], **out)
    print(json.dumps({"zarr": zarr.__version__, "numcodecs": numcodecs.__version__, "imagecodecs": imagecodecs.__version__,
                      "compressors": {k: v.compressor.codec_id for k, v in root["data"].items()}}))
""")


@pytest.mark.parametrize("codec", ["jpeg", "blosc"])
def test_zarr2_export_opens_like_diffusion_policy_replay_buffer(codec: str, tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s.zarr", "a", image_codec=codec, fsync=False)
    for i in range(4):
        store.append_episode(make_episode(i, 15 + 3 * i, image_shape=(48, 64, 3)), task="pick", profile={"name": "so101"})
    out = tmp_path / "dp.zarr"
    assert main(["data", "export", str(tmp_path / "s.zarr"), str(out), "--format", "zarr2", "--episodes", "1-3"]) == 0
    source = EpisodeStore(tmp_path / "s.zarr")
    expected = {k: np.concatenate([source.episode(e)[k] for e in (1, 2, 3)]) for k in source.keys}
    # robot_stack's own importer reads it back (zarr 3 reading format 2, JPEG through numcodecs)
    assert main(["data", "import", str(out), str(tmp_path / "back.zarr")]) == 0
    back = EpisodeStore(tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.episode_ends, [18, 39, 63])
    for key, value in expected.items():
        np.testing.assert_array_equal(back.array(key)[:], value, err_msg=key)  # exact: chunks copied, not re-encoded
    if not ZARR2.exists():
        pytest.skip("no .venv-zarr2 (run scripts/zarr_venvs.sh)")
    proc = subprocess.run([str(ZARR2), "-c", REPLAY_BUFFER, str(out), str(tmp_path / "dp.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert (info["zarr"], info["numcodecs"], info["imagecodecs"]) == ("2.12.0", "0.10.2", "2022.9.26")
    assert info["compressors"]["front_image"] == ("imagecodecs_jpeg" if codec == "jpeg" else "blosc")
    got = np.load(tmp_path / "dp.npz")
    np.testing.assert_array_equal(got["episode_ends"], [18, 39, 63])
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_stores_with_the_older_jpeg_codec_name_still_read(jpeg_store: Path) -> None:
    meta_path = jpeg_store / "data" / "front_image" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [{"name": "robot_stack.jpeg", "configuration": {"quality": 95}}, {"name": "crc32c"}]
    before = EpisodeStore(jpeg_store).array("front_image")[:]
    meta_path.write_text(json.dumps(meta))
    after = EpisodeStore(jpeg_store)
    np.testing.assert_array_equal(after.array("front_image")[:], before)
    assert after.verify().ok
