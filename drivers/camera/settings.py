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
from typing import Any

from rclpy.qos import QoSProfile, ReliabilityPolicy

from robot_stack.contract import IMAGE_QOS
from robot_stack.errors import UserError
from robot_stack.node import declare
from robot_stack.profile import CameraSpec, RobotProfile, load_profile


@dataclass(frozen=True)
class CameraSettings:
    profile: RobotProfile
    """The robot profile with this node's overrides applied to ``spec``."""
    spec: CameraSpec
    qos: QoSProfile
    intrinsics: Path | None
    """Calibration YAML (camera_calibration_parsers format), or None."""


def declare_camera_settings(node: Any) -> CameraSettings:
    """Declare the shared camera parameters on ``node`` and resolve them against the profile."""
    robot = declare(node, "robot", "so101", "robot profile name (config/robots/<name>.yaml) or path")
    camera = declare(node, "camera", "", "profile camera this node serves (default: the profile's first camera)")
    width = declare(node, "width", 0, "image width, px (0: the profile's)")
    height = declare(node, "height", 0, "image height, px (0: the profile's)")
    fps = declare(node, "fps", 0.0, "frame rate, Hz (0: the profile's)")
    intrinsics = declare(node, "intrinsics", "", "calibration YAML overriding the profile's (camera_calibration_parsers format)")
    qos_depth = declare(node, "qos_depth", 0, f"image QoS history depth (0: the contract's, {IMAGE_QOS.depth})")
    reliability = declare(node, "qos_reliability", "", "image QoS reliability: reliable or best_effort (empty: the contract's)")

    profile = load_profile(robot)
    if not profile.cameras:
        raise UserError(f"robot profile {profile.name!r} has no cameras: add one under 'cameras:' in {profile.source}")
    spec = profile.camera(camera or profile.cameras[0].name)
    changes = {k: v for k, v in (("width", width), ("height", height), ("fps", float(fps))) if v}
    if changes:
        try:
            spec = dataclasses.replace(spec, **changes)
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


def declare_text(node: Any, name: str, default: str, description: str, *, numbers_ok: bool = False) -> str:
    """A string parameter that also accepts a number from the command line (``device:=0``).

    With ``numbers_ok=False`` a number is a one-line error instead: serial numbers must be quoted
    (``serial:="'017322071'"``), or YAML turns them into integers and drops leading zeros.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    value = node.declare_parameter(name, default, ParameterDescriptor(description=description, dynamic_typing=True)).value
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if numbers_ok and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise UserError(f"{name}: pass it as a string, e.g. {name}:=\"'{value}'\" (a bare number loses leading zeros)")
