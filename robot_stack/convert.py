"""Conversions between ROS 2 messages and numpy, without cv_bridge.

Images go through ``np.frombuffer`` / ``ndarray.tobytes()`` (assigning an array to ``msg.data``
is ~80x slower). Joint arrays are always in the profile's joint order; messages carry names, and
``joint_state_arrays`` reorders by name and rejects missing joints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


class MessageError(ValueError):
    """A message that cannot be used (wrong encoding, size, joint names, NaN...)."""


# -- time ------------------------------------------------------------------------------------------
def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_stamp(seconds: float) -> Time:
    """Seconds -> Time, to the nanosecond (``seconds * 1e9`` in float64 would round to 256 ns at today's epoch
    times, so a stamp would not convert back to the same float)."""
    sec = int(np.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))  # the subtraction is exact
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


# -- images ----------------------------------------------------------------------------------------
def image_to_array(msg: Image) -> np.ndarray:
    """Image message -> (H, W, C) or (H, W) array (a copy-free view when the layout allows)."""
    if msg.encoding not in ENCODINGS:
        raise MessageError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[msg.encoding]
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise MessageError(
            f"image {msg.width}x{msg.height} {msg.encoding}: step {msg.step} / {len(msg.data)} bytes too small"
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    pixels = buf[:, :row_bytes].view(dtype)
    shape = (msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width)
    array = pixels.reshape(shape)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def image_rgb(msg: Image) -> np.ndarray:
    """An rgb8, bgr8 or mono8 Image message as (H, W, 3) uint8 RGB (a policy's, a recorder's, a calibrator's view)."""
    array = image_to_array(msg)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(array[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(array[:, :, None], 3, axis=2)
    if msg.encoding != "rgb8":
        raise MessageError(f"a {msg.encoding} image is not a colour camera image (use rgb8, bgr8 or mono8)")
    return np.ascontiguousarray(array)


def array_to_image(array: np.ndarray, encoding: str, stamp: Time | None = None, frame_id: str = "") -> Image:
    """(H, W[, C]) array -> Image message with the given encoding."""
    if encoding not in ENCODINGS:
        raise MessageError(f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise MessageError(f"{encoding} needs shape (H, W{', %d' % channels if channels > 1 else ''}), got {array.shape}")
    if array.dtype != dtype:
        raise MessageError(f"{encoding} needs dtype {dtype}, got {array.dtype}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


# -- joints ----------------------------------------------------------------------------------------
def joint_state_arrays(msg: JointState, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, velocities and efforts of ``names`` (missing velocity/effort fields -> NaN)."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError(f"joint_states lacks joints {missing} (has {list(msg.name)})")
    order = [index[n] for n in names]

    def pick(values: Sequence[float]) -> np.ndarray:
        if len(values) != len(msg.name):
            return np.full(len(names), np.nan)
        return np.asarray(values, dtype=float)[order]

    return pick(msg.position), pick(msg.velocity), pick(msg.effort)


def make_joint_state(
    names: Sequence[str],
    position: Sequence[float],
    velocity: Sequence[float] | None = None,
    effort: Sequence[float] | None = None,
    stamp: Time | None = None,
) -> JointState:
    msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    msg.velocity = [float(v) for v in velocity] if velocity is not None else []
    msg.effort = [float(v) for v in effort] if effort is not None else []
    return msg


def make_trajectory(
    names: Sequence[str], times: Sequence[float], positions: np.ndarray, stamp: Time | None = None
) -> JointTrajectory:
    """JointTrajectory whose point k is reached ``times[k]`` seconds after ``stamp``."""
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2 or positions.shape != (len(times), len(names)):
        raise MessageError(f"positions must be ({len(times)}, {len(names)}), got {positions.shape}")
    msg = JointTrajectory()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.joint_names = list(names)
    for t, q in zip(times, positions):
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in q]
        ns = int(round(t * 1e9))
        point.time_from_start.sec, point.time_from_start.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.points.append(point)
    return msg


def trajectory_arrays(msg: JointTrajectory, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(times from start (N,), positions (N, len(names))) in ``names`` order; validates the message.

    Joints in ``names`` that the message leaves out are returned as NaN columns, so the caller can
    hold them; unknown joints, NaN/inf values and non-increasing times raise MessageError.
    """
    unknown = [n for n in msg.joint_names if n not in names]
    if unknown:
        raise MessageError(f"trajectory names unknown joints {unknown} (robot joints: {list(names)})")
    if len(set(msg.joint_names)) != len(msg.joint_names):
        raise MessageError("trajectory names a joint twice")
    if not msg.points:
        raise MessageError("trajectory has no points")
    columns = [names.index(n) for n in msg.joint_names]
    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    positions = np.full((len(msg.points), len(names)), np.nan)
    for k, point in enumerate(msg.points):
        if len(point.positions) != len(msg.joint_names):
            raise MessageError(f"trajectory point {k} has {len(point.positions)} positions for {len(msg.joint_names)} joints")
        values = np.asarray(point.positions, dtype=float)
        if not np.all(np.isfinite(values)):
            raise MessageError(f"trajectory point {k} contains NaN or inf")
        positions[k, columns] = values
    if np.any(np.diff(times) <= 0):
        raise MessageError("trajectory time_from_start must increase strictly")
    return times, positions


def command_array(data: Sequence[float], size: int) -> np.ndarray:
    """Validate a Float64MultiArray command (forward_command_controller semantics)."""
    values = np.asarray(data, dtype=float)
    if values.shape != (size,):
        raise MessageError(f"command has {values.size} values, expected {size} (one per joint, profile order)")
    if not np.all(np.isfinite(values)):
        raise MessageError("command contains NaN or inf")
    return values


# -- Cartesian -------------------------------------------------------------------------------------
MAX_POSITION_M = 100.0
"""Largest Cartesian coordinate accepted (m); the workspace box clamps far less, this only keeps arithmetic finite."""
MAX_QUATERNION_COMPONENT = 1e3
MAX_LINEAR_SPEED = 10.0
"""m/s; a twist beyond it is a bad message, not a fast command (the joint velocity limits bound motion anyway)."""
MAX_ANGULAR_SPEED = 10.0 * np.pi
"""rad/s"""


def unit_quaternion(quat: np.ndarray) -> np.ndarray:
    """``quat`` normalised without overflow (scaled by its largest component first); rejects zero and huge ones."""
    quat = np.asarray(quat, dtype=float)
    if not np.all(np.isfinite(quat)):
        raise MessageError("orientation contains NaN or inf")
    largest = float(np.max(np.abs(quat)))
    if largest > MAX_QUATERNION_COMPONENT:
        raise MessageError(f"orientation component {largest:.3g} is not a quaternion (components above "
                           f"{MAX_QUATERNION_COMPONENT:g})")
    if largest < 1e-6:
        raise MessageError("orientation is a zero quaternion")
    scaled = quat / largest
    return scaled / np.linalg.norm(scaled)


def pose_arrays(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion xyzw (4,), normalised); rejects NaN, huge coordinates and bad quaternions."""
    p, o = msg.pose.position, msg.pose.orientation
    pos = np.array([p.x, p.y, p.z])
    if not np.all(np.isfinite(pos)):
        raise MessageError("pose contains NaN or inf")
    if np.max(np.abs(pos)) > MAX_POSITION_M:
        raise MessageError(f"pose position {np.max(np.abs(pos)):.3g} m from the base is out of range "
                           f"(> {MAX_POSITION_M:g} m)")
    return pos, unit_quaternion(np.array([o.x, o.y, o.z, o.w]))


def make_pose(position: Sequence[float], quat_xyzw: Sequence[float], frame_id: str, stamp: Time | None = None) -> PoseStamped:
    msg = PoseStamped()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat_xyzw)
    return msg


def twist_arrays(msg: TwistStamped) -> tuple[np.ndarray, np.ndarray]:
    """(linear (3,) m/s, angular (3,) rad/s); rejects NaN/inf and speeds no arm has."""
    lin, ang = msg.twist.linear, msg.twist.angular
    v, w = np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z])
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
        raise MessageError("twist contains NaN or inf")
    if np.max(np.abs(v)) > MAX_LINEAR_SPEED or np.max(np.abs(w)) > MAX_ANGULAR_SPEED:
        raise MessageError(f"twist beyond {MAX_LINEAR_SPEED:g} m/s or {MAX_ANGULAR_SPEED:.3g} rad/s per axis")
    return v, w


def make_twist(linear: Sequence[float], angular: Sequence[float], frame_id: str, stamp: Time | None = None) -> TwistStamped:
    msg = TwistStamped()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    t = msg.twist
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in linear)
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in angular)
    return msg
