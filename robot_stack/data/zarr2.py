"""Export episodes as a zarr format 2 ReplayBuffer: what diffusion_policy opens unchanged.

diffusion_policy's ``ReplayBuffer.create_from_path`` / ``copy_from_path`` (zarr 2.12, numcodecs 0.10)
cannot read zarr 3, so this writes the same layout in zarr format 2::

    .zgroup, .zattrs                 attrs["robot_stack_export"]: source store, episodes, keys
    data/<key>/.zarray, <i>.0...     every array exactly sum(lengths) steps long (ReplayBuffer asserts it)
    meta/episode_ends                int64 cumulative ends, one chunk, no compressor (as ReplayBuffer makes it)

Low-dim arrays use numcodecs' Blosc (zstd, lossless). Image chunks are copied byte for byte from
the store, without the checksum: a JPEG store's chunks are plain JPEG files under the numcodecs id
``imagecodecs_jpeg`` (``{"id": "imagecodecs_jpeg", "level": 95}``), the codec diffusion_policy
registers itself from imagecodecs (``register_codecs()``); a lossless store's are Blosc frames
under numcodecs' own ``blosc``. So nothing is re-encoded: the export is exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.data.store import EpisodeStore, chunk_file
from robot_stack.errors import UserError

LOWDIM_CHUNK = 1024


@dataclass
class Zarr2Report:
    episodes: int
    steps: int
    bytes: int


def _image_compressor(arr: Any) -> dict[str, Any]:
    """The zarr 2 (numcodecs) compressor config equal to a one-frame-per-chunk image array's codecs."""
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

    from robot_stack.data.jpeg import is_jpeg

    codecs = [c for c in arr.metadata.codecs if not isinstance(c, Crc32cCodec)]
    if len(codecs) == 1 and is_jpeg(codecs[0]):
        return {"id": "imagecodecs_jpeg", "level": int(codecs[0].to_dict()["configuration"].get("level", 95))}
    if len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec):
        c = codecs[1]
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[c.shuffle.value]
        return {"id": "blosc", "cname": c.cname.value, "clevel": c.clevel, "shuffle": shuffle, "blocksize": c.blocksize}
    raise UserError(f"{arr.path}: image codecs {[c.to_dict()['name'] for c in codecs]} have no zarr 2 equivalent")


def _strip_crc(arr: Any, data: bytes) -> bytes:
    from robot_stack.data.integrity import _has_crc

    return data[:-4] if _has_crc(arr) else data


def export_zarr2(store: EpisodeStore, episodes: Sequence[int], out: Path, progress: bool = True) -> Zarr2Report:
    """Write ``episodes`` of ``store`` to the new folder ``out`` (whole, or not at all)."""
    import numcodecs
    import zarr
    from tqdm import tqdm

    from robot_stack.data.ops import staged_folder

    if not episodes:
        raise UserError(f"{store.path}: no episodes to export")
    slices = [store.episode_slice(e) for e in episodes]
    ends = np.cumsum([s.stop - s.start for s in slices]).astype(np.int64)
    total = int(ends[-1])
    specs = store.keys
    images = [k for k, s in specs.items() if k.endswith("_image") and s["dtype"] == "uint8" and len(s["shape"]) == 3]
    with staged_folder(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        root.attrs["robot_stack_export"] = {"source": str(store.path), "episodes": list(map(int, episodes)),
                                            "keys": specs, "layout": "diffusion_policy ReplayBuffer"}
        root.create_array("meta/episode_ends", data=ends, chunks=(len(ends),), compressors=None)
        data = root.create_group("data")
        bar = tqdm(total=total * len(specs), desc="zarr2 export", unit="step", leave=False, disable=not progress)
        for key, spec in specs.items():
            shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
            src = store.array(key)
            if key in images:
                folder = tmp / "data" / key
                folder.mkdir()
                meta = {"zarr_format": 2, "shape": [total, *shape], "chunks": [1, *shape], "dtype": dtype.str,
                        "compressor": _image_compressor(src), "fill_value": 0, "order": "C", "filters": None,
                        "dimension_separator": "."}
                (folder / ".zarray").write_text(json.dumps(meta, indent=4))
                zeros = ".0" * len(shape)
                i = 0
                for s in slices:
                    for step in range(s.start, s.stop):
                        (folder / f"{i}{zeros}").write_bytes(_strip_crc(src, chunk_file(store.path, src, step).read_bytes()))
                        i += 1
                    bar.update(s.stop - s.start)
                continue
            values = np.concatenate([src[s.start:s.stop] for s in slices]).astype(dtype, copy=False)
            data.create_array(key, data=values, chunks=(LOWDIM_CHUNK, *shape), fill_value=0,
                              compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE))
            bar.update(total)
        bar.close()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return Zarr2Report(episodes=len(episodes), steps=total, bytes=size)
