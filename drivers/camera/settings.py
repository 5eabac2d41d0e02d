"""Parameters every camera node shares: which profile camera it serves, with per-node overrides.

``robot`` (profile name or path) and ``camera`` (a camera of that profile) select the
:class:`~robot_stack.profile.CameraSpec`; ``width``/``height``/``fps``/``intrinsics`` override it
(0 or "" keep the profile's value). Image QoS comes from the contract unless ``qos_depth`` /
``qos_reliability`` say otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rclpy.qos import QoSProfile, ReliabilityPolicy

from robot_stack.contract import IMAGE_QOS
from robot_stack.errors import UserError
from robot_stack.typed_config import field
from robot_stack.profile import CameraSpec, RobotProfile, load_profile


@dataclass(frozen=True)
class CameraSettings:
    profile: RobotProfile
    """The robot profile with this node's overrides applied to ``spec``."""
    spec: CameraSpec
    qos: QoSProfile
    intrinsics: Path | None
    """Calibration YAML (camera_calibration_parsers format), or None."""


@dataclass(frozen=True)
class CameraOptions:
    """The parameters every camera node shares (``read_options`` reads them, one parameter per field)."""

    robot: str = field("robot profile name (config/robots/<name>.yaml) or path", default="so101")
    camera: str = field("profile camera this node serves (default: the profile's first camera)", default="")
    width: int = field("image width, px (0: the profile's)", default=0)
    height: int = field("image height, px (0: the profile's)", default=0)
    fps: float = field("frame rate, Hz (0: the profile's)", default=0.0)
    intrinsics: str = field("calibration YAML overriding the profile's (camera_calibration_parsers format)", default="")
    qos_depth: int = field(f"image QoS history depth (0: the contract's, {IMAGE_QOS.depth})", default=0)
    qos_reliability: str = field("image QoS reliability: reliable or best_effort (empty: the contract's)", default="")


def camera_settings(options: CameraOptions) -> CameraSettings:
    """Resolve a camera node's options against its robot profile."""
    robot, camera, width, height, fps = options.robot, options.camera, options.width, options.height, options.fps
    intrinsics, qos_depth, reliability = options.intrinsics, options.qos_depth, options.qos_reliability
    profile = load_profile(robot)
    if not profile.cameras:
        raise UserError(f"robot profile {profile.name!r} has no cameras: add one under 'cameras:' in {profile.source}")
    spec = profile.camera(camera or profile.cameras[0].name)
    try:
        if width or height:  # the region of interest scales along (pixels of the profile's resolution)
            spec = spec.at_resolution(width or spec.width, height or spec.height)
        if fps:
            spec = dataclasses.replace(spec, fps=float(fps))
    except ValueError as err:
        raise UserError(f"camera parameters: {err}") from None
    profile = dataclasses.replace(profile, cameras=tuple(spec if c.name == spec.name else c for c in profile.cameras))

    qos = QoSProfile(
        history=IMAGE_QOS.history, depth=qos_depth or IMAGE_QOS.depth, reliability=IMAGE_QOS.reliability,
        durability=IMAGE_QOS.durability,
    )
    if reliability:
        policies = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
        if reliability not in policies:
            raise UserError(f"qos_reliability: {reliability!r} is not one of reliable, best_effort")
        qos.reliability = policies[reliability]
    if qos_depth < 0:
        raise UserError(f"qos_depth: must be positive, got {qos_depth}")

    calib = None
    if intrinsics:
        calib = Path(intrinsics).expanduser()
    elif spec.intrinsics:
        calib = profile.resolve(spec.intrinsics)
    if calib is not None and not calib.is_file():
        raise UserError(f"camera {spec.name!r}: intrinsics file {calib} not found (fix the path or calibrate the camera)")
    return CameraSettings(profile=profile, spec=spec, qos=qos, intrinsics=calib)
