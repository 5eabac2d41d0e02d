"""The arm's ROS transport: ``ArmInterface`` serves an ``ArmCore`` on a node; ``ArmNode`` drives it on wall time.

``ArmInterface`` only translates: it publishes ``joint_states``, ``ee_pose`` (forward kinematics of
the measured joints), the latched ``estop/state`` and ``/diagnostics``, and turns every command
topic (trajectory, forward command, gripper, Cartesian pose or twist) and the e-stop into
``ArmCore`` calls. Bad commands (unknown joints, NaN, wrong size or frame) are logged and never move
the arm. It owns no loop: ``ArmNode`` (hardware) runs one on a control thread at the control rate; the
twin runs it on sim time.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
from rclpy.node import Node

from robot_stack import bounded_take, convert, realtime
from robot_stack.arm.backend import ArmBackend, JointReading
from robot_stack.arm.core import ArmCore, CommandError
from robot_stack.arm.estop_store import EStopStore
from robot_stack.arm.kinematics import Kinematics
from robot_stack.contract import Contract
from robot_stack.convert import MessageError
from robot_stack.node_log import node_log
from robot_stack.profile import RobotProfile


def apply_trajectory(core: ArmCore, msg, names: list[str], now: float) -> None:
    """A JointTrajectory message into the core (stamp 0 = start now), as the interface does for the topic."""
    times, positions = convert.trajectory_arrays(msg, names)
    core.trajectory(convert.to_sec(msg.header.stamp) or now, times, positions, now)


MAX_MESSAGE_BYTES = {"joint_trajectory": 256 * 1024, "commands": 4096, "gripper command": 1024,
                     "target_pose": 1024, "target_twist": 1024, "estop": 1024}
"""Largest serialised command accepted per topic, checked before the message is parsed: a 256 KiB
trajectory (about 2,000 points) is parsed in milliseconds, so no message can stall the control loop."""


class ArmInterface:
    """The contract's arm topics and services for ``core`` on ``node``; the e-stop on a thread of its own."""

    def __init__(self, node: Node, core: ArmCore, now: Any):
        """``now()``: the current time on the clock that drives ``core`` (node clock or sim time)."""
        self.node, self.core, self.now = node, core, now
        self.profile = core.profile
        self.names = self.profile.all_joint_names
        self.oversized = 0
        self.log = node_log(node)
        c = self.contract = Contract(self.profile)
        self.joint_state_pub = c.publisher(node, c.joint_states)
        self.ee_pose_pub = c.publisher(node, c.ee_pose)
        self.estop_pub = c.publisher(node, c.estop_state)
        self.diag_pub = c.publisher(node, c.diagnostics)
        self._bounded(node, c.joint_trajectory, "joint_trajectory", self._on_trajectory)
        self._bounded(node, c.joint_commands, "commands", self._on_commands)
        if c.gripper_commands is not None:
            self._bounded(node, c.gripper_commands, "gripper command", self._on_gripper)
        self._bounded(node, c.target_pose, "target_pose", self._on_pose)
        self._bounded(node, c.target_twist, "target_twist", self._on_twist)
        # the e-stop: a node of its own (same namespace) in a context of its own (its own DDS participant and
        # receive threads), spun by its own thread, so that nothing the control node receives or runs (a large
        # message, a slow backend) delays it
        import rclpy

        before = realtime.native_threads()
        self.estop_context = rclpy.Context()
        rclpy.init(args=[], context=self.estop_context)
        self.estop_node = Node(f"{node.get_name()}_estop", namespace=node.get_namespace(), context=self.estop_context,
                               use_global_arguments=False, start_parameter_services=False)
        self._bounded(self.estop_node, c.estop, "estop", lambda msg: msg.data and self.set_estop(True, "estop topic"))
        c.service(self.estop_node, c.estop_service, self._on_estop_service)
        self.estop_executor = bounded_take.BoundedExecutor(context=self.estop_context)
        self.estop_executor.add_node(self.estop_node)
        self.estop_thread = threading.Thread(target=self._spin_estop, name="estop", daemon=True)
        self.estop_thread.start()
        self.estop_threads = realtime.native_threads() - before
        """Native ids of the e-stop's threads (its spinning thread and its participant's), for real-time priority."""
        self.publish_estop()
        self.extra_diagnostics: dict[str, Any] = {}
        """Callables name -> () -> dict merged into the diagnostics (backend, loop, twin)."""

    def _spin_estop(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.estop_executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        except Exception:
            if self.estop_context.ok() and self.node.context.ok():
                raise

    def _bounded(self, node: Node, topic, what: str, callback) -> None:
        """Subscribe to ``topic`` raw: messages over ``MAX_MESSAGE_BYTES[what]`` are dropped unparsed (and,
        under a ``BoundedExecutor``, never copied into Python: the take runs without the interpreter lock)."""
        from rclpy.serialization import deserialize_message

        limit = MAX_MESSAGE_BYTES[what]

        def on_raw(data: bytes | int) -> None:
            size = data if isinstance(data, int) else len(data)
            if size > limit:
                self.oversized += 1
                self.core.rejected += 1
                self.log("error", f"rejected {what}: {size} bytes (at most {limit}), not parsed")
                return
            try:
                msg = deserialize_message(data, topic.type)
            except Exception as err:  # noqa: BLE001 - any malformed payload is a bad message
                return self._reject(what, err)
            callback(msg)

        bounded_take.limit(node.create_subscription(topic.type, topic.name, on_raw, topic.qos, raw=True), limit)

    def close(self) -> None:
        """Stop the e-stop's thread and wait for it: left running, it can return from a wait while the
        interpreter finalizes, and a thread that cannot retake the interpreter lock then aborts the process
        (``terminate called without an active exception``, exit -6)."""
        self.estop_executor.shutdown(timeout_sec=2.0)
        self.estop_context.try_shutdown()  # wakes a wait in progress; spin() ends with the context
        if self.estop_thread is not threading.current_thread():
            self.estop_thread.join(timeout=5.0)
        self.estop_node.destroy_node()

    # -- robot -> ---------------------------------------------------------------------------------
    def publish_state(self, reading: JointReading) -> None:
        stamp = convert.to_stamp(reading.stamp)
        self.joint_state_pub.publish(convert.make_joint_state(
            self.names, reading.position, reading.velocity, reading.effort, stamp))
        pose = self.core.ee_pose(reading.position)
        if pose is not None:
            self.ee_pose_pub.publish(convert.make_pose(*pose, self.profile.frames.base, stamp))

    def publish_estop(self) -> None:
        from std_msgs.msg import Bool

        self.estop_pub.publish(Bool(data=self.core.safety.estopped))

    def publish_diagnostics(self, loop_stats: dict[str, float] | None = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        core = self.core
        status = DiagnosticStatus(name=f"{self.node.get_fully_qualified_name()}: arm", hardware_id=self.profile.name)
        if core.safety.estopped:
            status.level, status.message = DiagnosticStatus.ERROR, f"e-stop: {core.safety.estop_reason}"
        elif core.stale:
            status.level, status.message = DiagnosticStatus.WARN, "commands stale: holding"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        values: dict[str, Any] = dict(loop_stats or {})
        values.update(core.diagnostics())
        values["oversized_messages"] = self.oversized
        for extra in self.extra_diagnostics.values():
            values.update(extra())
        status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    # -- -> robot ---------------------------------------------------------------------------------
    def _reject(self, what: str, err: Exception) -> None:
        self.core.rejected += 1
        self.log("error", f"rejected {what}: {err}")

    def _command(self, what: str, action) -> None:  # () -> None, may raise
        try:
            action()
        except (MessageError, CommandError) as err:
            self._reject(what, err)

    def _on_trajectory(self, msg) -> None:
        self._command("joint_trajectory", lambda: apply_trajectory(self.core, msg, self.names, self.now()))

    def _on_commands(self, msg) -> None:
        self._command("commands", lambda: self.core.positions(convert.command_array(msg.data, self.core.n_arm), self.now()))

    def _on_gripper(self, msg) -> None:
        self._command("gripper command", lambda: self.core.gripper(convert.command_array(msg.data, 1)[0]))

    def _check_frame(self, frame_id: str) -> None:
        if frame_id and frame_id != self.profile.frames.base:
            raise MessageError(f"frame_id {frame_id!r} is not the base frame {self.profile.frames.base!r}")

    def _on_pose(self, msg) -> None:
        def run() -> None:
            self._check_frame(msg.header.frame_id)
            self.core.pose(*convert.pose_arrays(msg), self.now())
        self._command("target_pose", run)

    def _on_twist(self, msg) -> None:
        def run() -> None:
            self._check_frame(msg.header.frame_id)
            self.core.twist(*convert.twist_arrays(msg), self.now())
        self._command("target_twist", run)

    def set_estop(self, on: bool, reason: str) -> None:
        if self.core.set_estop(on, reason):
            self.publish_estop()

    def _on_estop_service(self, request, response):
        self.set_estop(bool(request.data), "estop/set service")
        response.success = True
        response.message = "e-stop engaged" if request.data else "e-stop released"
        return response


class LoopStats:
    """Achieved control rate and period jitter over the last ticks."""

    def __init__(self, period: float):
        self.period = period
        self._periods: deque[float] = deque(maxlen=2000)
        self._last: float | None = None

    @property
    def periods(self) -> np.ndarray:
        """s: the last periods measured."""
        return np.array(self._periods)

    def tick(self) -> None:
        t = time.monotonic()
        if self._last is not None:
            self._periods.append(t - self._last)
        self._last = t

    def __call__(self) -> dict[str, float]:
        if len(self._periods) < 2:
            return {}
        periods = np.array(self._periods)
        return {
            "rate_hz": float(1.0 / np.median(periods)),
            "period_p99_ms": float(np.percentile(periods, 99) * 1e3),
            "jitter_p99_ms": float(np.percentile(np.abs(periods - self.period), 99) * 1e3),
        }


class ArmNode(Node):
    """An arm on hardware: ``ArmCore`` around ``backend``, served on the contract, driven on wall time by a
    control thread of its own (as ros2_control's controller manager: read, update, write, sleep to the next
    period), so that nothing the node's executor does (taking an 80 MB command, say) delays a control period."""

    def __init__(self, profile: RobotProfile, backend: ArmBackend, node_name: str = "arm", *,
                 kinematics: Kinematics | None = None, estop_store: EStopStore | None = None,
                 thread_priority: int = 0, **node_kwargs):
        """``estop_store``: where the e-stop latch survives restarts (see ``estop_store.default_path``).
        ``thread_priority`` > 1: ``SCHED_FIFO`` priorities (see ``robot_stack.realtime``): the control thread at
        it, the e-stop's threads one above, and the calling thread (the one that spins this node: commands)
        one below. Sets the process's interpreter-lock slice to ``realtime.GIL_SWITCH_INTERVAL``: the driver
        owns its process."""
        super().__init__(node_name, **node_kwargs)
        self.profile, self.backend = profile, backend
        if kinematics is None and profile.sim is not None:
            kinematics = Kinematics(profile)
        self.core = ArmCore(profile, backend, kinematics, log=node_log(self), estop_store=estop_store)
        self.interface = ArmInterface(self, self.core, self.now)
        self.loop_stats = LoopStats(profile.control_period)
        backend_diag = getattr(backend, "diagnostics", None)
        if backend_diag is not None:
            self.interface.extra_diagnostics["backend"] = backend_diag
        self.create_timer(1.0, lambda: self.interface.publish_diagnostics(self.loop_stats()))
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._failed = self.create_guard_condition(self._raise_failure)
        if thread_priority > 1:
            refused = (realtime.set_fifo(thread_priority + 1, self.interface.estop_threads)
                       or realtime.set_fifo(thread_priority - 1))
            if refused:
                self.get_logger().warning(f"control loop and e-stop on normal scheduling: {refused}")
                thread_priority = 0
            else:
                self.get_logger().info(f"real-time priority (SCHED_FIFO): e-stop {thread_priority + 1}, "
                                       f"control loop {thread_priority}, commands {thread_priority - 1}")
        sys.setswitchinterval(realtime.GIL_SWITCH_INTERVAL)  # the e-stop's wait for the interpreter lock
        gc.freeze()  # start-up's objects stay out of garbage collection passes: a pass in the loop is short
        self.control_thread = threading.Thread(target=self._control_loop, args=(thread_priority,),
                                               name="control", daemon=True)
        self.control_thread.start()

    def _control_loop(self, priority: int) -> None:
        """Every control period until ``close``; a period that overruns starts the next one at once (no burst
        of catch-up periods). An error stops the node through its executor (``_raise_failure``)."""
        if priority > 1:
            realtime.set_fifo(priority)
        period = self.profile.control_period
        deadline = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.control_step()
                deadline += period
                wait = deadline - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    deadline = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - handed to the executor's thread, raised there
            if not self._stopping.is_set() and self.context.ok():  # else: the node is shutting down
                self._failure = err
                self._failed.trigger()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    @property
    def safety(self):
        return self.core.safety

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def control_step(self) -> None:
        """One control period on the node clock: read, publish, update, write."""
        self.loop_stats.tick()
        now = self.now()
        self.interface.publish_state(self.core.read(now))
        self.core.update(now)

    def close(self) -> None:
        """Stop serving; a profile that relaxes on stale commands (``on_stale: torque_off``) relaxes now too:
        a driver that stops is the stalest command source there is."""
        self._stopping.set()
        if self.control_thread is not threading.current_thread():
            self.control_thread.join(timeout=2.0)
        self.interface.close()
        if self.profile.control.on_stale == "torque_off" and self.core.torque_on:
            try:
                self.backend.set_torque(False)
            except Exception as err:  # noqa: BLE001 - the bus may be gone; closing goes on
                self.get_logger().warning(f"could not relax the arm on exit: {err}")
        self.backend.close()
