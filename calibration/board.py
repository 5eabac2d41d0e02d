"""Calibration targets: a checkerboard (or a ChArUco board), its 3-D corner points and detection.

Board frame: origin at the board centre, x along the ``cols`` direction, y along ``rows``, z into
the board (away from a camera that sees the printed face; OpenCV's convention, right-handed).
``cols`` x ``rows`` count *squares*; OpenCV finds the (cols-1) x (rows-1) inner corners. Use an odd x
even square count (e.g. 9 x 6): the board is then not symmetric under a half turn, and ``detect``
orders the corners the same way in every image (the square between the first two inner corners of
the first two rows is always black), which hand-eye calibration needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from robot_stack.typed_config import field


@dataclass(frozen=True)
class Board:
    cols: int = 9
    """Squares along the board's x axis."""
    rows: int = 6
    """Squares along the board's y axis."""
    square: float = field("square side, m", default=0.02)
    kind: Literal["checkerboard", "charuco"] = "checkerboard"
    marker: float = 0.0
    """ChArUco only: marker side, m (default 0.7 * square)."""
    dictionary: str = "DICT_4X4_50"
    """ChArUco only: cv2.aruco predefined dictionary name."""

    def __post_init__(self) -> None:
        if self.cols < 3 or self.rows < 3:
            raise ValueError("a board needs at least 3 x 3 squares")
        if self.kind == "checkerboard" and (self.cols + self.rows) % 2 == 0:
            raise ValueError(f"a {self.cols} x {self.rows} checkerboard is symmetric under a half turn: "
                             "use an odd number of squares on one side and an even number on the other (e.g. 9 x 6)")
        if not self.square > 0:
            raise ValueError("square must be positive (m)")

    @property
    def pattern(self) -> tuple[int, int]:
        """Inner corners (per row, per column), as OpenCV's ``patternSize``."""
        return self.cols - 1, self.rows - 1

    @property
    def n_corners(self) -> int:
        return (self.cols - 1) * (self.rows - 1)

    def object_points(self) -> np.ndarray:
        """(N, 3) inner-corner positions in the board frame, m, in detection order (row-major)."""
        nx, ny = self.pattern
        i, j = np.meshgrid(np.arange(nx), np.arange(ny))
        x = (i.ravel() - (nx - 1) / 2) * self.square
        y = (j.ravel() - (ny - 1) / 2) * self.square
        return np.stack([x, y, np.zeros_like(x)], axis=1).astype(np.float64)

    def squares(self) -> list[tuple[float, float]]:
        """Centres (board frame, m) of the black squares (the ones ``detect`` expects first)."""
        out = []
        for c in range(self.cols):
            for r in range(self.rows):
                if (c + r) % 2 == 0:
                    out.append(((c - (self.cols - 1) / 2) * self.square, (r - (self.rows - 1) / 2) * self.square))
        return out

    # -- detection -----------------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Sub-pixel corners in ``image`` (gray or RGB/BGR): ((N, 2) pixels, (N,) corner indices), or None."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.kind == "charuco":
            return self._detect_charuco(gray)
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        found, corners = cv2.findChessboardCorners(gray, self.pattern, flags=flags)
        if not found:
            return None
        corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                                   (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)).reshape(-1, 2)
        return self._canonical(gray, corners).astype(np.float64), np.arange(self.n_corners)

    def _canonical(self, gray: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """Corners in the board's own order: rows and columns right-handed in the image (seen from the
        printed side), and the square framed by corners (0, 0)-(1, 1) black."""
        nx, ny = self.pattern
        grid = corners.reshape(ny, nx, 2)
        u, v = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
        if u[0] * v[1] - u[1] * v[0] < 0:
            grid = grid[:, ::-1]

        def shade(g: np.ndarray) -> float:
            x, y = g[:2, :2].reshape(4, 2).mean(axis=0)
            return float(gray[int(round(y)), int(round(x))])

        if shade(grid) > shade(grid[::-1, ::-1]):
            grid = grid[::-1, ::-1]
        return np.ascontiguousarray(grid.reshape(-1, 2))

    def _charuco(self):  # cv2 type
        aruco = cv2.aruco
        dictionary = aruco.getPredefinedDictionary(getattr(aruco, self.dictionary))
        return aruco.CharucoBoard((self.cols, self.rows), self.square, self.marker or 0.7 * self.square, dictionary)

    def _detect_charuco(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        detector = cv2.aruco.CharucoDetector(self._charuco())
        corners, ids, _, _ = detector.detectBoard(gray)
        if ids is None or len(ids) < 6:
            return None
        return corners.reshape(-1, 2).astype(np.float64), ids.ravel().astype(int)

    def charuco_object_points(self, ids: np.ndarray) -> np.ndarray:
        """ChArUco corner positions (board frame, centred like ``object_points``) for corner ``ids``."""
        pts = np.asarray(self._charuco().getChessboardCorners(), dtype=np.float64)
        pts = pts - np.array([self.cols * self.square / 2, self.rows * self.square / 2, 0.0])
        return pts[ids]

    def points_for(self, ids: np.ndarray) -> np.ndarray:
        """Board-frame 3-D points of detected corner ``ids``."""
        return self.charuco_object_points(ids) if self.kind == "charuco" else self.object_points()[ids]

    def image(self, px_per_square: int = 60, margin: int = 1) -> np.ndarray:
        """A printable (uint8, gray) image of the board with a white ``margin`` (in squares)."""
        s = px_per_square
        if self.kind == "charuco":
            size = ((self.cols + 2 * margin) * s, (self.rows + 2 * margin) * s)
            return self._charuco().generateImage(size, marginSize=margin * s)
        img = np.full(((self.rows + 2 * margin) * s, (self.cols + 2 * margin) * s), 255, np.uint8)
        for r in range(self.rows):
            for c in range(self.cols):
                if (c + r) % 2 == 0:
                    img[(r + margin) * s:(r + margin + 1) * s, (c + margin) * s:(c + margin + 1) * s] = 0
        return img
