"""Camera intrinsics from board images (OpenCV ``calibrateCamera``), saved for camera nodes.

The result is written in the camera_calibration_parsers YAML format (``Intrinsics.save``); point the
profile's ``cameras[].intrinsics`` at it and the camera node publishes it in ``camera_info``.
Degenerate captures (too few views, board not found, views nearly identical, unstable focal
length) fail with a one-line ``UserError`` saying what to capture instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from robot_stack.calibration.board import Board
from robot_stack.camera_info import Intrinsics
from robot_stack.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Detection:
    """Board corners found in one image."""

    name: str
    image_points: np.ndarray  # (N, 2) px
    object_points: np.ndarray  # (N, 3) m, board frame


@dataclass
class IntrinsicsResult:
    intrinsics: Intrinsics
    rms: float
    """RMS reprojection error over all corners, px."""
    per_view: dict[str, float]
    """RMS reprojection error per image, px."""
    rejected: list[str] = field(default_factory=list)
    """Images in which the board was not found."""
    std_fx: float = 0.0
    """Standard deviation of the fx estimate, px."""

    def summary(self) -> str:
        i = self.intrinsics
        return (f"fx={i.fx:.2f} fy={i.fy:.2f} cx={i.cx:.2f} cy={i.cy:.2f} px, RMS {self.rms:.3f} px over "
                f"{len(self.per_view)} views ({len(self.rejected)} without the board)")


def load_images(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """(file name, RGB image) of every image file in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    out = []
    for p in files:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{p}: not a readable image")
        out.append((p.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB (or gray) image losslessly (PNG)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise UserError(f"{path}: cannot write image")


def detect(images: Iterable[tuple[str, np.ndarray]], board: Board, progress: bool = False) -> tuple[list[Detection], list[str]]:
    """Board detections in named images, and the names of images without the board."""
    found, missing = [], []
    items = list(images)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="detecting board", unit="img")
    for name, image in items:
        hit = board.detect(image)
        if hit is None:
            missing.append(name)
        else:
            corners, ids = hit
            found.append(Detection(name, corners, board.points_for(ids)))
    return found, missing


def solve(detections: Sequence[Detection], image_size: tuple[int, int], board: Board, *, min_views: int = 8,
          rejected: Sequence[str] = (), camera_name: str = "", fix_k3: bool = True,
          min_spread_px: float = 10.0) -> IntrinsicsResult:
    """Intrinsics from board detections in images of ``image_size`` (width, height).

    Raises ``UserError`` for captures that cannot determine the intrinsics.
    """
    width, height = image_size
    total = len(detections) + len(rejected)
    if not detections:
        raise UserError(f"board not found in any of the {total} images: check the board size "
                        f"({board.cols} x {board.rows} squares, not inner corners) and that the whole board is in view")
    if len(detections) < min_views:
        raise UserError(f"only {len(detections)} of {total} images show the board; need at least {min_views} views "
                        "at different positions and tilts")
    spread = _largest_difference(detections)
    if spread < min_spread_px:
        raise UserError(f"all {len(detections)} views show the board in nearly the same place (corners move at most "
                        f"{spread:.1f} px between views): move and tilt the board between captures")
    obj = [d.object_points.astype(np.float32) for d in detections]
    img = [d.image_points.astype(np.float32).reshape(-1, 1, 2) for d in detections]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    rms, K, D, _, _, std_intr, _, per_view = cv2.calibrateCameraExtended(obj, img, (width, height), None, None,
                                                                        flags=flags)
    std_fx = float(std_intr.ravel()[0])
    if not np.isfinite(rms) or std_fx > 0.05 * K[0, 0]:
        raise UserError(f"the views do not pin down the focal length (fx = {K[0, 0]:.0f} +- {std_fx:.0f} px): "
                        "tilt the board by 20-45 degrees in different directions and fill more of the image")
    intr = Intrinsics(width, height, K, D.ravel(), camera_name=camera_name)
    return IntrinsicsResult(intr, float(rms), {d.name: float(e) for d, e in zip(detections, per_view.ravel())},
                            list(rejected), std_fx)


def calibrate(images: Sequence[tuple[str, np.ndarray]], board: Board, *, min_views: int = 8, camera_name: str = "",
              progress: bool = False) -> IntrinsicsResult:
    """Detect the board in ``images`` and solve (all images must have one size)."""
    if not images:
        raise UserError("no images to calibrate from")
    sizes = {im.shape[1::-1] for _, im in images}
    if len(sizes) != 1:
        raise UserError(f"images have different sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}): "
                        "calibrate one camera mode at a time")
    found, missing = detect(images, board, progress)
    return solve(found, sizes.pop(), board, min_views=min_views, rejected=missing, camera_name=camera_name)


def _largest_difference(detections: Sequence[Detection]) -> float:
    """Largest mean corner displacement (px) between any two views with the same corners."""
    best = 0.0
    for i, a in enumerate(detections):
        for b in detections[i + 1:]:
            if a.image_points.shape == b.image_points.shape:
                best = max(best, float(np.linalg.norm(a.image_points - b.image_points, axis=1).mean()))
            else:
                best = max(best, float(np.linalg.norm(a.image_points.mean(0) - b.image_points.mean(0))))
    return best
