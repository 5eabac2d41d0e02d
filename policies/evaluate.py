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
        return (f"{self.path}: {self.successes}/{len(self.episodes)} successes = {self.success_rate:.0%} "
                f"(95% CI {lo:.0%}-{hi:.0%}), median successful length {int(np.median(lengths))} steps; "
                f"gate {self.gate:.0%}: {'PASS' if self.passed else 'FAIL'}")

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
                                  self.success_rate, (lo, hi), self.gate, self.passed)
        return record.save(checkpoint)


def _progress(total: int, description: str, enabled: bool = True):  # noqa: ANN202
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), transient=False, disable=not enabled)


def evaluate_in_process(checkpoint: str | Path, task: str, robot: str, episodes: int, *, seed: int = 1000,
                        gate: float = 0.8, videos: int = 2, out_dir: Path | None = None,
                        inference_steps: int | None = None) -> EvalReport:
    """Roll the checkpoint's policy out in the in-process twin (no ROS), ``episodes`` seeds from ``seed``."""
    from robot_stack.policies.diffusion.checkpoint import load_policy
    from robot_stack.profile import load_profile

    profile = load_profile(robot)
    policy = load_policy(checkpoint, profile)
    if inference_steps:
        policy.inference_steps = inference_steps
    return evaluate_policy(policy, profile, task, episodes, seed=seed, gate=gate, videos=videos, out_dir=out_dir,
                           name=str(checkpoint))


def evaluate_policy(policy, profile, task: str, episodes: int, *, seed: int = 1000, gate: float = 0.8,  # noqa: ANN001
                    videos: int = 2, out_dir: Path | None = None, name: str = "policy", video_prefix: str = "rollout_",
                    progress: bool = True) -> EvalReport:
    """Roll a loaded policy (``reset()``/``act(obs)``) out in the in-process twin; also used during training.

    Videos of the first ``videos`` episodes go to ``out_dir/<video_prefix><i>.mp4`` (first policy camera, or
    the profile's first camera for a low-dim policy). The policy's train/eval mode is restored afterwards.
    """
    import torch

    from robot_stack.sim.gym_env import TwinEnv

    cameras = list(policy.cfg.obs.cameras)
    video_camera = cameras[0] if cameras else profile.camera_names[0] if profile.camera_names else None
    env = TwinEnv(profile, task, cameras=cameras)
    report = EvalReport("in-process", name, task, profile.name, gate=gate)
    generator = torch.Generator().manual_seed(seed)
    was_training = policy.training
    policy.eval()
    try:
        with _progress(episodes, f"eval {task}", enabled=progress) as bar:
            job = bar.add_task("eval", total=episodes, rate="")
            for i in range(episodes):
                frames: list[np.ndarray] = []
                record_video = out_dir is not None and i < videos and video_camera is not None
                obs, info = env.reset(seed=seed + i)
                policy.reset()
                start, steps, done = time.perf_counter(), 0, False
                while not done:
                    for action in policy.act(obs, generator):
                        obs, _, terminated, truncated, info = env.step(action)
                        steps += 1
                        if record_video:
                            frames.append(env.rig.render_rgb(video_camera, env.sim.data))
                        done = terminated or truncated
                        if done:
                            break
                report.episodes.append(EpisodeResult(seed + i, bool(info["success"]), steps,
                                                     time.perf_counter() - start, float(info["progress"])))
                if record_video and frames:
                    report.videos.append(str(write_video(frames, out_dir / f"{video_prefix}{i:02d}.mp4",
                                                         profile.control.policy_rate_hz)))
                bar.update(job, advance=1, rate=f"{report.successes}/{i + 1} ok")
    finally:
        env.close()
        policy.train(was_training)
    return report


def write_video(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def policy_cameras(checkpoint: str | Path) -> str:
    """The cameras a checkpoint observes, as a launch argument (``front,wrist`` or ``none``)."""
    from robot_stack.policies.diffusion.checkpoint import read_config

    return ",".join(read_config(checkpoint)[0].obs.cameras) or "none"


def evaluate_over_ros(checkpoint: str | Path, task: str, robot: str, episodes: int, *, seed: int = 2000,
                      gate: float = 0.8, cameras: str | None = None, realtime_factor: float = 1.0,
                      log: Path | None = None) -> EvalReport:
    """Run ``launch/deploy.launch.xml`` (twin + policy_server) and score episodes through the contract.

    ``cameras``: the twin's rendered cameras (comma list, ``none``); default: those the policy observes.

    Between episodes the evaluator raises ``teleop/intervention`` (the policy yields), resets the twin
    with the next seed and hands control back, exactly as an operator would.
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
    from robot_stack.sim.tasks import load_task_config

    apply_ros_environment()
    profile = load_profile(robot)
    cameras = policy_cameras(checkpoint) if cameras is None else cameras
    limit = load_task_config(task).episode_seconds
    args = {"sim": "true", "robot": robot, "task": task, "policy": str(checkpoint), "cameras": cameras,
            "seed": str(seed), "realtime_factor": str(realtime_factor)}
    report = EvalReport("ros", str(checkpoint), task, profile.name, gate=gate)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log, "w") if log else None  # noqa: SIM115 - closed below
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

    def call(client, timeout: float = 10.0) -> Trigger.Response:  # noqa: ANN001
        future = client.call_async(Trigger.Request())
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise UserError(f"no answer from {client.srv_name} within {timeout:.0f} s (see {log or 'the launch output'})")
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
            raise UserError(f"the twin did not come up within 60 s (see {log or 'the launch output'})")
        wait_until = time.monotonic() + 120.0  # the first chunk: the policy is loaded and acting
        while not chunks and time.monotonic() < wait_until:
            executor.spin_once(timeout_sec=0.1)
        if not chunks:
            raise UserError(f"policy_server published no actions within 120 s (see {log or 'the launch output'})")
        with _progress(episodes, f"eval {task} over ROS") as bar:
            job = bar.add_task("eval", total=episodes, rate="")
            for i in range(episodes):
                hold(True, 0.3)
                call(reset)
                hold(False, 0.2)
                start = time.monotonic()
                done = False
                while not done and time.monotonic() - start < limit:
                    answer = call(success)
                    done = answer.success
                    executor.spin_once(timeout_sec=0.2)
                progress = float(answer.message.split("progress=")[1].split()[0]) if "progress=" in answer.message else 0.0
                report.episodes.append(EpisodeResult(seed + i, done, int((time.monotonic() - start)
                                                     * profile.control.policy_rate_hz), time.monotonic() - start, progress))
                bar.update(job, advance=1, rate=f"{report.successes}/{i + 1} ok")
    finally:
        runner.stop()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        if stream:
            stream.close()
    return report
