"""Robot profile: the typed description of one robot that the whole stack is derived from.

A profile names the joints with their limits (REP-103 units: rad, rad/s, N·m; m for prismatic
joints), the gripper, the cameras, the control rate, the controller names and the frames. The
twin and every hardware backend read the same profile, and ``robot_stack.contract`` turns it into
topic names, message types and QoS — so a policy cannot tell sim from hardware.

Profiles live in ``config/robots/<name>.yaml``; ``load_profile("so101")`` or a path loads one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from robot_stack import resources
from robot_stack.errors import UserError
from robot_stack.typed_config import field, from_yaml

IMAGE_ENCODINGS = ("rgb8", "bgr8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "32FC1")


@dataclass(frozen=True)
class JointSpec:
    name: str
    lower: float = field("lower position limit, rad")
    upper: float = field("upper position limit, rad")
    velocity: float = field("velocity limit, rad/s")
    effort: float = field("effort limit, N·m")

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name!r}: lower ({self.lower}) must be below upper ({self.upper})")
        for key in ("velocity", "effort"):
            if not getattr(self, key) > 0:
                raise ValueError(f"joint {self.name!r}: {key} limit must be positive")


@dataclass(frozen=True)
class GripperSpec:
    joint: str = field("gripper joint name")
    open: float = field("joint position when open")
    closed: float = field("joint position when closed")
    effort: float = field("gripper effort (current) limit, N·m")
    controller: str = "gripper_controller"


@dataclass(frozen=True)
class CameraSpec:
    name: str
    width: int = field("image width, px")
    height: int = field("image height, px")
    fps: float = field("frame rate, Hz")
    encoding: str = "rgb8"
    depth: bool = False
    depth_encoding: str = "16UC1"
    intrinsics: str | None = None
    """camera_calibration_parsers YAML (path relative to the profile, or absolute)."""
    frame_id: str = ""
    """Optical frame (z forward, x right, y down). Defaults to ``<name>_color_optical_frame``."""
    sim_camera: str = ""
    """Name of the MJCF camera the twin renders for this camera (defaults to ``name``)."""
    extrinsics: str | None = None
    """Hand-eye calibration YAML (``robot-stack calibrate handeye``): the twin mounts its camera there."""
    roi: tuple[int, int, int, int] | None = None
    """Region of interest ``[x, y, width, height]`` (pixels of this camera's image) that image policies
    see: cropped before resizing, identically in training and at deployment (a checkpoint records it
    and refuses a profile whose region differs). None: the whole image."""

    def __post_init__(self) -> None:
        if self.encoding not in IMAGE_ENCODINGS:
            raise ValueError(
                f"camera {self.name!r}: unknown encoding {self.encoding!r} (use one of {', '.join(IMAGE_ENCODINGS)})"
            )
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(
                f"camera {self.name!r}: unknown depth_encoding {self.depth_encoding!r} "
                f"(use one of {', '.join(DEPTH_ENCODINGS)})"
            )
        if self.width <= 0 or self.height <= 0 or not self.fps > 0:
            raise ValueError(f"camera {self.name!r}: width, height and fps must be positive")
        if self.roi is not None:
            x, y, w, h = self.roi
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
                raise ValueError(f"camera {self.name!r}: roi [x, y, width, height] = {list(self.roi)} must have a positive "
                                 f"size and lie inside the {self.width}x{self.height} image (x + width <= {self.width}, "
                                 f"y + height <= {self.height})")
        if not self.frame_id:
            object.__setattr__(self, "frame_id", f"{self.name}_color_optical_frame")
        if not self.sim_camera:
            object.__setattr__(self, "sim_camera", self.name)

    def at_resolution(self, width: int, height: int) -> CameraSpec:
        """This camera streaming ``width`` x ``height`` (same field of view): its region of interest scaled along."""
        roi = self.roi
        if roi is not None:
            sx, sy = width / self.width, height / self.height
            roi = (int(roi[0] * sx), int(roi[1] * sy), max(1, int(roi[2] * sx)), max(1, int(roi[3] * sy)))
        return dataclasses.replace(self, width=width, height=height, roi=roi)


@dataclass(frozen=True)
class ControlSpec:
    rate_hz: float = 100.0
    """Joint-state publishing and command interpolation rate."""
    policy_rate_hz: float = 10.0
    controller: str = "arm_controller"
    """ros2_control controller name: commands go to ``<controller>/joint_trajectory`` and ``/commands``."""
    watchdog_periods: int = 10
    """Commands older than this many control periods are stale: the arm holds (or goes limp)."""
    on_stale: Literal["hold", "torque_off"] = "hold"

    def __post_init__(self) -> None:
        if not self.rate_hz > 0 or not self.policy_rate_hz > 0:
            raise ValueError("control rates must be positive")
        if self.watchdog_periods < 1:
            raise ValueError("watchdog_periods must be at least 1")


@dataclass(frozen=True)
class FrameSpec:
    world: str = "world"
    base: str = "base_link"
    end_effector: str = "ee_link"


@dataclass(frozen=True)
class WorkspaceSpec:
    """Axis-aligned box (m, in the base frame) that Cartesian targets and motions stay in, and a floor plane."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    floor: float | None = field("height (m, base frame) the end effector never goes below, whatever the command "
                                "(e.g. the table top); none: no floor", default=None)

    def __post_init__(self) -> None:
        if not all(lo < hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError("workspace lower must be below upper on every axis")


@dataclass(frozen=True)
class SimSpec:
    """How the MuJoCo twin builds this robot."""

    mjcf: str = field("MJCF path: absolute, relative to the profile, or 'pkg://<python package>/<path>'")
    ee_site: str = field("MJCF site at the tool centre point")
    base_body: str = ""
    """MJCF body that carries the base frame (defaults to the model's world frame)."""
    home: tuple[float, ...] = ()
    """Joint positions (profile order, arm joints then gripper) to reset to."""


@dataclass(frozen=True)
class HardwareSpec:
    """How the hardware backend reaches this robot (ignored by the twin)."""

    backend: Literal["dynamixel", "feetech", "ros2_control"] = "ros2_control"
    port: str = "/dev/ttyUSB0"
    baudrate: int = 1_000_000
    ids: tuple[int, ...] = ()
    """Servo IDs in profile order (arm joints then gripper); servo buses only."""
    models: tuple[str, ...] = ()
    """Servo model names in profile order (e.g. 'xl330-m288', 'sts3215'); servo buses only."""
    calibration: str | None = None
    """Joint calibration file (offsets, directions, ranges), relative to the profile or absolute."""


@dataclass(frozen=True)
class RobotProfile:
    name: str
    joints: tuple[JointSpec, ...] = field("arm joints with limits, base to tip")
    gripper: GripperSpec | None = None
    cameras: tuple[CameraSpec, ...] = ()
    control: ControlSpec = ControlSpec()
    frames: FrameSpec = FrameSpec()
    workspace: WorkspaceSpec | None = None
    sim: SimSpec | None = None
    hardware: HardwareSpec = HardwareSpec()
    source: str = ""
    """Where the profile was loaded from (set by load_profile)."""

    def __post_init__(self) -> None:
        if not self.joints:
            raise ValueError("joints: a profile needs at least one joint")
        names = [j.name for j in self.joints] + ([self.gripper.joint] if self.gripper else [])
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"joints: duplicate joint name {duplicates[0]!r}")
        cams = [c.name for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise ValueError("cameras: camera names must be unique")
        if self.sim and self.sim.home and len(self.sim.home) != len(names):
            raise ValueError(f"sim.home: expected {len(names)} values (arm joints then gripper), got {len(self.sim.home)}")
        n_hw = len(self.hardware.ids)
        if n_hw and n_hw != len(names):
            raise ValueError(f"hardware.ids: expected {len(names)} servo IDs (arm joints then gripper), got {n_hw}")

    # -- derived views -------------------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        """Arm joint names, base to tip (the order of every joint array in the stack)."""
        return [j.name for j in self.joints]

    @property
    def all_joint_names(self) -> list[str]:
        """Arm joints followed by the gripper joint: the order of ``joint_states``."""
        return self.joint_names + ([self.gripper.joint] if self.gripper else [])

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints])

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints])

    @property
    def velocity_limits(self) -> np.ndarray:
        return np.array([j.velocity for j in self.joints])

    @property
    def control_period(self) -> float:
        return 1.0 / self.control.rate_hz

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise UserError(
            f"robot profile {self.name!r} has no camera {name!r} (cameras: {', '.join(self.camera_names) or 'none'})"
        )

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def resolve(self, relative: str) -> Path:
        """A path named in the profile, relative to the profile file's folder."""
        return resources.resolve_path(relative, Path(self.source).parent if self.source else Path.cwd())

    def with_cameras(self, names: list[str]) -> RobotProfile:
        """This profile restricted to the named cameras (``cameras:=front,wrist``)."""
        return dataclasses.replace(self, cameras=tuple(self.camera(n) for n in names))


def load_profile(name_or_path: str | Path) -> RobotProfile:
    """Load a robot profile by name (``so101``, ``panda``) or by YAML path."""
    path = resources.find_config("robots", str(name_or_path))
    profile = from_yaml(RobotProfile, path)
    return dataclasses.replace(profile, source=str(path))
