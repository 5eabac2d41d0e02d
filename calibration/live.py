"""Live capture over the contract: camera images, joint states and commands of any robot (twin or hardware).

``LiveStreams`` runs a small rclpy node on a background thread that keeps the latest image of one
camera and the latest joint state (topic names, types and QoS from ``Contract``), and can record
them with their stamps. The capture loops here feed the same solvers as the offline files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile


class LiveStreams:
    def __init__(self, profile: RobotProfile, camera: str | None = None, *, joints: bool = True,
                 commands: bool = False, node_name: str = "calibration_capture"):
        from robot_stack.resources import apply_ros_environment

        apply_ros_environment()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from robot_stack import convert
        from robot_stack.contract import Contract

        self.profile, self.camera = profile, camera
        self._convert = convert
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(node_name, context=self.context)
        contract = Contract(profile)
        self.lock = threading.Lock()
        self.image: np.ndarray | None = None
        self.image_stamp = 0.0
        self.position: np.ndarray | None = None
        self.joint_stamp = 0.0
        self.frames: list[tuple[float, np.ndarray]] | None = None
        self.joint_log: list[tuple[float, np.ndarray]] | None = None
        self.frame_hook: Callable[[np.ndarray], np.ndarray] | None = None
        self._names = profile.joint_names
        self._want_joints = joints
        if camera is not None:
            contract.subscription(self.node, contract.camera(profile.camera(camera).name).image, self._on_image)
        if joints:
            contract.subscription(self.node, contract.joint_states, self._on_joints)
        self.command_pub = contract.publisher(self.node, contract.joint_commands) if commands else None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    # -- callbacks -------------------------------------------------------------------------------------
    def _on_image(self, msg) -> None:  # rclpy type
        try:
            array = self._convert.image_rgb(msg)
        except Exception:  # noqa: BLE001 - a bad message is skipped, not fatal
            return
        stamp = self._convert.to_sec(msg.header.stamp)
        with self.lock:
            if self.frames is not None and self.frame_hook is not None:
                self.frames.append((stamp, self.frame_hook(array)))
            self.image, self.image_stamp = np.array(array), stamp

    def _on_joints(self, msg) -> None:  # rclpy type
        try:
            position, _, _ = self._convert.joint_state_arrays(msg, self._names)
        except Exception:  # noqa: BLE001
            return
        stamp = self._convert.to_sec(msg.header.stamp)
        with self.lock:
            self.position, self.joint_stamp = position, stamp
            if self.joint_log is not None:
                self.joint_log.append((stamp, position))

    # -- access ----------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait for the first image (if a camera is set) and joint state (if subscribed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                ok = (self.camera is None or self.image is not None) and (not self._want_joints or self.position is not None)
            if ok:
                return
            time.sleep(0.05)
        what = f"camera {self.camera!r} images" if self.camera and self.image is None else "joint_states"
        raise UserError(f"no {what} within {timeout:g} s: is the robot (or twin) running in this ROS domain "
                        "and namespace?")

    def latest(self) -> tuple[np.ndarray | None, float, np.ndarray | None, float]:
        with self.lock:
            return self.image, self.image_stamp, self.position, self.joint_stamp

    def publish_command(self, position: np.ndarray) -> None:
        from std_msgs.msg import Float64MultiArray

        assert self.command_pub is not None
        self.command_pub.publish(Float64MultiArray(data=[float(v) for v in position]))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def capture_views(streams: LiveStreams, board, n: int, *, with_joints: bool, timeout: float = 300.0,
                  min_motion_px: float = 25.0, min_joint_change: float = 0.05, still_for: float = 0.3,
                  on_view: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keep a view whenever the board is seen somewhere new (and, for hand-eye, the arm has moved to a new
    pose and stays still); returns images (and joint angles) once ``n`` views are kept."""
    images: list[np.ndarray] = []
    joints: list[np.ndarray] = []
    kept_corners: list[np.ndarray] = []
    last_q, still_since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    last_stamp = -1.0
    while len(images) < n:
        if time.monotonic() > deadline:
            raise UserError(f"only {len(images)} of {n} views captured in {timeout:g} s: move the board "
                            "(or the arm) to new places with the whole board in view")
        image, stamp, q, _ = streams.latest()
        if image is None or stamp == last_stamp:
            time.sleep(0.02)
            continue
        last_stamp = stamp
        if with_joints:
            if q is None:
                continue
            if last_q is None or np.max(np.abs(q - last_q)) > 0.002:
                last_q, still_since = q, time.monotonic()
                continue
            if time.monotonic() - still_since < still_for:
                continue
            if joints and min(np.max(np.abs(q - j)) for j in joints) < min_joint_change:
                continue
        hit = board.detect(image)
        if hit is None:
            continue
        corners = hit[0]
        if not with_joints and kept_corners and min(
                float(np.linalg.norm(corners.mean(0) - c.mean(0))) + abs(_spread(corners) - _spread(c))
                for c in kept_corners) < min_motion_px:
            continue
        kept_corners.append(corners)
        images.append(image)
        if with_joints:
            joints.append(q.copy())
        if on_view is not None:
            on_view(len(images))
    return images, joints


def _spread(corners: np.ndarray) -> float:
    return float(np.linalg.norm(corners - corners.mean(0), axis=1).mean())


def record_step_motion(streams: LiveStreams, joint: int, amplitude: float, duration: float, *,
                       rate_hz: float = 100.0, frame_width: int = 80):
    """Command smooth steps of one arm joint around its current position and record commands, joint
    states and (small gray) camera frames with their stamps. Returns a ``latency.Recording``."""
    from robot_stack.calibration.latency import Recording, downsample, step_profile

    streams.wait_ready()
    _, _, start, _ = streams.latest()
    assert start is not None
    lo, hi = streams.profile.lower[joint], streams.profile.upper[joint]
    if not (lo <= start[joint] - amplitude and start[joint] + amplitude <= hi):
        raise UserError(f"joint {streams.profile.joint_names[joint]!r} at {start[joint]:+.2f} rad cannot move "
                        f"+-{amplitude} rad within its limits [{lo:+.2f}, {hi:+.2f}]: move it nearer the middle")
    t_profile, offsets = step_profile(duration, amplitude)
    with streams.lock:
        streams.frames, streams.joint_log = [], []
        streams.frame_hook = lambda image: downsample(image, frame_width)
    t_cmd, q_cmd = [], []
    t0 = time.monotonic()
    period = 1.0 / rate_hz
    try:
        while (elapsed := time.monotonic() - t0) < duration:
            target = start.copy()
            target[joint] += float(np.interp(elapsed, t_profile, offsets))
            stamp = streams.now()
            streams.publish_command(target)
            t_cmd.append(stamp)
            q_cmd.append(target[joint])
            time.sleep(max(0.0, t0 + (len(t_cmd)) * period - time.monotonic()))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # hold the start pose while the last frames arrive
            streams.publish_command(start)
            time.sleep(period)
    finally:
        with streams.lock:
            frames, log = streams.frames or [], streams.joint_log or []
            streams.frames = streams.joint_log = None
    if len(log) < 10:
        raise UserError("too few joint_states while moving: is the arm publishing?")
    cams = {}
    if streams.camera is not None:
        if len(frames) < 5:
            raise UserError(f"too few images from camera {streams.camera!r} while moving")
        cams[streams.camera] = (np.array([t for t, _ in frames]), np.stack([f for _, f in frames]))
    return Recording(joint, np.array(t_cmd), np.array(q_cmd), np.array([t for t, _ in log]),
                     np.array([q[joint] for _, q in log]), cams)


def default_capture_folder(robot: str, what: str) -> Path:
    return Path("calibration") / "captures" / f"{robot}_{what}_{time.strftime('%Y%m%d-%H%M%S')}"
