"""Twin speed: where a camera frame's time goes, the twin node's real-time factor with 0, 1 and 2
cameras, frames published against frames expected, and the in-process TwinEnv's steps/s.

    .venv/bin/python benchmarks/sim_realtime.py [--robot so101] [--seconds 10] [--before d944984]

1. Profile (in-process, CPU ms per 640x480 frame, medians): scene update, draw calls, rasterisation
   (glFinish), read-back, flip, message conversion and publishing (to a subscriber in this process),
   and a physics tick; "before" renders as the old code did (``mujoco.Renderer``, the MJCF's visual
   meshes, every geom in model order), "after" with ``CameraRig`` (levels of detail of simplified
   meshes, geoms outside the view skipped, the floor drawn last).
2. Twin node: a real twin_node process run on sim time as fast as possible (realtime_factor:=0:
   /clock published, the renderer paces the sim, so no frame is dropped): sim seconds per wall
   second (>= 1.0: the twin can run in real time with those cameras), CPU seconds the twin process
   used per sim second (both cores: at most 2 per wall second), and the frames received per camera
   against sim window x fps (every stamp on the 1/fps grid). ``--before REV`` also runs the twin
   with the rendering code (sim/scene.py, sim/cameras.py, sim/twin_node.py) of git revision REV,
   interleaved with today's, so both see the same machine load.
3. TwinEnv (in-process gym env, 10 Hz policy steps): env steps/s with no camera, the profile's
   640x480 cameras, and the cameras at a policy's resolution rendered directly (a profile whose
   cameras are that size: the twin node then publishes the same pixels).
The load average is printed with every table: on a shared machine it moves every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CAMERA_SETS = ("none", "front", "front,wrist")
POLICY_SIZE = (128, 96)
"""A policy's camera resolution (width, height; 4:3 like the profile's, so the view is the same)."""


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


# -- the code of another revision (for --before) ---------------------------------------------------
def use_code(rev: str) -> None:
    """Import the twin's rendering modules as they were at git revision ``rev`` (before anything imports them)."""
    import robot_stack.sim  # noqa: F401 - the parent package

    for name in ("scene", "cameras", "twin_node"):
        source = subprocess.run(["git", "show", f"{rev}:sim/{name}.py"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout
        module = types.ModuleType(f"robot_stack.sim.{name}")
        module.__file__ = str(REPO / "sim" / f"{name}.py")
        sys.modules[module.__name__] = module
        exec(compile(source, f"{rev}:sim/{name}.py", "exec"), module.__dict__)  # our own git history


# -- 1. profile ------------------------------------------------------------------------------------
def profile_frames(robot: str, frames: int) -> dict[str, dict[str, float]]:
    """CPU ms per frame by stage, before and after, for each profile camera (medians)."""
    import functools

    import mujoco
    from OpenGL import GL

    import robot_stack.sim.robot as sim_robot
    from robot_stack import convert
    from robot_stack.profile import load_profile
    from robot_stack.sim import scene
    from robot_stack.sim.cameras import CameraRig

    profile = load_profile(robot)
    results: dict[str, dict[str, float]] = {}
    for label, simplify in (("before", False), ("after", True)):
        sim_robot.build_scene = functools.partial(scene.build_scene, simplify_meshes=simplify)
        try:
            sim = sim_robot.SimRobot(profile, "pick_cube", seed=0)
        finally:
            sim_robot.build_scene = scene.build_scene
        tick = []
        for _ in range(200):
            c = time.process_time()
            sim.step()
            tick.append(time.process_time() - c)
        results[f"physics tick ({label})"] = {"all": 1000 * float(np.median(tick))}
        rig = CameraRig(sim.model, profile, sim.camera_ids)
        context = rig._make_current()  # the GL context, to time the stages one by one
        old = mujoco.Renderer(sim.model, 480, 640) if not simplify else None  # the old code: mujoco.Renderer
        for name in rig.names:
            spec = rig.specs[name]
            rect = mujoco.MjrRect(0, 0, spec.width, spec.height)
            stages: dict[str, list[float]] = {k: [] for k in ("scene update", "draw calls", "rasterise (glFinish)",
                                                               "read-back", "flip rows", "to Image message")}
            for _ in range(frames):
                sim.step()
                t = [time.process_time()]
                if old is not None:  # every geom, the MJCF's meshes, in model order (the floor first)
                    old.update_scene(sim.data, camera=rig.ids[name])
                    scn, ctx = old.scene, old._mjr_context
                    old._gl_context.make_current()
                else:
                    rig.update_scene(name, sim.data)
                    scn, ctx = rig._scene, context
                    rig._make_current()
                t.append(time.process_time())
                mujoco.mjr_render(rect, scn, ctx)
                t.append(time.process_time())
                GL.glFinish()
                t.append(time.process_time())
                pixels = np.empty((spec.height, spec.width, 3), np.uint8)
                mujoco.mjr_readPixels(pixels, None, rect, ctx)
                t.append(time.process_time())
                image = np.flipud(pixels).copy()
                t.append(time.process_time())
                convert.array_to_image(image, spec.encoding, convert.to_stamp(0.0), spec.frame_id)
                t.append(time.process_time())
                for stage, a, b in zip(stages, t, t[1:]):
                    stages[stage].append(b - a)
            results[f"{name} ({label})"] = {k: 1000 * float(np.median(v)) for k, v in stages.items()}
        if old is not None:
            old.close()
        rig.close()
    results["publish Image + CameraInfo"] = {"all": publish_ms(profile, frames)}
    return results


def publish_ms(profile, frames: int) -> float:
    """Wall ms per CameraPublisher.publish_color of a 640x480 frame, a subscriber in this process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from robot_stack.contract import Contract
    from robot_stack.drivers.camera.publisher import CameraPublisher

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("publish_probe", context=context)
    topic = Contract(profile).camera(profile.camera_names[0]).image
    received: list[float] = []
    node.create_subscription(Image, topic.name, lambda m: received.append(time.monotonic()), topic.qos)
    publisher = CameraPublisher(node, profile, profile.camera_names[0])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    spec = profile.camera(profile.camera_names[0])
    image = np.random.default_rng(0).integers(0, 255, (spec.height, spec.width, 3), np.uint8)
    try:
        while publisher._image.get_subscription_count() == 0:
            time.sleep(0.01)
        times = []
        for k in range(frames):
            t = time.perf_counter()
            publisher.publish_color(image, float(k))
            times.append(time.perf_counter() - t)
            time.sleep(1 / 30)
        return 1000 * float(np.median(times))
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


# -- 2. twin node ----------------------------------------------------------------------------------
def twin_run(robot: str, cameras: str, seconds: float, rev: str | None) -> dict[str, float]:
    """Real-time factor, CPU s per sim s and frames received / expected of a twin_node run as fast as possible."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from camera_latency import group_cpu_seconds  # benchmarks/: the twin's process group (its own session)

    from robot_stack import convert
    from robot_stack.contract import qos
    from robot_stack.profile import load_profile
    from robot_stack.resources import ros_environment

    names = [c for c in cameras.split(",") if c and c != "none"]
    profile = load_profile(robot)
    fps = {n: profile.camera(n).fps for n in names}
    twin = subprocess.Popen([sys.executable, __file__, "--twin-node", rev or "", "--ros-args", "-p", f"robot:={robot}",
                             "-p", "task:=pick_cube", "-p", f"cameras:={cameras}", "-p", "realtime_factor:=0.0"],
                            env=ros_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("rtf_probe", context=context)
    clocks: list[tuple[float, float]] = []
    stamps: dict[str, list[float]] = {n: [] for n in names}
    node.create_subscription(Clock, "/clock", lambda m: clocks.append((time.monotonic(), convert.to_sec(m.clock))), 100)
    for n in names:  # a deep reader queue: the count measures the twin, not this probe
        node.create_subscription(Image, f"{n}/color/image_raw",
                                 lambda m, n=n: stamps[n].append(convert.to_sec(m.header.stamp)), qos(100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(clocks) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        if not clocks:
            raise RuntimeError(f"twin ({cameras}, {rev or 'today'}) published no /clock")
        time.sleep(2.0)  # warm-up
        (w0, s0), cpu0 = clocks[-1], group_cpu_seconds(twin.pid)
        time.sleep(seconds)
        (w1, s1), cpu1 = clocks[-1], group_cpu_seconds(twin.pid)
        time.sleep(1.0)  # frames of the window still in flight
        result = {"rtf": (s1 - s0) / (w1 - w0), "cpu_per_sim_s": (cpu1 - cpu0) / (s1 - s0), "received": 0.0,
                  "expected": 0.0, "off_grid": 0.0}
        for n in names:
            got = np.array(sorted(set(stamps[n])))
            window = got[(got > s0) & (got <= s1)]
            result["received"] += len(window)
            result["expected"] += (s1 - s0) * fps[n]
            # frame k is the state of the first control tick at or after k / fps
            result["off_grid"] += int(np.sum(np.abs(np.diff(window) - 1 / fps[n]) >= profile.control_period - 1e-6))
        return result
    finally:
        os.killpg(twin.pid, signal.SIGINT)
        try:
            twin.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(twin.pid, signal.SIGKILL)
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


# -- 3. TwinEnv ------------------------------------------------------------------------------------
def env_steps_per_second(robot: str, cameras: list[str], size: tuple[int, int] | None, steps: int) -> float:
    from robot_stack.profile import load_profile
    from robot_stack.sim.gym_env import TwinEnv

    profile = load_profile(robot)
    if size is not None:  # the cameras at the policy's resolution: a property of the profile's cameras
        profile = dataclasses.replace(profile, cameras=tuple(
            c.at_resolution(*size) for c in profile.cameras))
    env = TwinEnv(profile, "pick_cube", cameras=cameras)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for warm in (True, False):
        start = time.perf_counter()
        for _ in range(3 if warm else steps):
            action = obs["joint_pos"] + rng.normal(0, 0.05, obs["joint_pos"].shape)
            obs, *_ = env.step(np.clip(action, env.action_space.low, env.action_space.high))
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


ENV_CASES = [([], None), (["front"], POLICY_SIZE), (["front"], None), (["front", "wrist"], POLICY_SIZE),
             (["front", "wrist"], None)]


def env_worker(args: argparse.Namespace) -> None:
    """Print the TwinEnv rate of case ``--case`` with the code of ``--code`` (a fresh process per revision)."""
    if args.code:
        use_code(args.code)
    cameras, size = ENV_CASES[args.case]
    steps = args.steps if not cameras else max(20, args.steps // (2 if size else 10))
    print(f"{env_steps_per_second(args.robot, cameras, size, steps):.2f}", flush=True)


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--twin-node":  # the twin process of twin_run
        rev = sys.argv[2]
        del sys.argv[1:3]
        if rev:
            use_code(rev)
        from robot_stack.sim.twin_node import main as twin_main

        twin_main()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="so101")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per twin run (wall s)")
    parser.add_argument("--frames", type=int, default=20, help="frames per camera and stage in the profile")
    parser.add_argument("--steps", type=int, default=200, help="TwinEnv steps without cameras (fewer with)")
    parser.add_argument("--before", metavar="REV", help="also run the twin and TwinEnv with the rendering code of this git revision")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each twin and TwinEnv case (medians)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["profile", "twin", "env"])
    parser.add_argument("--case", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--env-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.env_worker:
        env_worker(args)
        return
    from rich.console import Console
    from rich.table import Table

    from robot_stack.resources import apply_ros_environment

    apply_ros_environment()
    console = Console(width=max(Console().width, 150))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'default')}"

    if "profile" not in args.skip:
        table = Table(title=f"CPU ms per frame by stage, {args.robot}, 640x480 ({machine}, {load()})")
        rows = profile_frames(args.robot, args.frames)
        stages = list(next(v for k, v in rows.items() if k.startswith("front")))
        for column in ("", *stages, "total"):
            table.add_column(column)
        for key, values in rows.items():
            if "all" in values:
                table.add_row(key, *[""] * len(stages), f"{values['all']:.2f}")
            else:
                table.add_row(key, *(f"{values[s]:.2f}" for s in stages), f"{sum(values.values()):.1f}")
        console.print(table)

    revisions = [("today", None)] + ([(args.before, args.before)] if args.before else [])
    if "twin" not in args.skip:
        table = Table(title=f"twin_node on sim time as fast as possible, {args.robot}, pick_cube, cameras 640x480 @ 30 Hz, "
                            f"100 Hz control; medians of {args.rounds} runs ({machine})")
        for column in ("code", "cameras", "real-time factor", "CPU s per sim s", "frames received / expected",
                       "off the 1/fps grid", "load"):
            table.add_column(column)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        loads: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):  # interleaved, the old code first: both see the same machine state
            for cameras in CAMERA_SETS:
                for label, rev in revisions[::-1]:
                    runs.setdefault((label, cameras), []).append(twin_run(args.robot, cameras, args.seconds, rev))
                    loads.setdefault((label, cameras), []).append(os.getloadavg()[0])
        for (label, cameras), results in runs.items():
            med = {k: float(np.median([r[k] for r in results])) for k in results[0]}
            received, expected = sum(r["received"] for r in results), sum(r["expected"] for r in results)
            frames = f"{received:.0f} / {expected:.1f}" if cameras != "none" else "-"
            off_grid = f"{sum(r['off_grid'] for r in results):.0f}" if cameras != "none" else "-"
            table.add_row(label, cameras, f"{med['rtf']:.2f}x", f"{med['cpu_per_sim_s']:.2f}", frames, off_grid,
                          f"{np.median(loads[label, cameras]):.1f}")
        console.print(table)

    if "env" not in args.skip:
        table = Table(title=f"TwinEnv (in-process), {args.robot}, pick_cube, 10 Hz policy steps; medians of {args.rounds} "
                            f"runs ({machine})")
        for column in ("code", "observation cameras", "resolution", "env steps/s", "sim s per wall s", "load"):
            table.add_column(column)
        rates: dict[tuple[str, int], list[float]] = {}
        loads = {}
        for _ in range(args.rounds):
            for case in range(len(ENV_CASES)):
                for label, rev in revisions[::-1]:
                    out = subprocess.run([sys.executable, __file__, "--env-worker", "--code", rev or "", "--case", str(case),
                                          "--robot", args.robot, "--steps", str(args.steps)],
                                         capture_output=True, text=True, check=True).stdout
                    rates.setdefault((label, case), []).append(float(out.split()[-1]))
                    loads.setdefault((label, case), []).append(os.getloadavg()[0])
        for (label, case), values in sorted(rates.items(), key=lambda kv: (kv[0][0] != args.before, kv[0][1])):
            cameras, size = ENV_CASES[case]
            rate = float(np.median(values))
            table.add_row(label, ",".join(cameras) or "none (state only)",
                          "-" if not cameras else f"{size[0]}x{size[1]}" if size else "640x480", f"{rate:.1f}",
                          f"{rate / 10:.2f}x", f"{np.median(loads[label, case]):.1f}")
        console.print(table)


if __name__ == "__main__":
    main()
