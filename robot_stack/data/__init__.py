"""Datasets: the crash-safe zarr episode store, the recorder node and the ``robot-stack data`` CLI."""

from robot_stack.data.store import FORMAT_VERSION, EpisodeInfo, EpisodeStore, EpisodeWriter

__all__ = ["FORMAT_VERSION", "EpisodeInfo", "EpisodeStore", "EpisodeWriter"]
