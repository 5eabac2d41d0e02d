"""Integrity of an episode store: which episodes are damaged, and where.

Every array chunk of a store ends in a crc32c checksum (zarr 3's ``crc32c`` codec), so a chunk is
checked by reading its file and comparing the checksum, without decoding it. A missing chunk file
(zarr would read it as zeros), a checksum mismatch, an array shorter than the commit record, an
unreadable array and a ``meta/episode_ends`` that disagrees with the commit record each damage the
episodes whose steps they cover. ``meta/episode_ends`` exactly one commit behind the record is the
trace of a commit interrupted between its two writes, not damage: readers take boundaries from the
commit record, and the next writer rewrites the index.

Stores without checksums (written before they were added, or plain diffusion_policy stores) are
checked by decoding each chunk instead; there a missing chunk cannot be told from a chunk of zeros
(zarr does not write those), so it is not reported.
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One damaged thing: ``where`` (``data/<key>``, ``meta/episode_ends``), ``what`` and the episodes it damages."""

    where: str
    what: str
    episodes: tuple[int, ...]


@dataclass
class Report:
    path: Path
    n_episodes: int
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chunks: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def damaged(self) -> dict[int, list[str]]:
        """Damaged episode -> the places (``data/<key>``...) damaged in it, sorted by episode."""
        out: dict[int, list[str]] = {}
        for p in self.problems:
            for e in p.episodes:
                if p.where not in out.setdefault(e, []):
                    out[e].append(p.where)
        return dict(sorted(out.items()))

    def by_episode(self) -> list[str]:
        """'episodes 3-5: data/front_image, data/timestamp' lines, neighbours with the same damage grouped."""
        lines: list[tuple[list[int], list[str]]] = []
        for episode, places in self.damaged().items():
            if lines and lines[-1][1] == places and lines[-1][0][-1] == episode - 1:
                lines[-1][0].append(episode)
            else:
                lines.append(([episode], places))
        return [f"{'episode' if len(eps) == 1 else 'episodes'} {ranges(eps)}: {', '.join(places)}" for eps, places in lines]

    def summary(self) -> list[str]:
        """One line per damaged place: what, and which episodes (grouped per kind of damage)."""
        grouped: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            grouped.setdefault((p.where, _kind(p.what)), []).append(p)
        lines = []
        for (where, _), problems in grouped.items():
            episodes = sorted({e for p in problems for e in p.episodes})
            what = problems[0].what if len(problems) == 1 else f"{len(problems)} chunks {_kind(problems[0].what)}"
            lines.append(f"{where}: {what} (episodes {ranges(episodes)})")
        return lines


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _kind(what: str) -> str:
    """'chunk 3 (steps 3072-4095) missing' -> 'missing'."""
    return what.rsplit(") ", 1)[-1] if ") " in what else what


def ranges(indices: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    parts, items = [], sorted(set(indices))
    for _, group in itertools.groupby(enumerate(items), lambda p: p[1] - p[0]):
        run = [v for _, v in group]
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


def _crc_ok(data: bytes) -> bool:
    import google_crc32c

    return len(data) >= 4 and struct.pack("<I", google_crc32c.value(data[:-4])) == data[-4:]


def _has_crc(arr: Any) -> bool:
    from zarr.codecs import Crc32cCodec

    codecs = getattr(arr.metadata, "codecs", ())
    return bool(codecs) and isinstance(codecs[-1], Crc32cCodec)


def _episodes_of(ends: np.ndarray, a: int, b: int) -> tuple[int, ...]:
    """Episodes with a step in [a, b)."""
    if b <= a or not len(ends):
        return ()
    first = int(np.searchsorted(ends, a, side="right"))
    last = int(np.searchsorted(ends, b - 1, side="right"))
    return tuple(range(first, min(last, len(ends) - 1) + 1))


def check_array(root: Path, where: str, arr: Any, ends: np.ndarray, steps: Sequence[tuple[int, int]],
                report: Report, checksums: bool = True, bar: Any = None) -> None:
    """Check every chunk of ``arr`` holding a step of ``steps`` (ranges [a, b)); add problems to ``report``."""
    need = int(ends[-1]) if len(ends) else 0
    if arr.shape[0] < need:
        report.problems.append(Problem(where, f"has {arr.shape[0]} steps, the commit record {need}",
                                       _episodes_of(ends, arr.shape[0], need)))
    c0 = arr.chunks[0]
    rest = [range(-(-s // c)) for s, c in zip(arr.shape[1:], arr.chunks[1:])]
    first_chunks = sorted({i for a, b in steps for i in range(a // c0, -(-min(b, arr.shape[0]) // c0))})
    crc = _has_crc(arr)
    folder = root / arr.path
    for i in first_chunks:
        a, b = i * c0, min((i + 1) * c0, need)
        label = f"chunk {i} (step {a})" if b - a == 1 else f"chunk {i} (steps {a}-{b - 1})"
        for coords in itertools.product([i], *rest):
            path = folder / arr.metadata.encode_chunk_key(coords)
            report.chunks += 1
            try:
                data = path.read_bytes() if (crc and checksums) else None
                exists = data is not None or path.is_file()
            except FileNotFoundError:
                exists = False
            except OSError as err:
                report.problems.append(Problem(where, f"{label} unreadable ({err.strerror})", _episodes_of(ends, a, b)))
                break
            if not exists and crc:  # without checksums (older or foreign stores) zarr skips chunks of zeros
                report.problems.append(Problem(where, f"{label} missing", _episodes_of(ends, a, b)))
                break
            if not exists:
                continue
            if data is not None:
                report.bytes += len(data)
                if not _crc_ok(data):
                    report.problems.append(Problem(where, f"{label} checksum mismatch", _episodes_of(ends, a, b)))
                    break
        else:
            if checksums and not crc:  # no checksum stored: the chunk must at least decode
                try:
                    arr[a:b]
                except Exception as err:  # noqa: BLE001 - any decode failure is damage
                    report.problems.append(Problem(where, f"{label} does not decode ({type(err).__name__})",
                                                   _episodes_of(ends, a, b)))
        if bar is not None:
            bar.update(1)


def _steps(ends: np.ndarray, episodes: Iterable[int] | None) -> list[tuple[int, int]]:
    starts = np.concatenate([[0], ends[:-1]]) if len(ends) else np.zeros(0, np.int64)
    chosen = range(len(ends)) if episodes is None else episodes
    return [(int(starts[e]), int(ends[e])) for e in chosen]


def verify_arrays(root: Path, arrays: Mapping[str, Any], ends: np.ndarray, *, episodes: Iterable[int] | None = None,
                  checksums: bool = True, progress: bool = False, report: Report | None = None) -> Report:
    """Check the chunks of ``arrays`` (name -> zarr array) covering ``episodes`` (all by default)."""
    from tqdm import tqdm

    report = report or Report(Path(root), len(ends))
    steps = _steps(ends, episodes)
    total = sum(len({i for a, b in steps for i in range(a // arr.chunks[0], -(-b // arr.chunks[0]))})
                for arr in arrays.values())
    with tqdm(total=total, desc="verifying", unit="chunk", leave=False, disable=not progress or total < 2000,
              file=sys.stderr) as bar:
        for name, arr in arrays.items():
            check_array(Path(root), f"data/{name}", arr, ends, steps, report, checksums, bar)
    return report


def verify(store: Any, *, keys: Iterable[str] | None = None, episodes: Iterable[int] | None = None,
           checksums: bool = True, progress: bool = False) -> Report:
    """Check a :class:`~robot_stack.data.store.EpisodeStore`: commit record, arrays and ``meta/episode_ends``."""
    ends = store.episode_ends
    report = Report(store.path, len(ends))
    lengths = [e.length for e in store.episodes]
    if np.any(np.diff(np.concatenate([[0], ends])) <= 0) or lengths != np.diff(np.concatenate([[0], ends])).tolist():
        report.problems.append(Problem("zarr.json", "commit record inconsistent (episode ends vs lengths)",
                                       tuple(range(len(ends)))))
        return report
    arrays = {}
    for key in keys if keys is not None else store.keys:
        try:
            arrays[key] = store.array(key)
        except Exception as err:  # noqa: BLE001 - unreadable metadata is damage of every episode
            report.problems.append(Problem(f"data/{key}", f"array unreadable ({type(err).__name__})",
                                           tuple(range(len(ends)))))
    verify_arrays(store.path, arrays, ends, episodes=episodes, checksums=checksums, progress=progress, report=report)
    _check_index(store, ends, report)
    if episodes is not None:
        chosen = set(episodes)
        report.problems = [p for p in report.problems if chosen & set(p.episodes)]
    return report


def _check_index(store: Any, ends: np.ndarray, report: Report) -> None:
    """``meta/episode_ends`` against the commit record (the source of truth for every reader here)."""
    where, every = "meta/episode_ends", tuple(range(len(ends)))
    try:
        arr = store.index_array()
        if arr is None:
            if len(ends):
                report.problems.append(Problem(where, "missing", every))
            return
        chunks = Report(report.path, len(ends))
        check_array(store.path, where, arr, np.asarray([arr.shape[0]]), [(0, arr.shape[0])], chunks)
        if chunks.problems:
            report.problems.append(Problem(where, chunks.problems[0].what, every))
            return
        index = np.asarray(arr[:], dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - unreadable metadata or chunk
        report.problems.append(Problem(where, f"unreadable ({type(err).__name__})", every))
        return
    if np.array_equal(index, ends):
        return
    if len(index) == len(ends) - 1 and np.array_equal(index, ends[:-1]):
        report.notes.append(f"{where} is one commit behind the commit record (a commit was interrupted between its "
                            "two writes); readers use the commit record, the next writer rewrites it")
        return
    n = min(len(index), len(ends))
    diff = np.nonzero(index[:n] != ends[:n])[0]
    first = int(diff[0]) if diff.size else n
    report.problems.append(Problem(
        where, f"{len(index)} ends, the commit record {len(ends)}, differing from episode {first} on",
        tuple(range(first, len(ends)))))


def usable_episodes(report: Report, episodes: Sequence[int], *, skip_damaged: bool,
                    hint: str = "--skip-damaged uses the other {n}") -> list[int]:
    """``episodes`` less the damaged ones: a one-line error naming them (ending in ``hint``, where ``{n}`` is
    the number of undamaged episodes and ``{bad}`` the damaged ones), or (``skip_damaged``) a line saying
    how many were skipped."""
    damaged = report.damaged()
    bad = [e for e in episodes if e in damaged]
    if not bad:
        return list(episodes)
    places = ", ".join(sorted({w for e in bad for w in damaged[e]}))
    if not skip_damaged:
        chosen = set(bad)
        problems = [f"{p.where} {p.what}" for p in report.problems if chosen & set(p.episodes)]
        what = "; ".join(problems[:2]) + (f" and {len(problems) - 2} more" if len(problems) > 2 else "")
        tail = hint.format(n=len(episodes) - len(bad), bad=" ".join(ranges(bad).split(", ")))
        raise UserError(f"{report.path}: {plural(len(bad), 'damaged episode')} ({ranges(bad)}): {what}; "
                        f"'robot-stack data verify {report.path}' lists them; {tail}")
    print(f"robot_stack.data: {report.path}: skipping {plural(len(bad), 'damaged episode')} ({ranges(bad)}: {places}); "
          f"using the other {len(episodes) - len(bad)}", file=sys.stderr)
    return [e for e in episodes if e not in damaged]
