"""Camera intrinsics in the camera_calibration_parsers YAML format, and CameraInfo messages.

The YAML layout is the one ROS camera drivers and ``camera_calibration`` read and write::

    image_width: 640
    image_height: 480
    camera_name: front
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    projection_matrix: {rows: 3, cols: 4, data: [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from robot_stack.errors import UserError
from robot_stack.typed_config import load_yaml


@dataclass
class Intrinsics:
    width: int
    height: int
    K: np.ndarray  # (3, 3)
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray | None = None  # (3, 4); defaults to [K | 0]
    camera_name: str = ""

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=float).reshape(3, 3)
        self.D = np.asarray(self.D, dtype=float).ravel()
        self.R = np.asarray(self.R, dtype=float).reshape(3, 3)
        self.P = np.hstack([self.K, np.zeros((3, 1))]) if self.P is None else np.asarray(self.P, dtype=float).reshape(3, 4)

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float, camera_name: str = "") -> Intrinsics:
        """Ideal pinhole intrinsics of a camera with vertical field of view ``fovy_deg`` (MuJoCo's convention)."""
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
        K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
        return cls(width, height, K, camera_name=camera_name)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def to_msg(self, frame_id: str = "", stamp=None):  # rclpy types
        from sensor_msgs.msg import CameraInfo

        msg = CameraInfo()
        if stamp is not None:
            msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.width, msg.height = self.width, self.height
        msg.distortion_model = self.distortion_model
        msg.d = [float(v) for v in self.D]
        msg.k = [float(v) for v in self.K.ravel()]
        msg.r = [float(v) for v in self.R.ravel()]
        msg.p = [float(v) for v in self.P.ravel()]
        return msg

    @classmethod
    def from_msg(cls, msg) -> Intrinsics:  # rclpy type
        return cls(msg.width, msg.height, np.array(msg.k), np.array(msg.d), msg.distortion_model, np.array(msg.r), np.array(msg.p))

    def to_yaml_dict(self) -> dict:
        def matrix(a: np.ndarray) -> dict:
            a = np.atleast_2d(a)
            return {"rows": int(a.shape[0]), "cols": int(a.shape[1]), "data": [float(v) for v in a.ravel()]}

        return {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": self.camera_name,
            "camera_matrix": matrix(self.K),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": matrix(self.D.reshape(1, -1)),
            "rectification_matrix": matrix(self.R),
            "projection_matrix": matrix(self.P),
        }

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(self.to_yaml_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> Intrinsics:
        data = load_yaml(path)
        try:
            def matrix(key: str, shape: tuple[int, ...]) -> np.ndarray:
                values = np.asarray(data[key]["data"], dtype=float)
                if shape and values.size != int(np.prod(shape)):
                    raise UserError(f"{path}: {key}: expected {int(np.prod(shape))} values, got {values.size}")
                return values.reshape(shape) if shape else values

            return cls(
                width=int(data["image_width"]),
                height=int(data["image_height"]),
                K=matrix("camera_matrix", (3, 3)),
                D=matrix("distortion_coefficients", ()),
                distortion_model=str(data.get("distortion_model", "plumb_bob")),
                R=matrix("rectification_matrix", (3, 3)) if "rectification_matrix" in data else np.eye(3),
                P=matrix("projection_matrix", (3, 4)) if "projection_matrix" in data else None,
                camera_name=str(data.get("camera_name", "")),
            )
        except (KeyError, TypeError) as err:
            raise UserError(f"{path}: not a camera_calibration_parsers YAML (missing {err})") from None
