"""Shared test fixtures: DDS isolation, a background-spun rclpy node, and process spawning.

Each pytest session gets its own ROS_DOMAIN_ID (so parallel sessions on one machine never see
each other's topics) and DDS discovery is limited to localhost.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() ^ time.time_ns()).randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")

from robot_stack.resources import apply_ros_environment  # noqa: E402

apply_ros_environment()


class RosHarness:
    """An rclpy node spun in a background thread, with helpers to wait on topics."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_harness_{os.getpid()}", context=self.context)
        self.executor = MultiThreadedExecutor(2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and return a list that fills with (receive_time, msg)."""
        received: list = []
        self.node.create_subscription(msg_type, topic, lambda m: received.append((time.monotonic(), m)), qos)
        return received

    def call(self, srv_type, name: str, request=None, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available within {timeout} s")
        future = client.call_async(request if request is not None else srv_type.Request())
        wait_for(future.done, timeout, f"reply from {name}")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(autouse=True)
def own_state_folder(tmp_path, monkeypatch):
    """Each test keeps drivers' persistent state (the e-stop latch) to itself."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def ros() -> Iterator[RosHarness]:
    harness = RosHarness()
    yield harness
    harness.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start processes (own process group) that are stopped with SIGINT, then SIGKILL, at teardown."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def small_camera_profile(tmp_path, front_roi=None, name="so101_small.yaml"):
    """so101 with 32x24 cameras (the synthetic store's frames, ``write_store``), no region of interest but an
    optional one on front: the shipped profile's regions are pixels of its 640x480 cameras."""
    import yaml

    data = yaml.safe_load((REPO / "config" / "robots" / "so101.yaml").read_text())
    for cam in data["cameras"]:
        cam.update(width=32, height=24)
        cam.pop("roi", None)
    if front_roi is not None:
        data["cameras"][0]["roi"] = list(front_roi)
    data["hardware"]["calibration"] = None
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path
