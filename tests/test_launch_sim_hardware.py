"""One launch file, twin or emulated hardware, only sim:= changed: the same contract either way."""

import os
import sys
import time

import numpy as np
import pytest
from conftest import wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from robot_stack import convert
from robot_stack.contract import Contract
from robot_stack.launcher import LaunchRunner
from robot_stack.profile import load_profile
from robot_stack.resources import share_dir

PROFILE = load_profile("so101")
CONTRACT = Contract(PROFILE)
ARM_TOPICS = {CONTRACT.joint_states.name, CONTRACT.ee_pose.name, CONTRACT.joint_trajectory.name,
              CONTRACT.joint_commands.name, CONTRACT.gripper_commands.name, CONTRACT.target_pose.name,
              CONTRACT.target_twist.name, CONTRACT.estop.name, CONTRACT.estop_state.name}


@pytest.mark.parametrize("sim", ["true", "false"])
def test_teleop_launch_runs_on_twin_and_emulated_hardware(ros, sim, tmp_path):
    states = ros.collect(JointState, CONTRACT.joint_states.name, CONTRACT.joint_states.qos)
    log = open(tmp_path / "launch.log", "w")
    args = {"sim": sim, "emulate": "true", "device": "none", "cameras": "none"}
    with LaunchRunner(share_dir() / "launch" / "teleop.launch.xml", args, stdout=log, stderr=log):
        wait_for(lambda: len(states) > 20, 60, f"joint_states with sim:={sim}")
        msg = states[-1][1]
        assert list(msg.name) == PROFILE.all_joint_names
        def missing() -> list[str]:
            graph = {"/" + n.lstrip("/") for n, _ in ros.node.get_topic_names_and_types()}
            return sorted({"/" + t for t in ARM_TOPICS} - graph)

        # the e-stop has a DDS participant of its own (its own context and thread): discovered on its own time
        wait_for(lambda: not missing(), 30, f"the arm's contract topics (missing: {missing()})")
        q0 = convert.joint_state_arrays(msg, PROFILE.all_joint_names)[0]
        goal = q0[:5] + np.array([0.3, 0.0, 0.0, 0.0, 0.0])
        pub = CONTRACT.publisher(ros.node, CONTRACT.joint_commands)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a streamed command, as a leader arm sends it
            pub.publish(Float64MultiArray(data=[float(v) for v in goal]))
            q = convert.joint_state_arrays(states[-1][1], PROFILE.all_joint_names)[0]
            if abs(q[0] - goal[0]) < 0.05:
                break
            time.sleep(0.05)
        assert abs(q[0] - goal[0]) < 0.05, (sim, q, goal)
    log.close()


def test_leader_arm_drives_the_follower_commands(ros, spawn, tmp_path):
    commands = ros.collect(Float64MultiArray, CONTRACT.joint_commands.name)
    grippers = ros.collect(Float64MultiArray, CONTRACT.gripper_commands.name)
    link = tmp_path / "leader_bus"
    spawn([sys.executable, "-m", "robot_stack.drivers.servo.emulator", "--robot", "so101_leader", "--link", str(link)])
    wait_for(link.exists, 30, "leader bus emulator")
    spawn(["teleop_node", "--ros-args", "-p", "robot:=so101", "-p", "device:=leader", "-p", f"device_path:={link}",
           "-p", "start_in_control:=true"], env=dict(os.environ))
    wait_for(lambda: len(commands) > 10 and grippers, 60, "mirrored commands from the leader arm")
    q = np.array(commands[-1][1].data)
    assert q.shape == (5,) and np.all(q >= PROFILE.lower - 0.05) and np.all(q <= PROFILE.upper + 0.05)
    g = PROFILE.gripper
    assert min(g.open, g.closed) <= grippers[-1][1].data[0] <= max(g.open, g.closed)


def test_leader_with_mismatched_joints_is_one_line_error(tmp_path):
    import yaml

    data = yaml.safe_load((share_dir() / "config" / "robots" / "so101_leader.yaml").read_text())
    data["joints"] = data["joints"][:3]
    data["sim"]["home"] = data["sim"]["home"][:4]
    data["hardware"]["ids"] = data["hardware"]["ids"][:4]
    data["hardware"]["models"] = data["hardware"]["models"][:4]
    path = tmp_path / "leader.yaml"
    path.write_text(yaml.safe_dump(data))
    from robot_stack.drivers.teleop.leader import LeaderArmDevice
    from robot_stack.errors import UserError

    with pytest.raises(UserError, match="must match one to one"):
        LeaderArmDevice(PROFILE, "/dev/null", leader=load_profile(str(path)))
