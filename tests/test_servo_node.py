"""servo_arm_node end to end: emulator process + node process + this test, over real DDS."""

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.drivers.servo.calibration import TickMap, load_calibration
from robot_stack.drivers.servo.testing import dynamixel_profile, read_status, start_emulator
from robot_stack.profile import load_profile
from robot_stack.resources import ros_environment

NODE = [str(Path(sys.executable).parent / "servo_arm_node")]


def start(spawn, robot, tmp_path, *emulator_args):
    status = tmp_path / "status.json"
    _, port = start_emulator(robot, *emulator_args, status_file=status, popen=spawn)
    node = spawn([*NODE, "--ros-args", "-p", f"robot:={robot}", "-p", f"port:={port}"], env=ros_environment())
    return node, port, status


def latest_positions(ros, profile, received, timeout=30.0):
    wait_for(lambda: received, timeout, "joint_states from servo_arm_node")
    return convert.joint_state_arrays(received[-1][1], profile.all_joint_names)[0]


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel"])
def test_node_publishes_joint_states_and_follows_a_trajectory(ros, spawn, tmp_path, protocol):
    robot = "so101" if protocol == "feetech" else str(dynamixel_profile(tmp_path))
    profile = load_profile(robot)
    contract = Contract(profile)
    received = ros.collect(contract.joint_states.type, contract.joint_states.name, contract.joint_states.qos)
    diagnostics = ros.collect(contract.diagnostics.type, contract.diagnostics.name, contract.diagnostics.qos)
    node, port, status = start(spawn, robot, tmp_path, "--corrupt", "0.02")  # 2 % of replies corrupted
    q0 = latest_positions(ros, profile, received)
    assert list(received[-1][1].name) == profile.all_joint_names

    goal = np.array(profile.sim.home)
    goal[0], goal[4], goal[5] = 0.5, -0.4, 0.8
    pub = ros.node.create_publisher(contract.joint_trajectory.type, contract.joint_trajectory.name,
                                    contract.joint_trajectory.qos)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, "node subscribed to joint_trajectory")
    pub.publish(convert.make_trajectory(profile.all_joint_names, [0.5, 2.0], np.stack([q0, goal])))
    time.sleep(3.5)
    q = latest_positions(ros, profile, received)
    assert np.max(np.abs(q - goal)) < 0.1, f"final error {np.abs(q - goal).round(3)}"
    assert read_status(status)["out_of_limit_writes"] == 0
    assert node.poll() is None
    # corrupted replies were retried, counted and reported on /diagnostics; the loop never failed
    values = {kv.key: kv.value for kv in diagnostics[-1][1].status[0].values}
    assert int(values["bus_corrupt"]) > 0 and int(values["bus_retries"]) >= int(values["bus_corrupt"])
    assert int(values["bus_corrupt"]) <= read_status(status)["tx_corrupted"]


def test_stale_commands_hold_within_two_periods_and_limits_hold(ros, spawn, tmp_path):
    profile = load_profile("so101")
    contract = Contract(profile)
    received = ros.collect(contract.joint_states.type, contract.joint_states.name, contract.joint_states.qos)
    node, port, status_file = start(spawn, "so101", tmp_path)
    latest_positions(ros, profile, received)
    pub = ros.node.create_publisher(contract.joint_commands.type, contract.joint_commands.name,
                                    contract.joint_commands.qos)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, "node subscribed to commands")
    msg = contract.joint_commands.type()
    # start from the goal the node holds, not the measured pose: the emulator's arm is switched on below the
    # floor plane and sags further, and a step towards the sagged pose would go further below the floor (held)
    ticks = TickMap(load_calibration(profile.resolve(profile.hardware.calibration), profile), profile, [4096] * 6)
    q0 = ticks.radians(read_status(status_file)["goal_log"][-1][1])

    # 1. stream a slow ramp on shoulder_pan at 50 Hz, then stop: the node must hold
    q = q0[:5].copy()
    for _ in range(60):
        q[0] += 0.005
        msg.data = [float(v) for v in q]
        pub.publish(msg)
        time.sleep(0.02)
    deadline = time.monotonic() + 20
    while True:  # until the bus log shows the goals constant for 0.5 s (the hold) after the last change
        time.sleep(0.3)
        log = read_status(status_file)["goal_log"]
        times, goals = np.array([t for t, _ in log]), np.array([g for _, g in log])
        changes = np.flatnonzero(np.any(goals[1:] != goals[:-1], axis=1)) + 1
        if (len(changes) >= 2 and times[-1] - times[changes[-1]] > 0.5) or time.monotonic() > deadline:
            break
    # the hold keeps the last goal: no jump back towards the measured position, every step within the
    # velocity limit (0.03 rad = 19.5 ticks a period), and the goal constant from then on
    steps = np.diff(goals[changes[-8:], 0].astype(int))
    assert np.all(steps * np.sign(steps.sum()) >= 0), f"the goal reversed at the end of the stream: {steps}"
    assert np.abs(steps).max() <= 20, f"goal steps at the end of the stream {steps}"
    assert np.array_equal(goals[-1], goals[changes[-1]])

    # 2. far out-of-limit commands are clamped: the bus never sees a goal beyond the joint limits
    #    (the pan: the end effector keeps its height; the floor plane would stop the others first)
    for _ in range(100):
        msg.data = [10.0, *q[1:5].tolist()]
        pub.publish(msg)
        time.sleep(0.02)
    status = read_status(status_file)
    assert status["out_of_limit_writes"] == 0
    expected = ticks.ticks(np.array([profile.joints[0].upper, *q[1:5], 0.0]))
    reached = [abs(g[0] - expected[0]) <= 1 for _, g in status["goal_log"]]
    assert any(reached), (status["goal_log"][-1], expected)
    assert node.poll() is None


def test_silent_servo_stops_the_node_with_one_line(spawn, tmp_path):
    node, port, _ = start(spawn, "so101", tmp_path, "--silent", "3")
    out, _ = node.communicate(timeout=60)
    assert node.returncode == 2
    lines = [line for line in out.splitlines() if "error" in line]
    assert lines and re.search(rf"servo 3 on {re.escape(port)} does not answer: check power, ID and baud rate", lines[-1])
    assert "Traceback" not in out


@pytest.mark.parametrize("on_stale", ["hold", "torque_off"])
def test_a_stopped_driver_holds_or_relaxes_as_its_profile_says(ros, spawn, tmp_path, on_stale):
    """SIGINT to servo_arm_node: ``on_stale: torque_off`` relaxes every servo on the way out, ``hold`` leaves
    them holding their last goal."""
    import signal

    import yaml

    profile_path = dynamixel_profile(tmp_path)
    data = yaml.safe_load(profile_path.read_text())
    data["control"]["on_stale"] = on_stale
    profile_path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile = load_profile(profile_path)
    contract = Contract(profile)
    received = ros.collect(contract.joint_states.type, contract.joint_states.name, contract.joint_states.qos)
    node, _, status = start(spawn, str(profile_path), tmp_path)
    latest_positions(ros, profile, received)
    wait_for(lambda: all(v == 1 for v in read_status(status)["torque"].values()), 10, "torque on")
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=30) == 0
    time.sleep(0.5)  # the emulator writes its status every 0.2 s
    torque = set(read_status(status)["torque"].values())
    assert torque == ({0} if on_stale == "torque_off" else {1}), torque


def test_the_control_loop_runs_whatever_the_executor_does(spawn, tmp_path):
    """``ArmNode`` reads and writes the bus from a control thread of its own, so a busy executor (taking an
    80 MB command, a slow callback) stalls no control period. The worst case here: the node's executor never
    spins at all, and the bus still gets a goal every period (counted on the emulator, not timed). The node
    also shortens the interpreter lock's slices (``realtime.GIL_SWITCH_INTERVAL``): a woken e-stop thread waits
    at most that long for each Python thread ahead of it."""
    import rclpy

    from robot_stack import realtime
    from robot_stack.arm.node import ArmNode
    from robot_stack.drivers.servo.backend import ServoBusBackend

    profile = load_profile("so101")
    status = tmp_path / "status.json"
    _, port = start_emulator("so101", status_file=status, popen=spawn)
    context = rclpy.Context()
    rclpy.init(context=context)
    interval = sys.getswitchinterval()
    node = ArmNode(profile, ServoBusBackend(profile, port=port), node_name="arm_never_spun", context=context)
    try:
        assert sys.getswitchinterval() == realtime.GIL_SWITCH_INTERVAL < interval
        time.sleep(0.5)
        before = read_status(status)["sync_writes"]
        time.sleep(1.0)
        writes = read_status(status)["sync_writes"] - before  # 100 at 100 Hz; the file lags by up to 0.2 s
        assert writes >= 50, f"{writes} bus writes in 1 s from a node whose executor never ran"
    finally:
        node.close()
        node.destroy_node()
        context.try_shutdown()
        sys.setswitchinterval(interval)


def test_the_driver_runs_its_control_loop_and_e_stop_at_real_time_priority(ros, spawn, tmp_path):
    """servo_arm_node's default ``thread_priority`` (50, as ros2_control's): the control thread under SCHED_FIFO
    at 50, the e-stop's thread and its DDS participant's threads at 51, the command callbacks at 49."""
    from robot_stack import realtime

    if realtime.set_fifo(1) is not None:  # probe on this thread, then back to normal scheduling
        pytest.skip("no permission for SCHED_FIFO on this machine")
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    profile = load_profile("so101")
    contract = Contract(profile)
    received = ros.collect(contract.joint_states.type, contract.joint_states.name, contract.joint_states.qos)
    node, _, _ = start(spawn, "so101", tmp_path)
    latest_positions(ros, profile, received)
    priorities = []
    for task in Path(f"/proc/{node.pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        policy, priority = int(fields[38]), int(fields[37])  # stat fields 41 and 40 (1-based, from the pid)
        if policy == os.SCHED_FIFO:
            priorities.append(priority)
    assert priorities.count(50) == 1, priorities  # the control thread
    assert priorities.count(49) == 1, priorities  # the thread that spins the node: commands
    assert priorities.count(51) >= 3, priorities  # the e-stop's thread and its participant's receive threads


def test_a_thread_priority_out_of_range_is_one_line(spawn):
    node = spawn([*NODE, "--ros-args", "-p", "thread_priority:=99"], env=ros_environment())
    out, _ = node.communicate(timeout=60)
    assert node.returncode == 2
    assert out.strip().splitlines()[-1].endswith("thread_priority is 99: use 2 to 98, or 0 (normal scheduling)"), out
    assert "Traceback" not in out
