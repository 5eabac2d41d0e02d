"""Datasets: the crash-safe zarr episode store, the recorder node and the ``robot-stack data`` CLI.

Importing this package registers the optional ``robot_stack.jpeg`` zarr codec, so stores recorded
with ``image_codec=jpeg`` read with plain ``zarr.open_group`` afterwards.
"""

from robot_stack.data import jpeg  # noqa: F401  (registers the zarr codec)
from robot_stack.data.store import FORMAT_VERSION, EpisodeInfo, EpisodeStore, EpisodeWriter

__all__ = ["FORMAT_VERSION", "EpisodeInfo", "EpisodeStore", "EpisodeWriter"]
