"""HIL actor/learner transport and learner throughput.

* ``transitions/s over DDS``: a sender process publishes batches of 64 pick_cube transitions
  (obs 29 float32, action 6) on ``hil/transitions`` as fast as the reliable QoS lets it; this process
  decodes and validates each (``transport.decode``) and counts what arrives in ``--seconds``.
* ``decode + validate``: microseconds per transition, in-process.
* ``weights latency``: a publisher process ships the default actor network (``actor_state()`` of the
  pick_cube_state agent) on the latched ``hil/weights`` every 0.5 s; latency is the receive time
  (after decoding and checking every name and shape) minus the publication stamp, both on this
  machine's clock.
* ``weights publish``: the learner's side of a publication (``actor_state()`` and encoding).
* ``SACAgent updates/s``: ``SACAgent.update`` at the pick_cube_state config (batch 256, 2 critics,
  256x256), ``utd_ratio`` critic updates per actor update, one torch thread, on ``mixed_batch`` batches.
* ``hil_learner node updates/s``: the learner process's own figure (its status) while a feeder
  process sends 128 transitions/s, more than it can keep up with at ``utd_ratio`` 4.

Both processes use the shipped Fast DDS profile (shared memory + UDP). Prints medians over ``--rounds``.

    .venv/bin/python benchmarks/hil_transport.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time

import numpy as np

BATCH = 64


def _space():
    from robot_stack.policies.hil.config import load_hil_config
    from robot_stack.policies.hil.spaces import RLSpace

    cfg = load_hil_config("pick_cube_state")
    return cfg, RLSpace(cfg.robot, "pick_cube", cfg)


def _batch(space, first: int):
    from robot_stack.policies.hil.transport import Transition, TransitionBatch

    rng = np.random.default_rng(first)
    items = [Transition(rng.normal(size=space.obs_dim).astype(np.float32),
                        rng.uniform(-1, 1, space.act_dim).astype(np.float32), 0.0,
                        rng.normal(size=space.obs_dim).astype(np.float32), False, False, bool(i % 5 == 0), 0, i)
             for i in range(BATCH)]
    return TransitionBatch("bench", "s0", 0, first, items)


def _node(name: str):
    import rclpy

    rclpy.init()
    return rclpy.create_node(name)


# -- roles (child processes) -------------------------------------------------------------------------
def send_transitions(seconds: float) -> None:
    import rclpy

    from robot_stack.policies.hil import transport

    _, space = _space()
    node = _node("bench_sender")
    send = transport.publisher(node, "transitions")
    while send.publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    payloads = [transport.encode(_batch(space, k * BATCH)) for k in range(8)]
    end, k = time.monotonic() + seconds + 1.0, 0
    while time.monotonic() < end:
        send.publisher.publish(transport.to_msg(payloads[k % len(payloads)]))
        k += 1
    rclpy.shutdown()


def feed_learner(seconds: float) -> None:
    """A batch of 64 transitions every 0.5 s (128/s: more than the learner can update on at utd_ratio 4)."""
    import rclpy

    from robot_stack.policies.hil import transport

    _, space = _space()
    node = _node("bench_feeder")
    send = transport.publisher(node, "transitions")
    while send.publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    end, k = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        send(_batch(space, k * BATCH))
        k += 1
        time.sleep(0.5)
    rclpy.shutdown()


def send_weights(count: int) -> None:
    import rclpy

    from robot_stack.policies.hil import transport
    from robot_stack.policies.hil.agent import SACAgent
    from robot_stack.policies.hil.transport import Weights

    cfg, space = _space()
    agent = SACAgent(cfg.agent, space.obs_dim, space.act_dim, space.state_dim, seed=0)
    node = _node("bench_weights")
    send = transport.publisher(node, "weights")
    while send.publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    for v in range(1, count + 1):
        send(Weights(v, v, "bench", agent.actor_state(), stamp=time.time()))
        time.sleep(0.5)
    time.sleep(1.0)
    rclpy.shutdown()


# -- measurements ------------------------------------------------------------------------------------
def child(role: str, arg: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--role", role, "--arg", str(arg)])


def transitions_per_s(seconds: float) -> float:
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from robot_stack.policies.hil import transport
    from robot_stack.policies.hil.transport import TransitionSchema

    _, space = _space()
    schema = TransitionSchema(space.obs_dim, space.act_dim)
    node = _node("bench_receiver")
    times: list[float] = []

    def on_msg(msg) -> None:
        transport.decode(bytes(msg.data), "transitions", schema=schema)
        times.append(time.monotonic())

    node.create_subscription(UInt8MultiArray, transport.TOPICS["transitions"], on_msg, transport.qos("transitions"))
    proc = child("transitions", seconds)
    while not times:
        rclpy.spin_once(node, timeout_sec=0.1)
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        rclpy.spin_once(node, timeout_sec=0.1)
    proc.wait()
    rclpy.shutdown()
    n = sum(start <= t < start + seconds for t in times)
    return n * BATCH / seconds


def weights_latency_ms(count: int) -> tuple[float, int]:
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from robot_stack.policies.hil import transport
    from robot_stack.policies.hil.agent import SACAgent

    cfg, space = _space()
    layout = {k: v.shape for k, v in SACAgent(cfg.agent, space.obs_dim, space.act_dim).actor_state().items()}
    node = _node("bench_actor")
    lat: list[float] = []
    size = [0]

    def on_msg(msg) -> None:
        payload = bytes(msg.data)
        w = transport.decode(payload, "weights", weights_layout=layout)
        lat.append((time.time() - w.stamp) * 1e3)
        size[0] = len(payload)

    node.create_subscription(UInt8MultiArray, transport.TOPICS["weights"], on_msg, transport.qos("weights"))
    proc = child("weights", count)
    while proc.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.1)
    rclpy.shutdown()
    return float(np.median(lat[1:] or lat)), size[0]


def learner_node_updates_per_s(seconds: float) -> float:
    """The hil_learner process's own updates/s (its status) while it receives 128 transitions/s."""
    import tempfile

    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from robot_stack.policies.hil import transport

    node = _node("bench_status")
    rates: list[float] = []
    node.create_subscription(UInt8MultiArray, transport.TOPICS["learner_status"],
                             lambda m: rates.append(transport.decode(bytes(m.data), "learner_status").updates_per_s),
                             transport.qos("learner_status"))
    with tempfile.TemporaryDirectory() as run_dir:
        learner = subprocess.Popen(["hil_learner", "--ros-args", "-p", f"run_dir:={run_dir}", "-p", "progress:=false",
                                    "-p", "checkpoint_period_s:=3600.0"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        feeder = child("feed", seconds + 5.0)
        while feeder.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        learner.send_signal(2)
        learner.wait()
    rclpy.shutdown()
    return float(np.median(rates[-25:]))  # the last 5 s (status at 5 Hz)


def weights_publish_ms() -> float:
    """Learner side of a weights publication: actor_state() and encoding (median of 20)."""
    from robot_stack.policies.hil import transport
    from robot_stack.policies.hil.agent import SACAgent
    from robot_stack.policies.hil.transport import Weights

    cfg, space = _space()
    agent = SACAgent(cfg.agent, space.obs_dim, space.act_dim, space.state_dim, seed=0)
    times = []
    for v in range(20):
        start = time.perf_counter()
        transport.encode(Weights(v, v, "bench", agent.actor_state(), stamp=time.time()))
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def decode_us() -> float:
    from robot_stack.policies.hil import transport
    from robot_stack.policies.hil.transport import TransitionSchema

    _, space = _space()
    schema = TransitionSchema(space.obs_dim, space.act_dim)
    payload = transport.encode(_batch(space, 0))
    start = time.perf_counter()
    for _ in range(50):
        transport.decode(payload, "transitions", schema=schema)
    return (time.perf_counter() - start) / (50 * BATCH) * 1e6


def updates_per_s(seconds: float) -> float:
    import torch

    from robot_stack.policies.hil.agent import SACAgent
    from robot_stack.policies.hil.buffer import ReplayBuffer, mixed_batch

    torch.set_num_threads(1)
    cfg, space = _space()
    rng = np.random.default_rng(0)
    agent = SACAgent(cfg.agent, space.obs_dim, space.act_dim, space.state_dim, seed=0)
    bufs = [ReplayBuffer(5000, space.obs_dim, space.act_dim) for _ in range(2)]
    for b in bufs:
        for _ in range(2000):
            b.add(rng.normal(size=space.obs_dim), rng.uniform(-1, 1, space.act_dim), 0.0,
                  rng.normal(size=space.obs_dim), False)
    g, n = cfg.agent.utd_ratio, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = mixed_batch(bufs[0], bufs[1], cfg.agent.batch_size, cfg.agent.demo_ratio, rng)
        agent.update(batch, update_actor=n % g == g - 1)
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--role", choices=("transitions", "weights", "feed"), help=argparse.SUPPRESS)
    parser.add_argument("--arg", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from robot_stack.resources import apply_ros_environment

    if args.role == "transitions":
        return send_transitions(args.arg)
    if args.role == "weights":
        return send_weights(int(args.arg))
    if args.role == "feed":
        return feed_learner(args.arg)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    apply_ros_environment()
    rows: dict[str, list[float]] = {"transitions/s over DDS (batches of 64)": [], "decode + validate (us/transition)": [],
                                    "weights publish: actor_state + encode (ms)": [], "weights latency (ms)": [],
                                    "SACAgent updates/s (in-process, 1 thread)": [],
                                    "hil_learner node updates/s (128 transitions/s in)": []}
    size = 0
    for r in range(args.rounds):
        rows["transitions/s over DDS (batches of 64)"].append(transitions_per_s(args.seconds))
        rows["decode + validate (us/transition)"].append(decode_us())
        lat, size = weights_latency_ms(10)
        rows["weights publish: actor_state + encode (ms)"].append(weights_publish_ms())
        rows["weights latency (ms)"].append(lat)
        rows["SACAgent updates/s (in-process, 1 thread)"].append(updates_per_s(args.seconds))
        rows["hil_learner node updates/s (128 transitions/s in)"].append(learner_node_updates_per_s(2 * args.seconds))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\nHIL transport ({platform.node()}, {os.cpu_count()} CPUs, {args.rounds} rounds, medians; "
          f"weights message {size / 1024:.0f} KiB)\n")
    print(f"| {'measure':50s} | {'median':>10s} | {'min':>10s} | {'max':>10s} |")
    print(f"|{'-' * 52}|{'-' * 12}|{'-' * 12}|{'-' * 12}|")
    for name, values in rows.items():
        print(f"| {name:50s} | {np.median(values):10.1f} | {min(values):10.1f} | {max(values):10.1f} |")


if __name__ == "__main__":
    main()
