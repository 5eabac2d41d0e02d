"""What an image policy sees of a camera frame, and the training images prepared once into memory.

``prepare_images`` is the one definition: crop the camera's region of interest (the robot profile's
``cameras[].roi``, recorded in the policy's ``obs.rois``), then resize (antialiased) to
``obs.image_size``. The dataset applies it once per recorded frame when a store is loaded
(``load_images``: decoded, cropped and resized in chunks on a few threads, kept as uint8 NHWC, which
the encoders read as channels-last); the policy applies it to every live frame at inference, in-process
and in ``policy_server`` alike.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from robot_stack.errors import UserError
from robot_stack.policies.diffusion.vision import resize_images

Roi = tuple[int, int, int, int]


def crop_roi(images: torch.Tensor, roi: Roi | None, camera: str = "") -> torch.Tensor:
    """uint8 (..., H, W, 3) -> the region ``roi`` = (x, y, width, height); one line naming the fix if it does not fit."""
    if roi is None:
        return images
    x, y, w, h = roi
    height, width = images.shape[-3], images.shape[-2]
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise UserError(f"camera {camera or '?'}: region of interest [x, y, width, height] = {list(roi)} does not lie inside "
                        f"its {width}x{height} image; fix cameras[].roi in the robot profile (or the camera's resolution)")
    return images[..., y:y + h, x:x + w, :]


def prepare_images(images: torch.Tensor, roi: Roi | None, size: tuple[int, int], camera: str = "") -> torch.Tensor:
    """uint8 (..., H, W, 3) camera frames -> uint8 (..., size[0], size[1], 3): region of interest, then resize."""
    return resize_images(crop_roi(images, roi, camera), size)


def load_images(arr, runs: list[tuple[int, int]], size: tuple[int, int], roi: Roi | None, label: str, camera: str = "",
                chunk: int = 64, threads: int | None = None) -> np.ndarray:  # a zarr array
    """Frames ``[a, b)`` of ``arr`` (T, H, W, 3) for each (a, b) in ``runs``, prepared once: (n, h, w, 3) uint8.

    Chunks are decoded and prepared on ``threads`` threads (default: the CPU count, at most 4; the JPEG
    decoder and torch release the GIL), each writing its own rows of the output."""
    total = sum(b - a for a, b in runs)
    out = np.empty((total, *size, 3), np.uint8)
    if total == 0:
        return out
    if arr.shape[-3:-1] and roi is not None:  # one clear line before any decoding
        crop_roi(torch.empty((0, *arr.shape[1:]), dtype=torch.uint8), roi, camera)

    def work(job: tuple[int, int, int]) -> int:
        source, stop, row = job
        frames = torch.from_numpy(np.asarray(arr[source:stop]))
        out[row:row + len(frames)] = prepare_images(frames, roi, size, camera).numpy()
        return len(frames)

    jobs, row = [], 0  # (first frame, end, first output row) of each chunk
    for a, b in runs:
        for source in range(a, b, chunk):
            jobs.append((source, min(source + chunk, b), row))
            row += jobs[-1][1] - source
    workers = threads or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=total, desc=f"loading {label}", unit="frame", leave=False,
                                                   disable=total <= chunk) as bar:
        for n in pool.map(work, jobs):
            bar.update(n)
    return out
