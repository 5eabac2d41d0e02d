"""twin_node: the MuJoCo twin behind the robot contract, one code path with the hardware arms.

The ``TwinRuntime`` (``SimRobot`` physics as the backend of the arm's ``ArmCore``, exactly what the
in-process evaluation runs) served through ``ArmInterface`` like every hardware arm, plus the
profile's cameras (``<cam>/color/image_raw`` + ``camera_info``, stamped with the sim time of the
rendered state, rendered on their own thread), the task's ``object_poses`` (simulator ground truth)
and the twin services ``reset`` (Trigger), ``task_success`` (Trigger) and ``pause`` (SetBool).

Parameters: ``robot`` (profile name or path), ``task`` (task name or path, '' for none),
``cameras`` (comma list, 'all' (default) or 'none'), ``seed`` (used by the next ``reset``;
it then advances by one, so set it before a reset to replay an episode), ``realtime_factor``
(1.0 = real time on the wall clock; any other value paces sim time at that multiple of wall
time and publishes ``/clock``; 0 = as fast as possible), ``lockstep`` (sim time only: never run
past the earliest time its lock-step participants (a policy server, the scripted expert, a
recorder) publish on ``sim/step_until``), ``headless`` (false opens the MuJoCo viewer when a
display exists).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node

from robot_stack import convert
from robot_stack.arm.node import ArmInterface, LoopStats
from robot_stack.node_log import node_log
from robot_stack.node import run_node
from robot_stack.node_options import declare_options, read_options_before
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.sim.camera_stream import CameraStream
from robot_stack.sim.runtime import Sensors, TaskState, TwinRuntime
from robot_stack.typed_config import field

MAX_LAG_S = 0.25
"""When the sim falls further behind its pace it skips ahead (counted as an overrun); in real time
its stamps then jump to the wall clock again, so they stay comparable with other nodes' clocks."""
ACK_TIMEOUT = Duration(seconds=2.0)
ANNOUNCE_EVERY_S = 0.5
GATE_EXPIRY_S = 5.0
LOCKSTEP_POLL_S = 0.02
"""Lock-step as fast as possible: a gate message advances the twin at once; the timer is only a fallback
(a 1 ms poll spent a quarter of the twin's CPU in the executor, on 2 cores taken from rendering)."""


@dataclass(frozen=True)
class TwinOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    task: str = field("task name or YAML path ('' for none)", default="pick_cube")
    cameras: str = field("comma list of profile cameras, 'all' or 'none'", default="all")
    seed: int = field("seed of the next reset (advances by one after each reset)", default=0)
    realtime_factor: float = field("1 real time; other values pace sim time and publish /clock; 0 as fast as possible",
                                   default=1.0)
    lockstep: bool = field("sim time only: never run past the time published on sim/step_until", default=False)
    headless: bool = field("false opens the MuJoCo viewer when a display exists", default=True)

    def __post_init__(self) -> None:
        if not np.isfinite(self.realtime_factor) or self.realtime_factor < 0:
            raise ValueError("realtime_factor must be >= 0 (1 = real time, 0 = as fast as possible)")
        if self.lockstep and self.realtime_factor == 1.0:
            raise ValueError("lockstep needs sim time: set realtime_factor to 0 (as fast as possible) or another pace")


def select_cameras(profile: RobotProfile, cameras: str) -> RobotProfile:
    text = cameras.strip()
    if text.lower() == "none":
        return profile.with_cameras([])
    if not text or text.lower() == "all":
        return profile
    return profile.with_cameras([c.strip() for c in text.split(",") if c.strip()])


class TwinNode(Node):
    def __init__(self, options: TwinOptions, node_name: str = "twin", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        from rosgraph_msgs.msg import Clock

        self.options = options
        declare_options(self, options)  # visible to parameter tools; 'seed' is read at every reset
        profile = self.profile = select_cameras(load_profile(options.robot), options.cameras)
        self.realtime_factor = options.realtime_factor
        self.publish_clock = self.realtime_factor != 1.0
        self.runtime = TwinRuntime(profile, options.task or None, seed=options.seed,
                                   time_offset=0.0 if self.publish_clock else time.time(), log=node_log(self))
        self.sim = self.runtime.sim
        self.interface = ArmInterface(self, self.runtime.core, lambda: self.runtime.now)
        self.loop_stats = LoopStats(profile.control_period)
        self.interface.extra_diagnostics["twin"] = self.diagnostics
        self.create_timer(1.0, lambda: self.interface.publish_diagnostics(self.loop_stats()))
        c = self.contract = self.interface.contract
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        self.object_pub = c.publisher(self, c.object_poses) if self.sim.task else None
        c.service(self, c.reset_service, self._on_reset)
        c.service(self, c.task_success_service, self._on_task_success)
        c.service(self, c.pause_service, self._on_pause)
        self.paused = False
        self._paused_at = 0.0
        self.overruns = 0
        self.lockstep = options.lockstep
        self.gates: dict[str, tuple[float, float]] = {}
        """Lock-step participants: publisher -> (the sim time it lets the twin reach, wall time it said so)."""
        self.at_gate = False
        self._announced = 0.0
        if self.lockstep:
            self.create_subscription(c.step_until.type, c.step_until.name, self._on_gate, c.step_until.qos)

        # cameras: rendered on a thread of their own and published like a driver's (CameraPublisher)
        self.cameras = CameraStream(self, self.sim.model, profile, self.sim.camera_ids,
                                    lossless=self.realtime_factor != 1.0)

        self.viewer = None
        if not options.headless and os.environ.get("DISPLAY"):
            import mujoco.viewer

            self.viewer = mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
        elif not options.headless:
            self.get_logger().warning("no display (DISPLAY is unset): running without the viewer")
        if not self.publish_clock:  # real time: sim time is the wall clock from now on
            self.sim.time_offset = time.time() - self.sim.elapsed
        self._publish(self.runtime.sense())
        self._reanchor()
        period = profile.control_period if self.realtime_factor > 0 else 0.0
        poll = LOCKSTEP_POLL_S if self.lockstep else 0.001
        self.tick_timer = self.create_timer(period / max(self.realtime_factor, 1.0) if period else poll, self._advance)
        pace = ("real time" if not self.publish_clock else f"x{self.realtime_factor:g} with /clock"
                if self.realtime_factor > 0 else "as fast as possible with /clock")
        self.get_logger().info(f"twin: {profile.name}, task {options.task or 'none'}, cameras "
                               f"{','.join(profile.camera_names) or 'none'}, {pace}" + (", lock-step" if self.lockstep else ""))

    # -- time -------------------------------------------------------------------------------------
    def _advance(self) -> None:
        if self.paused:
            return
        if self.realtime_factor <= 0:
            deadline = time.monotonic() + 0.02
            while time.monotonic() < deadline and self._may_tick():
                self.tick()
            return
        wall = time.monotonic()
        target = self._sim_start + self.realtime_factor * (wall - self._wall_start)
        lag = target - self.sim.elapsed
        if lag > MAX_LAG_S * max(self.realtime_factor, 1.0):
            self.overruns += 1
            self._skip(lag / self.realtime_factor)
            target = self.sim.elapsed + self.sim.dt
        ticks = 0
        while self.sim.elapsed + 0.5 * self.sim.dt < target and ticks < 50 and self._may_tick():
            self.tick()
            ticks += 1
        if self.lockstep and not self._may_tick():
            self._reanchor()  # waiting for the policy is not lag

    def _may_tick(self) -> bool:
        """Lock-step: run only up to the gate; on reaching it, announce the time once every sensor message is delivered."""
        if not self.lockstep:
            return True
        gate = self.gate
        if gate is not None and self.runtime.now < gate - 1e-6:
            return True
        if not self.at_gate:
            self.at_gate = True
            self.cameras.drain()
            for pub in self._sensor_publishers():
                pub.wait_for_all_acked(ACK_TIMEOUT)
            self._announced = 0.0
        if time.monotonic() - self._announced > ANNOUNCE_EVERY_S:  # again now and then: a policy may start late
            self._announced = time.monotonic()
            self._publish_clock()
        return False

    @property
    def gate(self) -> float | None:
        """How far sim time may run: the earliest of the participants' gates (None: no participant yet).

        A participant that has said nothing for ``GATE_EXPIRY_S`` of wall time is gone (its process ended):
        participants repeat their gate while they wait, so only a dead one is forgotten."""
        now = time.monotonic()
        for key in [k for k, (_, said) in self.gates.items() if now - said > GATE_EXPIRY_S]:
            del self.gates[key]
        return min((t for t, _ in self.gates.values()), default=None)

    def _on_gate(self, msg, info) -> None:
        publisher = repr(info.get("publisher_gid"))
        self.gates[publisher] = (convert.to_sec(msg.clock), time.monotonic())
        gate = self.gate
        if gate is not None and self.runtime.now < gate - 1e-6:
            self.at_gate = False
            self._advance()  # at once: the tick timer only polls (see LOCKSTEP_POLL_S)

    def _sensor_publishers(self) -> list:
        pubs = [self.interface.joint_state_pub, self.interface.ee_pose_pub]
        pubs += [self.object_pub] if self.object_pub is not None else []
        return pubs

    def _reanchor(self) -> None:
        self._wall_start = time.monotonic()
        self._sim_start = self.sim.elapsed

    def _skip(self, wall_seconds: float) -> None:
        """Wall time passed without simulation (lag, pause): in real time, stamps jump to the wall clock."""
        if not self.publish_clock:
            self.sim.time_offset += wall_seconds
        self._reanchor()

    def tick(self) -> None:
        """One control period, as the in-process runtime runs it: the core acts and physics steps, then the new state is published."""
        self.loop_stats.tick()
        self.runtime.advance()
        self._publish(self.runtime.sense())
        if self.viewer is not None and self.viewer.is_running() and int(self.sim.elapsed / self.sim.dt) % 3 == 0:
            self.viewer.sync()

    def _publish(self, sensors: Sensors) -> None:
        self.interface.publish_state(sensors.reading)
        if self.object_pub is not None:
            self.object_pub.publish(self._object_poses(sensors))
        if sensors.cameras:
            self.cameras.submit(sensors.stamp, sensors.snapshot, sensors.cameras)
        if not self.lockstep:
            self._publish_clock()  # in lock-step the clock is announced at the gate, after the sensor messages

    def _publish_clock(self) -> None:
        if self.clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            self.clock_pub.publish(Clock(clock=convert.to_stamp(self.runtime.now)))

    def _object_poses(self, sensors: Sensors):
        from geometry_msgs.msg import Pose, PoseArray

        msg = PoseArray()
        msg.header.stamp = convert.to_stamp(sensors.stamp)
        msg.header.frame_id = self.profile.frames.base
        for row in sensors.object_poses:
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in row[:3])
            o = pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in row[3:])
            msg.poses.append(pose)
        return msg

    # -- services ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.cameras.drain()  # frames of the old scene are out before it changes
        self.runtime.reset(seed)
        self.interface.publish_estop()

    def _on_reset(self, request, response):
        from rclpy.parameter import Parameter

        seed = int(self.get_parameter("seed").value)
        self.reset(seed)
        self.set_parameters([Parameter("seed", Parameter.Type.INTEGER, seed + 1)])
        response.success = True
        response.message = f"reset with seed {seed}"
        return response

    def _on_task_success(self, request, response):
        state = TaskState.of(self.sim)
        response.success, response.message = state.success, state.message()
        return response

    def _on_pause(self, request, response):
        if request.data and not self.paused:
            self._paused_at = time.monotonic()
        elif not request.data and self.paused:
            self._skip(time.monotonic() - self._paused_at)
        self.paused = bool(request.data)
        response.success = True
        response.message = "paused" if self.paused else "running"
        return response

    def diagnostics(self) -> dict[str, float]:
        return {"sim_time": self.sim.elapsed, "overruns": self.overruns, "rendered_frames": self.cameras.rendered_frames,
                "dropped_frames": self.cameras.dropped_frames, "paused": int(self.paused)}

    def close(self) -> None:
        self.cameras.close()
        if self.viewer is not None:
            self.viewer.close()
        self.interface.close()
        self.runtime.close()


def main() -> None:
    run_node(lambda: TwinNode(read_options_before("twin", TwinOptions)))


if __name__ == "__main__":
    main()
