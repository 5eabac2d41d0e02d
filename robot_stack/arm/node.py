"""ArmNode: the contract's arm interface around any ArmBackend (twin or hardware alike).

Every control period: read the joints, publish ``joint_states`` and ``ee_pose``, take the target
from the latest command (trajectory, forward command, gripper, Cartesian pose or twist), pass it
through ``ArmSafety`` and write it to the backend. Bad commands (unknown joints, NaN, wrong size)
are rejected with a log line and never move the arm. Streamed commands older than
``watchdog_periods`` make the arm hold (or relax, ``on_stale: torque_off``). The e-stop (``estop``
topic, ``estop/set`` service) is latched until released through the service.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from rclpy.node import Node

from robot_stack import convert
from robot_stack.arm.backend import ArmBackend, JointReading
from robot_stack.arm.commands import PoseSource, PositionSource, TrajectorySource, TwistSource
from robot_stack.arm.kinematics import Kinematics
from robot_stack.arm.safety import ArmSafety
from robot_stack.contract import Contract
from robot_stack.convert import MessageError
from robot_stack.profile import RobotProfile


class ArmNode(Node):
    def __init__(self, profile: RobotProfile, backend: ArmBackend, node_name: str = "arm", *,
                 kinematics: Kinematics | None = None, start_timer: bool = True, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.profile, self.backend = profile, backend
        self.contract = Contract(profile)
        self.safety = ArmSafety(profile)
        self.kinematics = kinematics if kinematics is not None else (Kinematics(profile) if profile.sim else None)
        self.names = profile.all_joint_names
        self.n_arm = len(profile.joints)
        self.gripper_index = self.n_arm if profile.gripper else None

        self.reading: JointReading = backend.read()
        self.command = self.reading.position.copy()  # last position sent to the backend
        self.hold_target = self.command.copy()
        self.source: object | None = None
        self.gripper_target: float | None = None
        self.last_streamed: float | None = None
        self.stale = False
        self.torque_on = True
        self.rejected = 0
        self._periods: deque[float] = deque(maxlen=2000)
        self._last_tick: float | None = None

        c = self.contract
        self.joint_state_pub = c.publisher(self, c.joint_states)
        self.ee_pose_pub = c.publisher(self, c.ee_pose)
        self.estop_pub = c.publisher(self, c.estop_state)
        self.diag_pub = c.publisher(self, c.diagnostics)
        c.subscription(self, c.joint_trajectory, self._on_trajectory)
        c.subscription(self, c.joint_commands, self._on_commands)
        if c.gripper_commands is not None:
            c.subscription(self, c.gripper_commands, self._on_gripper)
        c.subscription(self, c.target_pose, self._on_pose)
        c.subscription(self, c.target_twist, self._on_twist)
        c.subscription(self, c.estop, lambda msg: msg.data and self.set_estop(True, "estop topic"))
        c.service(self, c.estop_service, self._on_estop_service)
        self._publish_estop()
        if start_timer:
            self.control_timer = self.create_timer(profile.control_period, self.control_step)
        self.create_timer(1.0, self.publish_diagnostics)

    # -- time ---------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- the control loop ---------------------------------------------------------------------------
    def control_step(self) -> None:
        tick = time.monotonic()
        if self._last_tick is not None:
            self._periods.append(tick - self._last_tick)
        self._last_tick = tick

        self.reading = self.backend.read()
        stamp = convert.to_stamp(self.reading.stamp)
        self.joint_state_pub.publish(convert.make_joint_state(
            self.names, self.reading.position, self.reading.velocity, self.reading.effort, stamp))
        if self.kinematics is not None:
            pos, quat = self.kinematics.fk(self.reading.position[: self.n_arm])
            self.ee_pose_pub.publish(convert.make_pose(pos, quat, self.profile.frames.base, stamp))

        now = self.now()
        if self.safety.estopped:
            self._write(self.hold_target)
            return
        if self.source is not None and getattr(self.source, "streamed", False) and self.safety.is_stale(self.last_streamed, now):
            self._go_stale()
        if self.stale and self.profile.control.on_stale == "torque_off":
            return
        target = self.hold_target if self.source is None else self.source.target(now, self.command)
        target = np.where(np.isnan(target), self.command, target)
        if self.gripper_index is not None and self.gripper_target is not None:
            target[self.gripper_index] = self.gripper_target
        self._write(target)

    def _write(self, target: np.ndarray) -> None:
        try:
            safe = self.safety.limit(target, self.command)
        except ValueError as err:
            self.get_logger().error(f"unsafe target not sent ({err}); holding", throttle_duration_sec=1.0)
            self.hold_current()
            return
        if not self.torque_on:
            self.backend.set_torque(True)
            self.torque_on = True
        self.backend.write(safe)
        self.command = safe

    def _go_stale(self) -> None:
        self.safety.stats.stale_events += 1
        self.get_logger().warning(
            f"commands stale (> {self.profile.control.watchdog_periods} control periods): "
            + ("holding position" if self.profile.control.on_stale == "hold" else "torque off"))
        self.hold_current()
        self.stale = True
        if self.profile.control.on_stale == "torque_off":
            self.backend.set_torque(False)
            self.torque_on = False

    def hold_current(self) -> None:
        """Drop active commands and hold the measured position."""
        self.source = None
        self.gripper_target = None
        self.last_streamed = None
        self.hold_target = self.reading.position.copy()
        self.command = self.hold_target.copy()

    def _activate(self, source: object, streamed: bool) -> None:
        if self.safety.estopped:
            self.get_logger().warning("command ignored: e-stop engaged (release with the estop/set service)",
                                      throttle_duration_sec=1.0)
            return
        self.source = source
        self.stale = False
        self.last_streamed = self.now() if streamed else None

    def _reject(self, what: str, err: Exception) -> None:
        self.rejected += 1
        self.get_logger().error(f"rejected {what}: {err}", throttle_duration_sec=1.0)

    # -- command callbacks --------------------------------------------------------------------------
    def _on_trajectory(self, msg) -> None:  # noqa: ANN001
        try:
            times, positions = convert.trajectory_arrays(msg, self.names)
        except MessageError as err:
            return self._reject("joint_trajectory", err)
        now = self.now()
        start = convert.to_sec(msg.header.stamp) or now
        if start + times[-1] < now - self.profile.control_period:
            return self._reject("joint_trajectory", MessageError("it ended before it arrived (stale stamp)"))
        if self.gripper_index is not None and not np.isnan(positions[:, self.gripper_index]).all():
            self.gripper_target = None  # the trajectory drives the gripper
        self._activate(TrajectorySource.start(start, times, positions, self.command), streamed=False)

    def _on_commands(self, msg) -> None:  # noqa: ANN001
        try:
            q = convert.command_array(msg.data, self.n_arm)
        except MessageError as err:
            return self._reject("commands", err)
        full = np.full(len(self.names), np.nan)
        full[: self.n_arm] = q
        self._activate(PositionSource(full), streamed=True)

    def _on_gripper(self, msg) -> None:  # noqa: ANN001
        try:
            value = convert.command_array(msg.data, 1)[0]
        except MessageError as err:
            return self._reject("gripper command", err)
        if not self.safety.estopped:
            self.gripper_target = float(value)

    def _pose_source(self, position: np.ndarray, quat: np.ndarray | None) -> PoseSource | None:
        if self.kinematics is None:
            self._reject("Cartesian command", MessageError("this robot profile has no kinematic model (sim.mjcf)"))
            return None
        return PoseSource(self.kinematics, self.safety.clamp_workspace(position), quat, self.n_arm, self.profile.control_period)

    def _check_frame(self, frame_id: str) -> None:
        if frame_id and frame_id != self.profile.frames.base:
            raise MessageError(f"frame_id {frame_id!r} is not the base frame {self.profile.frames.base!r}")

    def _on_pose(self, msg) -> None:  # noqa: ANN001
        try:
            self._check_frame(msg.header.frame_id)
            position, quat = convert.pose_arrays(msg)
        except MessageError as err:
            return self._reject("target_pose", err)
        source = self._pose_source(position, quat)
        if source is not None:
            self._activate(source, streamed=False)

    def _on_twist(self, msg) -> None:  # noqa: ANN001
        try:
            self._check_frame(msg.header.frame_id)
            linear, angular = convert.twist_arrays(msg)
        except MessageError as err:
            return self._reject("target_twist", err)
        if isinstance(self.source, TwistSource):
            self.source.linear, self.source.angular = linear, angular
            self._activate(self.source, streamed=True)
            return
        if self.kinematics is None:
            return self._reject("target_twist", MessageError("this robot profile has no kinematic model (sim.mjcf)"))
        position, quat = self.kinematics.fk(self.command[: self.n_arm])
        pose = self._pose_source(position, quat)
        assert pose is not None
        self._activate(TwistSource(self.kinematics, pose, linear, angular, self.safety.clamp_workspace), streamed=True)

    # -- e-stop and diagnostics ---------------------------------------------------------------------
    def set_estop(self, on: bool, reason: str = "") -> None:
        if on == self.safety.estopped:
            return
        self.safety.set_estop(on, reason)
        self.hold_current()
        log = self.get_logger()
        (log.error(f"E-STOP engaged ({reason}): holding position") if on else log.info("e-stop released"))
        self._publish_estop()

    def _on_estop_service(self, request, response):  # noqa: ANN001, ANN201
        self.set_estop(bool(request.data), "estop/set service")
        response.success = True
        response.message = "e-stop engaged" if request.data else "e-stop released"
        return response

    def _publish_estop(self) -> None:
        from std_msgs.msg import Bool

        self.estop_pub.publish(Bool(data=self.safety.estopped))

    def loop_stats(self) -> dict[str, float]:
        """Achieved control rate and period jitter over the last ticks."""
        if len(self._periods) < 2:
            return {}
        periods = np.array(self._periods)
        return {
            "rate_hz": float(1.0 / np.median(periods)),
            "period_p99_ms": float(np.percentile(periods, 99) * 1e3),
            "jitter_p99_ms": float(np.percentile(np.abs(periods - self.profile.control_period), 99) * 1e3),
        }

    def publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: arm", hardware_id=self.profile.name)
        if self.safety.estopped:
            status.level, status.message = DiagnosticStatus.ERROR, f"e-stop: {self.safety.estop_reason}"
        elif self.stale:
            status.level, status.message = DiagnosticStatus.WARN, "commands stale: holding"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        values = dict(self.loop_stats())
        values.update(vars(self.safety.stats))
        values["rejected_commands"] = self.rejected
        backend_diag = getattr(self.backend, "diagnostics", None)
        if backend_diag is not None:
            values.update(backend_diag())
        status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def close(self) -> None:
        self.backend.close()
