"""The JSON metadata file of a checkpoint folder (diffusion policy, RL agent, reward classifier)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from robot_stack.errors import UserError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (weights are hashed in every checkpoint and sign-off)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(path: Path, what: str, fmt: str, version: int, hint: str = "") -> dict:
    """Read ``path`` (``<folder>/<meta file>``) of a ``what`` checkpoint: one-line errors for a missing
    file, bad JSON, another format or a newer version."""
    if not path.is_file():
        raise UserError(f"{path.parent}: not a {what} checkpoint (no {path.name}){hint}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a {what} checkpoint's metadata (not UTF-8 text: byte {err.start}); "
                        "give the folder written by training") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise UserError(f"{path}: not a {what} checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version", 0) > version:
        raise UserError(f"{path}: written by a newer robot_stack (checkpoint version {meta['version']}); upgrade")
    return meta
