"""Write-ahead journal of an episode being recorded: append-only, length + checksum framed records.

File layout (``<store>/journal/<uid>.journal``)::

    b"RSJ1\\n"                                       magic
    <u32 length><u32 crc32 of payload><payload>      records, little-endian, payload = msgpack map

Records: ``{"kind": "begin", ...}`` (episode id, start step, keys, metadata), then
``{"kind": "steps", "n": n, "arrays": {key: [dtype, shape, bytes]}}`` for each batch of steps as
it arrives (low-dimensional keys; camera frames are written to the store's own chunk files), and
``{"kind": "end", "info": {...}}`` when the episode is saved. msgpack, never pickle: reading a
journal cannot run code. A reader stops at the first short or damaged record: a crash mid-append
loses at most that record.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

MAGIC = b"RSJ1\n"
FRAME = struct.Struct("<II")
SUFFIX = ".journal"


def _frame(record: Mapping[str, Any]) -> bytes:
    payload = msgpack.packb(record, use_bin_type=True)
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, list]:
    return {k: [v.dtype.str, list(v.shape), np.ascontiguousarray(v).tobytes()] for k, v in arrays.items()}


def decode_arrays(encoded: Mapping[str, list]) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape) for k, (dtype, shape, data) in encoded.items()}


class JournalWriter:
    """Appends records to a new journal file; ``sync`` makes everything appended so far durable."""

    def __init__(self, path: Path, header: Mapping[str, Any]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._write(MAGIC + _frame({"kind": "begin", **header}))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def append_steps(self, arrays: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(arrays.values()))) if arrays else 0
        self._write(_frame({"kind": "steps", "n": n, "arrays": encode_arrays(arrays)}))

    def append_end(self, info: Mapping[str, Any]) -> None:
        self._write(_frame({"kind": "end", "info": dict(info)}))

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self, remove: bool = False) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
    """(begin record, steps records, end record) of the intact prefix of ``path``; begin is None if the
    file holds no intact begin record."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return None, [], None
    records, pos = [], len(MAGIC)
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        payload = data[pos + FRAME.size: pos + FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            record = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException):
            break
        if not isinstance(record, dict):
            break
        records.append(record)
        pos += FRAME.size + length
    if not records or records[0].get("kind") != "begin":
        return None, [], None
    steps = [r for r in records[1:] if r.get("kind") == "steps"]
    end = next((r for r in records[1:] if r.get("kind") == "end"), None)
    return records[0], steps, end


def _frames_present(store: Any, images: list[str], start: int, n: int) -> int:
    """How many of steps ``start .. start+n`` have every camera frame on disk, intact (checksum), in a row."""
    from robot_stack.data.integrity import _crc_ok, _has_crc
    from robot_stack.data.store import chunk_file

    for key in images:
        try:
            arr = store._root[f"data/{key}"]
        except KeyError:
            return 0
        crc = _has_crc(arr)
        for i in range(n):
            path = chunk_file(store.path, arr, start + i)
            try:
                ok = _crc_ok(path.read_bytes()) if crc else path.is_file()
            except OSError:
                ok = False
            if not ok:
                n = i
                break
    return n


def _set_aside(path: Path, why: str) -> None:
    aside = path.with_name(path.name + ".unused")
    path.replace(aside)
    print(f"robot_stack.data: {aside}: journal not recovered ({why}); kept for inspection", file=sys.stderr)


def recover(store: Any) -> list[int]:
    """Commit what the journals of ``store`` (opened for writing) hold; returns the new episode indices.

    A journal with an end record (the episode was saved and acknowledged, the crash came before its
    commit) is committed as saved. Otherwise its steps up to the last durable one (every frame
    present and intact) become an episode marked ``extra.recovered`` with ``success`` unknown, never
    merged silently into another: ``robot-stack data drop`` removes it. A journal whose episode is
    already committed (a crash after the commit, before the journal was removed) is removed.
    """
    added = []
    committed = {e.get("uid") for e in store._record["episodes"]} - {None, ""}
    for path in sorted(store.pending_journals(), key=lambda p: p.stat().st_mtime):
        begin, steps, end = read_journal(path)
        if begin is None:
            _set_aside(path, "no intact header")
            continue
        if begin.get("uid") in committed:
            path.unlink()
            continue
        if begin.get("start") != store.n_steps:
            _set_aside(path, f"it starts at step {begin.get('start')}, the store has {store.n_steps} committed steps")
            continue
        images = list(begin.get("images", []))
        lowdim: dict[str, list[np.ndarray]] = {}
        for record in steps:
            for key, value in decode_arrays(record["arrays"]).items():
                lowdim.setdefault(key, []).append(value)
        arrays = {k: np.concatenate(v) for k, v in lowdim.items()}
        n = min((len(v) for v in arrays.values()), default=0)
        n = _frames_present(store, images, store.n_steps, n)
        meta = begin.get("meta") or {}
        if n == 0:
            path.unlink()
            print(f"robot_stack.data: {store.path}: an interrupted recording had no durable step; nothing to recover",
                  file=sys.stderr)
            continue
        if end is not None:
            info = dict(end["info"])
        else:
            info = dict(meta.get("info") or {})
            info["success"] = None
            info["extra"] = {**info.get("extra", {}), "recovered": True}
        info.pop("profile", None)
        writer = store.begin_episode()
        try:
            spec = begin["keys"]
            frames = {k: store._ensure_array(k, tuple(spec[k]["shape"]), np.dtype(spec[k]["dtype"])) for k in images}
            writer.restore(arrays, frames, n, begin["uid"], begin.get("started", 0.0))
            index = writer.commit(profile=meta.get("profile"), **info)
        except Exception as err:  # noqa: BLE001 - e.g. keys that differ from the store's: keep the journal
            writer.discard()
            _set_aside(path, f"{type(err).__name__}: {err}")
            continue
        path.unlink()
        added.append(index)
        rate = (info.get("extra") or {}).get("record_rate_hz")
        took = f", {n / rate:.1f} s" if rate else ""
        if end is not None:
            print(f"robot_stack.data: {store.path}: committed saved episode {index} ({n} steps{took}) from its journal "
                  "(the recorder stopped before committing it)", file=sys.stderr)
        else:
            print(f"robot_stack.data: {store.path}: recovered episode {index} ({n} steps{took}) from the journal of a "
                  f"recording interrupted before it was saved; marked recovered, success unknown "
                  f"(robot-stack data drop {store.path} {index} removes it)", file=sys.stderr)
    return added
