"""Evaluate a policy on the emulated cell through the hardware path, as the lab's person would.

``CellSession`` starts ``cell.launch.xml`` (the cell and its ``cell_harness``) and
``deploy.launch.xml sim:=false`` pointed at the cell's bus and camera streams (``servo_arm_node``,
``opencv_camera_node``, ``policy_server``): nothing in the deploy path knows it is not a robot.
``evaluate_on_cell`` then plays the person between episodes: it takes control
(``teleop/intervention``, the policy yields), has the harness clear the table, home the arm and
place the objects at random, gives control back, and judges the episode from the cell's ground
truth (``/cell_harness/task_success``) until success or the task's time limit.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import IO

from robot_stack.errors import UserError
from robot_stack.policies.evaluate import EpisodeResult, EvalReport, policy_cameras


CELL_START_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CellSession:
    """The cell + the hardware path on it + a ROS node for the person's side (a context manager).

    With a ``checkpoint``: ``deploy.launch.xml sim:=false`` (drivers + policy_server) on the cell's
    cameras (default: those the policy observes). Without: the cell's drivers alone (``drivers:=true``)."""

    def __init__(self, checkpoint: str | Path | None = None, cell: str = "default", *, cameras: str | None = None,
                 seed: int = 0, allow_unvalidated: bool = False, log: IO[str] | None = None):
        from robot_stack.sim.cell.config import load_cell

        self.config = load_cell(cell)
        if cameras is None:
            cameras = policy_cameras(checkpoint) if checkpoint is not None else "all"
        self.cameras = cameras
        self._tmp = tempfile.TemporaryDirectory(prefix="robot_stack_cell_")
        self.bus = str(Path(self._tmp.name) / "arm")
        self.camera_port, self.harness_port = free_port(), free_port()
        streams = f"http://127.0.0.1:{self.camera_port}"
        self.cell_args = {"cell": cell, "robot": self.config.robot, "cameras": self.cameras, "seed": str(seed),
                          "camera_port": str(self.camera_port), "harness_port": str(self.harness_port),
                          "bus": self.bus, "leader_bus": str(Path(self._tmp.name) / "leader"),
                          "task": self.config.task, "drivers": str(checkpoint is None).lower()}
        self.deploy_args = None if checkpoint is None else {
            "sim": "false", "robot": self.config.robot, "policy": str(checkpoint), "task": self.config.task,
            "cameras": self.cameras, "port": self.bus, "front_device": f"{streams}/front.mjpg",
            "wrist_device": f"{streams}/wrist.mjpg", "allow_unvalidated": str(allow_unvalidated).lower()}
        self.streams = {name: f"{streams}/{name}.mjpg" for name in ("front", "wrist")}
        self.harness_url = f"http://127.0.0.1:{self.harness_port}/harness"
        self.log = log
        self.cell_runner = self.deploy_runner = None

    def __enter__(self) -> CellSession:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_srvs.srv import Trigger

        from robot_stack.contract import Contract
        from robot_stack.launcher import LaunchRunner
        from robot_stack.profile import load_profile
        from robot_stack.resources import apply_ros_environment, share_dir
        from robot_stack.sim.cell.harness import HarnessClient
        from robot_stack.sim.cell.harness_node import NAMESPACE

        apply_ros_environment()
        launch = share_dir() / "launch"
        self.profile = load_profile(self.config.robot)
        self.harness = HarnessClient(self.harness_url)
        self.cell_runner = LaunchRunner(launch / "cell.launch.xml", self.cell_args, stdout=self.log, stderr=self.log)
        if self.deploy_args is not None:
            self.deploy_runner = LaunchRunner(launch / "deploy.launch.xml", self.deploy_args, stdout=self.log,
                                              stderr=self.log)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("robot_stack_cell_eval", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        contract = self.contract = Contract(self.profile)
        self.intervention = contract.publisher(self.node, contract.intervention)
        self.reset_client = self.node.create_client(Trigger, f"{NAMESPACE}/reset")
        self.success_client = self.node.create_client(Trigger, f"{NAMESPACE}/task_success")
        self.chunks: list = []
        contract.subscription(self.node, contract.joint_trajectory, self.chunks.append)
        try:
            self.cell_runner.start()
            self._wait_for_cell(CELL_START_S)
            if self.deploy_runner is not None:
                self.deploy_runner.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_cell(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.harness.state()
                return
            except UserError:
                if self.cell_runner.wait(0.2) is not None:
                    raise UserError(f"the cell stopped while starting (see {getattr(self.log, 'name', 'its output')})") from None
                if time.monotonic() > deadline:
                    raise UserError(f"the cell did not answer within {timeout:.0f} s") from None

    def __exit__(self, *exc: object) -> None:
        for runner in (self.deploy_runner, self.cell_runner):
            if runner is not None and runner.supervisor is not None:
                runner.stop()
        if getattr(self, "context", None) is not None:
            self.executor.shutdown()
            self.node.destroy_node()
            self.context.try_shutdown()
            self.context = None
        self._tmp.cleanup()

    # -- the person's side ---------------------------------------------------------------------------
    def call(self, client, timeout: float = 30.0):
        future = client.call_async(client.srv_type.Request())
        deadline = time.monotonic() + timeout
        while not future.done():
            self._check_cell()
            if time.monotonic() > deadline:
                raise UserError(f"no answer from {client.srv_name} within {timeout:.0f} s")
            self.executor.spin_once(timeout_sec=0.1)
        return future.result()

    def _check_cell(self) -> None:
        if self.cell_runner.wait(0) is not None:
            raise UserError(f"the cell stopped (see {getattr(self.log, 'name', 'its output')})")

    def hold(self, control: bool, seconds: float) -> None:
        """Hold (``control``) or hand back the robot for ``seconds``, as a teleoperator's switch does."""
        from std_msgs.msg import Bool

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.intervention.publish(Bool(data=control))
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_policy(self, timeout: float = 180.0) -> None:
        """Until the policy server publishes its first chunk (loaded, cameras and joints streaming)."""
        if not self.reset_client.wait_for_service(timeout_sec=60.0):
            raise UserError("cell_harness did not come up within 60 s")
        deadline = time.monotonic() + timeout
        while not self.chunks and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
        if not self.chunks:
            raise UserError(f"policy_server published no actions within {timeout:.0f} s on the cell")

    def episode(self, limit: float) -> tuple[bool, float, float, str]:
        """One episode: take control, reset (clear, home, place), hand back, judge until success or ``limit`` s.
        Returns (success, seconds, progress, the reset's message)."""
        self.hold(True, 0.3)
        reset = self.call(self.reset_client)
        if not reset.success:
            raise UserError(f"the cell could not reset: {reset.message}")
        self.hold(False, 0.2)
        start = time.monotonic()
        done, answer = False, None
        while not done and time.monotonic() - start < limit:
            answer = self.call(self.success_client)
            done = answer.success
            self.executor.spin_once(timeout_sec=0.2)
        seconds = time.monotonic() - start
        progress = float(answer.message.split("progress=")[1].split()[0]) if answer and "progress=" in answer.message else 0.0
        return done, seconds, progress, reset.message


def evaluate_on_cell(checkpoint: str | Path, cell: str = "default", episodes: int = 10, *, seed: int = 3000,
                     gate: float = 0.8, allow_unvalidated: bool = False, log: Path | None = None,
                     progress: bool = True) -> EvalReport:
    """Run ``episodes`` episodes of the checkpoint on the cell (objects placed from ``seed`` on)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from robot_stack.sim.tasks import load_task_config

    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    stream = open(log, "w") if log else None  # closed below
    try:
        with CellSession(checkpoint, cell, seed=seed, allow_unvalidated=allow_unvalidated, log=stream) as session:
            limit = load_task_config(session.config.task).episode_seconds
            report = EvalReport(f"cell:{session.config.name}", str(checkpoint), session.config.task,
                                session.profile.name, gate=gate)
            session.wait_for_policy()
            rate = session.profile.control.policy_rate_hz
            columns = (TextColumn(f"eval on cell {session.config.name!r}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
            with Progress(*columns, disable=not progress) as bar:
                job = bar.add_task("eval", total=episodes, rate="")
                for i in range(episodes):
                    done, seconds, prog, _ = session.episode(limit)
                    report.episodes.append(EpisodeResult(seed + i, done, int(seconds * rate), seconds, prog))
                    bar.update(job, advance=1, rate=f"{report.successes}/{i + 1} ok")
    finally:
        if stream:
            stream.close()
    return report
