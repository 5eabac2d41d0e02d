"""Datasets: the crash-safe zarr episode store, the recorder node and the ``robot-stack data`` CLI.

Importing this package registers the JPEG zarr codec (``imagecodecs_jpeg``, and the older name
``robot_stack.jpeg``), so stores recorded with ``image_codec=jpeg`` read with plain ``zarr.open_group``
afterwards; without robot_stack, ``pip install imagecodecs-zarr`` does the same.
"""

from robot_stack.data import jpeg  # noqa: F401 - (registers the zarr codec)
from robot_stack.data.store import FORMAT_VERSION, EpisodeInfo, EpisodeStore, EpisodeWriter

__all__ = ["FORMAT_VERSION", "EpisodeInfo", "EpisodeStore", "EpisodeWriter"]
