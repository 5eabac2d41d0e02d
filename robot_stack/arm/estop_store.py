"""The e-stop latch on disk, so a driver that restarts (respawn, crash, reboot) starts stopped.

One small JSON file per arm node; engaging writes it durably (temporary file, fsync, rename, fsync of
the folder) before the stop is reported, releasing removes it. Only the ``estop/set`` service releases.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def default_path(node_name: str) -> Path:
    """``$XDG_STATE_HOME/robot_stack/estop/<namespace and node>.json`` (``~/.local/state`` by default)."""
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return root / "robot_stack" / "estop" / (node_name.strip("/").replace("/", "__") + ".json")


class EStopStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> str | None:
        """The reason of a persisted e-stop, or None when released. An unreadable file counts as engaged."""
        try:
            return str(json.loads(self.path.read_text()).get("reason", "persisted e-stop"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError):
            return f"unreadable e-stop file {self.path} (treated as engaged)"

    def save(self, engaged: bool, reason: str = "") -> None:
        if not engaged:
            self.path.unlink(missing_ok=True)
            self._sync_folder()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"reason": reason, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self._sync_folder()

    def _sync_folder(self) -> None:
        if self.path.parent.is_dir():
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
