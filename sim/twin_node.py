"""twin_node: the MuJoCo twin behind the robot contract, one code path with the hardware arms.

It is an ``ArmNode`` (joint_states, ee_pose, every command topic, safety, e-stop) around a
``SimRobot`` backend, plus the profile's cameras (``<cam>/color/image_raw`` + ``camera_info``,
stamped with the sim time of the rendered state, rendered on their own thread) and the twin
services ``reset`` (Trigger), ``task_success`` (Trigger) and ``pause`` (SetBool).

Parameters: ``robot`` (profile name or path), ``task`` (task name or path, '' for none),
``cameras`` (comma list, 'all' (default) or 'none'), ``seed`` (used by the next ``reset``;
it then advances by one, so set it before a reset to replay an episode), ``realtime_factor``
(1.0 = real time on the wall clock; any other value paces sim time at that multiple of wall
time and publishes ``/clock``; 0 = as fast as possible), ``headless`` (false opens the MuJoCo
viewer when a display exists).
"""

from __future__ import annotations

import os
import time

import numpy as np

from robot_stack import convert
from robot_stack.arm.kinematics import Kinematics
from robot_stack.arm.node import ArmNode
from robot_stack.errors import UserError
from robot_stack.node import declare, run_node
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.sim.robot import SimRobot

DEFAULTS = {"robot": "so101", "task": "pick_cube", "cameras": "all", "seed": 0, "realtime_factor": 1.0, "headless": True}
MAX_LAG_S = 0.25
"""When the sim falls further behind its pace it skips ahead (counted as an overrun); in real time
its stamps then jump to the wall clock again, so they stay comparable with other nodes' clocks."""


def select_cameras(profile: RobotProfile, cameras: str) -> RobotProfile:
    text = cameras.strip()
    if text.lower() == "none":
        return profile.with_cameras([])
    if not text or text.lower() == "all":
        return profile
    return profile.with_cameras([c.strip() for c in text.split(",") if c.strip()])


class TwinNode(ArmNode):
    def __init__(self, profile: RobotProfile, task: str | None, *, seed: int = 0, realtime_factor: float = 1.0,
                 headless: bool = True, node_name: str = "twin", **node_kwargs):
        self.realtime_factor = float(realtime_factor)
        self.publish_clock = self.realtime_factor != 1.0
        offset = time.time() if not self.publish_clock else 0.0
        self.sim = SimRobot(profile, task or None, seed=seed, time_offset=offset)
        super().__init__(profile, self.sim, node_name, kinematics=Kinematics(profile), start_timer=False, **node_kwargs)
        from rosgraph_msgs.msg import Clock

        declare(self, "seed", int(seed), "seed of the next reset (advances by one after each reset)")
        self.sim.diagnostics = self.diagnostics  # type: ignore[attr-defined] - read by ArmNode.publish_diagnostics
        c = self.contract
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        self.object_pub = c.publisher(self, c.object_poses) if self.sim.task else None
        c.service(self, c.reset_service, self._on_reset)
        c.service(self, c.task_success_service, self._on_task_success)
        c.service(self, c.pause_service, self._on_pause)
        self.paused = False
        self._paused_at = 0.0
        self.overruns = 0

        # cameras: rendered on a thread of their own and published like a camera driver's
        from robot_stack.sim.camera_stream import CameraStream

        self.cameras = CameraStream(self, self.sim.model, profile, self.sim.camera_ids, lossless=self.publish_clock)
        self.next_frame = {name: 0.0 for name in profile.camera_names}

        self.viewer = None
        if not headless and os.environ.get("DISPLAY"):
            import mujoco.viewer

            self.viewer = mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
        elif not headless:
            self.get_logger().warning("no display (DISPLAY is unset): running without the viewer")
        if not self.publish_clock:  # real time: sim time is the wall clock from now on
            self.sim.time_offset = time.time() - self.sim.elapsed
        self._reanchor()
        period = profile.control_period if self.realtime_factor > 0 else 0.0
        self.tick_timer = self.create_timer(period / max(self.realtime_factor, 1.0) if period else 0.001, self._advance)
        self.get_logger().info(
            f"twin: {profile.name}, task {task or 'none'}, cameras {','.join(profile.camera_names) or 'none'}, "
            f"{'real time' if not self.publish_clock else f'x{self.realtime_factor:g} with /clock' if self.realtime_factor > 0 else 'as fast as possible with /clock'}")

    # -- time -------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.sim.now()

    def _advance(self) -> None:
        if self.paused:
            return
        wall = time.monotonic()
        if self.realtime_factor <= 0:
            deadline = wall + 0.02
            while time.monotonic() < deadline:
                self.tick()
            return
        target = self._sim_start + self.realtime_factor * (wall - self._wall_start)
        lag = target - self.sim.elapsed
        if lag > MAX_LAG_S * max(self.realtime_factor, 1.0):
            self.overruns += 1
            self._skip(lag / self.realtime_factor)
            target = self.sim.elapsed + self.sim.dt
        ticks = 0
        while self.sim.elapsed + 0.5 * self.sim.dt < target and ticks < 50:
            self.tick()
            ticks += 1

    def _reanchor(self) -> None:
        self._wall_start = time.monotonic()
        self._sim_start = self.sim.elapsed

    def _skip(self, wall_seconds: float) -> None:
        """Wall time passed without simulation (lag, pause): in real time, stamps jump to the wall clock."""
        if not self.publish_clock:
            self.sim.time_offset += wall_seconds
        self._reanchor()

    def tick(self) -> None:
        """One control period: cameras due now see this state, then the arm core acts, then physics steps."""
        self._schedule_frames()
        self.control_step()
        self.sim.step()
        if self.clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            self.clock_pub.publish(Clock(clock=convert.to_stamp(self.sim.now())))
        if self.object_pub is not None:
            self.object_pub.publish(self._object_poses())
        if self.viewer is not None and self.viewer.is_running() and int(self.sim.elapsed / self.sim.dt) % 3 == 0:
            self.viewer.sync()

    def _object_poses(self):  # noqa: ANN202
        from geometry_msgs.msg import Pose, PoseArray

        msg = PoseArray()
        msg.header.stamp = convert.to_stamp(self.sim.now())
        msg.header.frame_id = self.profile.frames.base
        for row in self.sim.task.object_poses(self.sim.data):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in row[:3])
            o = pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in row[3:])
            msg.poses.append(pose)
        return msg

    # -- cameras ----------------------------------------------------------------------------------
    def _schedule_frames(self) -> None:
        """Hand the cameras due now (each at its own fps, on sim time) to the stream."""
        t = self.sim.elapsed
        due = [n for n, when in self.next_frame.items() if t + 1e-9 >= when]
        if not due:
            return
        for name in due:
            period = 1.0 / self.profile.camera(name).fps
            self.next_frame[name] = max(self.next_frame[name] + period, t + 0.5 * period)
        self.cameras.submit(self.sim.now(), self.sim.snapshot(), due)

    # -- services ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.sim.reset(seed)
        self.reading = self.sim.read()
        self.hold_current()
        self.safety.set_estop(False)
        self._publish_estop()

    def _on_reset(self, request, response):  # noqa: ANN001, ANN201
        from rclpy.parameter import Parameter

        seed = int(self.get_parameter("seed").value)
        self.reset(seed)
        self.set_parameters([Parameter("seed", Parameter.Type.INTEGER, seed + 1)])
        response.success = True
        response.message = f"reset with seed {seed}"
        return response

    def _on_task_success(self, request, response):  # noqa: ANN001, ANN201
        response.success = self.sim.success()
        response.message = (f"success={str(response.success).lower()} progress={self.sim.progress():.3f} "
                            f"time={self.sim.episode_time:.2f} seed={self.sim.seed}")
        return response

    def _on_pause(self, request, response):  # noqa: ANN001, ANN201
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
        super().close()


def read_parameters(defaults: dict) -> dict:
    """The node's parameters (launch file / --ros-args), read before the profile is known."""
    import rclpy

    probe = rclpy.create_node("twin", automatically_declare_parameters_from_overrides=True)
    try:
        return {k: probe.get_parameter(k).value if probe.has_parameter(k) else v for k, v in defaults.items()}
    finally:
        probe.destroy_node()


def make_twin(params: dict) -> TwinNode:
    if not np.isfinite(float(params["realtime_factor"])) or float(params["realtime_factor"]) < 0:
        raise UserError("realtime_factor must be >= 0 (1 = real time, 0 = as fast as possible)")
    profile = select_cameras(load_profile(str(params["robot"])), str(params["cameras"]))
    return TwinNode(profile, str(params["task"]) or None, seed=int(params["seed"]),
                    realtime_factor=float(params["realtime_factor"]), headless=bool(params["headless"]))


def main() -> None:
    run_node(lambda: make_twin(read_parameters(DEFAULTS)))


if __name__ == "__main__":
    main()
