"""Evaluate a policy on the MuJoCo twin: in-process (gym env) and through the ROS deploy path.

Both paths write the same report: success rate with a 95% Wilson interval, episode lengths, a few
rollout videos, and a pass/fail against ``gate``. A passing in-process evaluation signs the
checkpoint off for hardware (``sim_validation.json``, see ``validation.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from robot_stack.policies.runner import PolicyRunner, RuntimeConfig, runtime_record
from robot_stack.policies.validation import ValidationRecord, policy_hash, wilson_interval


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    seconds: float
    progress: float = 0.0


@dataclass
class EvalReport:
    path: str
    policy: str
    task: str
    robot: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    gate: float = 0.8
    runtime: dict = field(default_factory=dict)
    """The runtime configuration the episodes ran with (``runner.runtime_record``)."""
    wall_seconds: float = 0.0
    """Wall time of the episodes (resets included)."""
    inference_ms: tuple[float, float] | None = None
    """Measured inference time, median and p99 (in-process)."""

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, len(self.episodes))

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, len(self.episodes))

    @property
    def passed(self) -> bool:
        return self.success_rate >= self.gate

    def summary(self) -> str:
        lo, hi = self.ci95
        lengths = [e.steps for e in self.episodes if e.success] or [0]
        text = (f"{self.path}: {self.successes}/{len(self.episodes)} successes = {self.success_rate:.0%} "
                f"(95% CI {lo:.0%}-{hi:.0%}), median successful length {int(np.median(lengths))} steps; "
                f"gate {self.gate:.0%}: {'PASS' if self.passed else 'FAIL'}")
        budget = self.runtime.get("runtime", {}).get("inference_latency", -1)
        if self.inference_ms is not None:
            text += f"; inference {self.inference_ms[0]:.0f} ms median, {self.inference_ms[1]:.0f} ms p99"
            if budget >= 0 and self.inference_ms[0] > budget * 1e3:
                text += (f" (over the {budget * 1e3:.0f} ms latency budget: on this machine the robot would act later "
                         "than validated; raise --inference-latency)")
        return text

    def save(self, out_dir: Path, name: str) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items()}
        data.update(successes=self.successes, success_rate=self.success_rate, ci95=list(self.ci95), passed=self.passed)
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(data, indent=1))
        return path

    def sign_off(self, checkpoint: str | Path) -> Path:
        lo, hi = self.ci95
        record = ValidationRecord(policy_hash(checkpoint), self.task, self.robot, len(self.episodes), self.successes,
                                  self.success_rate, (lo, hi), self.gate, self.passed, runtime=self.runtime)
        return record.save(checkpoint)


def _progress(total: int, description: str, enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), transient=False, disable=not enabled)


def evaluate_in_process(checkpoint: str | Path, task: str, robot: str, episodes: int, *, seed: int = 1000,
                        gate: float = 0.8, videos: int = 2, out_dir: Path | None = None,
                        inference_steps: int | None = None, runtime: RuntimeConfig = RuntimeConfig(),
                        plan_log: Path | None = None, device: str = "auto") -> EvalReport:
    """Roll the checkpoint's policy out on the in-process twin (no ROS), ``episodes`` seeds from ``seed``;
    ``device``: auto (CUDA when torch sees a GPU), cpu, cuda[:n]."""
    from robot_stack.policies.diffusion.checkpoint import load_policy
    from robot_stack.profile import load_profile

    profile = load_profile(robot)
    policy = load_policy(checkpoint, profile, device=device)
    if inference_steps:
        policy.inference_steps = inference_steps
    return evaluate_policy(policy, profile, task, episodes, seed=seed, gate=gate, videos=videos, out_dir=out_dir,
                           name=str(checkpoint), runtime=runtime, plan_log=plan_log)


def feed(runner: PolicyRunner, sensors, task_kind: str | None, render) -> None:  # Sensors, (name) -> image
    """Give the runner what the robot published at ``sensors.stamp`` (the values the ROS feed computes)."""
    from robot_stack.policies.observations import LazyFrame, joint_values, object_values, pose_vector

    t, keys = sensors.stamp, runner.keys
    values: dict[str, object] = {}
    if "joint_pos" in keys or "joint_vel" in keys:
        values.update(joint_values(sensors.reading.position, sensors.reading.velocity))
    if "ee_pose" in keys and sensors.ee_pose is not None:
        values["ee_pose"] = pose_vector(*sensors.ee_pose)
    if "object_state" in keys and sensors.object_poses is not None:
        values["object_state"] = object_values(task_kind, [pose_vector(p[:3], p[3:]) for p in sensors.object_poses])
    for name in sensors.cameras:
        key = f"{name}_image"
        if key in keys:
            snapshot = sensors.snapshot
            values[key] = LazyFrame(lambda name=name, snapshot=snapshot: render(name, snapshot))
    for key, value in values.items():
        if key in keys:
            runner.observe(key, t, value, t)


def run_episode(runtime, runner: PolicyRunner, seed: int, render, on_period=None) -> EpisodeResult:
    """One episode on the in-process twin, control period by control period, as ``twin_node`` + ``policy_server`` run it.

    Ends at the first control period the task succeeds or at the task's time limit; the length in
    policy steps counts to the success (``ceil(success time x policy rate)``), as over ROS.
    """
    from robot_stack.arm.node import apply_trajectory
    from robot_stack.policies.runner import chunk_message

    profile, sim = runtime.profile, runtime.sim
    rate, limit = profile.control.policy_rate_hz, sim.episode_seconds
    ticks = max(1, round(profile.control.rate_hz / rate))
    kind = sim.task.config.kind if sim.task is not None else None
    names = profile.all_joint_names
    runtime.reset(seed)
    runner.restart(runtime.now)
    start, tick = time.perf_counter(), 0
    while sim.success_time is None and sim.episode_time < limit - 1e-9:
        runtime.advance()
        sensors = runtime.sense()
        feed(runner, sensors, kind, render)
        chunk = runner.step(sensors.stamp)
        if chunk is not None:
            apply_trajectory(runtime.core, chunk_message(names, chunk), names, sensors.stamp)
        tick += 1
        if on_period is not None and tick % ticks == 0:
            on_period()
    return episode_result(seed, sim.success_time, sim.episode_time, sim.progress(), rate, limit,
                          time.perf_counter() - start)


def episode_result(seed: int, success_time: float | None, episode_time: float, progress: float, rate: float,
                   limit: float, wall: float) -> EpisodeResult:
    """An episode's result from the twin's latched first success (the same rule in-process and over ROS)."""
    success = success_time is not None and success_time <= limit + 1e-9
    steps = int(np.ceil(success_time * rate - 1e-6)) if success else int(round(min(episode_time, limit) * rate))
    return EpisodeResult(seed, success, steps, wall, progress)


def evaluate_policy(policy, profile, task: str, episodes: int, *, seed: int = 1000, gate: float = 0.8,
                    videos: int = 2, out_dir: Path | None = None, name: str = "policy", video_prefix: str = "rollout_",
                    progress: bool = True, runtime: RuntimeConfig = RuntimeConfig(),
                    plan_log: Path | None = None) -> EvalReport:
    """Roll a loaded policy out on the in-process twin through ``PolicyRunner`` and the twin's ``ArmCore``.

    The same classes as over ROS (``policy_server`` + ``twin_node``), on sim time: inference latency
    (measured, or ``runtime.inference_latency``) is added to sim time, so a policy that only works
    with zero latency fails here too. Also used during training. Videos of the first ``videos``
    episodes go to ``out_dir/<video_prefix><i>.mp4`` (first policy camera, or the profile's first camera
    for a low-dim policy). The policy's train/eval mode is restored afterwards.
    """
    from robot_stack.sim.cameras import CameraRig
    from robot_stack.sim.runtime import TwinRuntime

    cameras = list(policy.cfg.obs.cameras)
    video_camera = cameras[0] if cameras else profile.camera_names[0] if profile.camera_names else None
    twin = TwinRuntime(profile, task, cameras=cameras)
    runner = PolicyRunner(policy, profile, runtime, plan_log=str(plan_log) if plan_log else None)
    report = EvalReport("in-process", name, task, profile.name, gate=gate, runtime=runtime_record(runtime, policy, profile))
    rig = None

    def render(camera: str, snapshot: dict | None = None) -> np.ndarray:
        nonlocal rig
        if rig is None:
            rig = CameraRig(twin.sim.model, profile, twin.sim.camera_ids)
        if snapshot is None:
            return rig.render_rgb(camera, twin.sim.data)
        rig.load(snapshot)
        return rig.render_rgb(camera)

    was_training = policy.training
    policy.eval()
    try:
        with _progress(episodes, f"eval {task}", enabled=progress) as bar:
            job = bar.add_task("eval", total=episodes, rate="")
            for i in range(episodes):
                frames: list[np.ndarray] = []
                record = out_dir is not None and i < videos and video_camera is not None
                result = run_episode(twin, runner, seed + i, render,
                                     (lambda frames=frames: frames.append(render(video_camera))) if record else None)
                report.episodes.append(result)
                if record and frames:
                    report.videos.append(str(write_video(frames, out_dir / f"{video_prefix}{i:02d}.mp4",
                                                         profile.control.policy_rate_hz)))
                bar.update(job, advance=1, rate=f"{report.successes}/{i + 1} ok")
        if runner.latencies:
            lat = np.array(runner.latencies) * 1e3
            report.inference_ms = (float(np.median(lat)), float(np.percentile(lat, 99)))
    finally:
        if rig is not None:
            rig.close()
        twin.close()
        policy.train(was_training)
    return report


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def privileged_policy(checkpoint: str | Path) -> bool:
    """Whether a checkpoint observes the simulator's ground truth (allowed on the twin only)."""
    from robot_stack.contract import PRIVILEGED_KEYS
    from robot_stack.policies.diffusion.checkpoint import read_config

    return any(k in PRIVILEGED_KEYS for k in read_config(checkpoint)[0].obs.keys)


def policy_cameras(checkpoint: str | Path) -> str:
    """The cameras a checkpoint observes, as a launch argument (``front,wrist`` or ``none``)."""
    from robot_stack.policies.diffusion.checkpoint import read_config

    return ",".join(read_config(checkpoint)[0].obs.cameras) or "none"


def evaluate_over_ros(checkpoint: str | Path, task: str, robot: str, episodes: int, *, seed: int = 2000,
                      gate: float = 0.8, cameras: str | None = None, sim_time: bool = True,
                      runtime: RuntimeConfig = RuntimeConfig(), inference_steps: int | None = None,
                      log: Path | None = None, plan_log: Path | None = None) -> EvalReport:
    """Run ``launch/deploy.launch.xml`` (twin + policy_server) and score episodes through the contract.

    ``sim_time`` (default): the twin runs on its ``/clock`` as fast as it can, in lock-step with the
    policy server (sim time stands still while the policy thinks; the measured or configured inference
    latency is added to it), so the result is the in-process one and an evaluation takes a fraction of
    real time. ``sim_time=False``: the twin runs in real time, as hardware would.
    ``cameras``: the twin's rendered cameras (comma list, ``none``); default: those the policy observes.

    Between episodes the evaluator raises ``teleop/intervention`` (the policy yields), resets the twin
    with the next seed and hands control back, exactly as an operator would. Success and episode length
    come from the twin's ``task_success`` (its latched first success), as in-process.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger

    from robot_stack.contract import Contract
    from robot_stack.errors import UserError
    from robot_stack.launcher import LaunchRunner
    from robot_stack.profile import load_profile
    from robot_stack.resources import apply_ros_environment, share_dir
    from robot_stack.sim.runtime import TaskState
    from robot_stack.tasks import load_task_config

    apply_ros_environment()
    profile = load_profile(robot)
    cameras = policy_cameras(checkpoint) if cameras is None else cameras
    limit = load_task_config(task).episode_seconds
    rate = profile.control.policy_rate_hz
    args = {"sim": "true", "robot": robot, "task": task, "policy": str(checkpoint), "cameras": cameras,
            "seed": str(seed), "realtime_factor": "0" if sim_time else "1.0", "lockstep": str(sim_time).lower(),
            "inference_latency": str(runtime.inference_latency), "inference_steps": str(inference_steps or 0),
            "plan_log": str(plan_log or ""), "privileged": str(privileged_policy(checkpoint)).lower()}
    report = EvalReport("ros", str(checkpoint), task, profile.name, gate=gate)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log, "w") if log else None  # closed below
    runner = LaunchRunner(share_dir() / "launch" / "deploy.launch.xml", args, stdout=stream, stderr=stream)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("robot_stack_eval", context=context)
    executor = SingleThreadedExecutor(context=context)  # this context's, not rclpy's global default
    executor.add_node(node)
    contract = Contract(profile)
    intervention = contract.publisher(node, contract.intervention)
    reset = node.create_client(Trigger, contract.reset_service.name)
    success = node.create_client(Trigger, contract.task_success_service.name)
    where = log or "the launch output"

    def call(client, timeout: float = 10.0) -> Trigger.Response:
        future = client.call_async(Trigger.Request())
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise UserError(f"no answer from {client.srv_name} within {timeout:.0f} s (see {where})")
        return future.result()

    def hold(value: bool, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            intervention.publish(Bool(data=value))
            executor.spin_once(timeout_sec=0.05)

    chunks = []
    contract.subscription(node, contract.joint_trajectory, chunks.append)
    try:
        runner.start()
        if not reset.wait_for_service(timeout_sec=60.0):
            raise UserError(f"the twin did not come up within 60 s (see {where})")
        wait_until = time.monotonic() + 120.0  # the first chunk: the policy is loaded and acting
        while not chunks and time.monotonic() < wait_until:
            executor.spin_once(timeout_sec=0.1)
        if not chunks:
            raise UserError(f"policy_server published no actions within 120 s (see {where})")
        began = time.monotonic()
        with _progress(episodes, f"eval {task} over ROS" + (" (sim time)" if sim_time else "")) as bar:
            job = bar.add_task("eval", total=episodes, rate="")
            for i in range(episodes):
                hold(True, 0.3)
                call(reset)
                hold(False, 0.2)
                start = time.monotonic()
                state = TaskState.parse(call(success).message)
                while state.first_success is None and state.time < limit and time.monotonic() - start < 10 * limit:
                    executor.spin_once(timeout_sec=0.05)
                    state = TaskState.parse(call(success).message)
                report.episodes.append(episode_result(seed + i, state.first_success, state.time, state.progress, rate,
                                                      limit, time.monotonic() - start))
                bar.update(job, advance=1, rate=f"{report.successes}/{i + 1} ok")
        report.wall_seconds = time.monotonic() - began
    finally:
        runner.stop()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        if stream:
            stream.close()
    return report
