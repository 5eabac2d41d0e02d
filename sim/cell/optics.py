"""A real camera's image formation applied to a rendered (ideal pinhole) frame.

``Optics`` turns MuJoCo's ideal image into what a lens and sensor deliver: a lens with its own
focal length, principal point and distortion (one ``cv2.remap`` from the ideal camera into the
real one), exposure, white balance and saturation, a blur over the previous exposure, sensor noise,
and finally the camera's JPEG compression. ``intrinsics`` is the real camera's calibration (what
``robot-stack calibrate intrinsics`` should find).
"""

from __future__ import annotations

import cv2
import numpy as np

from robot_stack.camera_info import Intrinsics
from robot_stack.sim.cell.config import CameraGap


class Optics:
    def __init__(self, gap: CameraGap, ideal: Intrinsics, rng: np.random.Generator):
        self.gap, self.rng = gap, rng
        w, h = ideal.width, ideal.height
        K = ideal.K.copy()
        K[0, 0] *= 1 + gap.focal_error * rng.choice([-1.0, 1.0])
        K[1, 1] = K[0, 0] * ideal.fy / ideal.fx
        angle = rng.uniform(0, 2 * np.pi)
        K[0, 2] += gap.principal_point_px * np.cos(angle)
        K[1, 2] += gap.principal_point_px * np.sin(angle)
        D = np.array(gap.distortion, dtype=float)
        self.intrinsics = Intrinsics(w, h, K, D, camera_name=ideal.camera_name)
        self.maps = None
        if not (np.allclose(K, ideal.K) and not D.any()):
            # for every pixel of the real camera, where its ray falls in the ideal render
            self.maps = cv2.initUndistortRectifyMap(K, D, None, ideal.K, (w, h), cv2.CV_16SC2)
        self.gains = (gap.exposure * np.array(gap.white_balance, dtype=np.float32)).astype(np.float32)
        self.previous: np.ndarray | None = None
        self.encode_params = [cv2.IMWRITE_JPEG_QUALITY, int(gap.jpeg_quality)]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB as rendered -> as the camera sees it."""
        g = self.gap
        if self.maps is not None:
            rgb = cv2.remap(rgb, self.maps[0], self.maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        colour = not (np.allclose(self.gains, 1.0) and g.saturation == 1.0)
        if not (colour or g.motion_blur or g.noise):
            return rgb
        img = rgb.astype(np.float32)
        if colour:
            img *= self.gains
            if g.saturation != 1.0:
                gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
                img = gray[..., None] + g.saturation * (img - gray[..., None])
        if g.motion_blur:
            exposure = img
            if self.previous is not None:
                img = (1 - g.motion_blur) * img + g.motion_blur * self.previous
            self.previous = exposure
        if g.noise:
            # shot noise grows with the signal: sigma at mid-grey is `noise`
            sigma = g.noise * np.sqrt(np.clip(img, 1.0, 255.0) / 128.0)
            img = img + sigma * self.rng.standard_normal(img.shape, dtype=np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def encode(self, rgb: np.ndarray) -> bytes:
        """The frame as the camera's JPEG."""
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.encode_params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()
