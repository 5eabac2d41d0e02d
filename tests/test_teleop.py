"""Teleop: keyboard through a real pseudo-terminal into a real node process; device decoders."""

import os
import struct
import time

import numpy as np
import pytest
from conftest import wait_for
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Bool, Float64MultiArray

from robot_stack.contract import Contract
from robot_stack.drivers.teleop.spacemouse import SpaceMouseParser
from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.resources import ros_environment


def test_keyboard_node_streams_twist_gripper_and_intervention(ros, spawn):
    contract = Contract(load_profile("so101"))
    twists = ros.collect(TwistStamped, contract.target_twist.name, contract.target_twist.qos)
    grips = ros.collect(Float64MultiArray, contract.gripper_commands.name)
    interventions = ros.collect(Bool, contract.intervention.name)
    master, slave = os.openpty()
    proc = spawn(["teleop_node", "--ros-args", "-p", "robot:=so101", "-p", "device:=keyboard",
                  "-p", f"device_path:={os.ttyname(slave)}", "-p", "rate_hz:=50.0", "-p", "max_linear:=0.2"],
                 env=ros_environment())
    wait_for(lambda: interventions, 20, "teleop node to publish")
    assert not any(m.data for _, m in interventions)  # policy in control at start
    assert not twists
    os.write(master, b"i")  # take control
    wait_for(lambda: any(m.data for _, m in interventions), 5, "intervention=true")
    os.write(master, b"w")
    wait_for(lambda: any(m.twist.linear.x > 0.19 for _, m in twists), 5, "forward twist")
    msg = next(m for _, m in twists if m.twist.linear.x > 0.19)
    assert msg.header.frame_id == "base_link" and msg.twist.linear.y == 0.0
    os.write(master, b" ")
    wait_for(lambda: grips, 5, "gripper command")
    assert grips[-1][1].data[0] == pytest.approx(load_profile("so101").gripper.closed)
    # the key is no longer held: motion stops (hold_s 0.6 after the last press; waited for, not slept: the
    # collector of this process may lag a loaded machine's 50 Hz stream)
    wait_for(lambda: abs(twists[-1][1].twist.linear.x) < 1e-9, 5, "zero twist once the key is released")
    time.sleep(0.2)
    assert abs(twists[-1][1].twist.linear.x) < 1e-9  # and it stays stopped
    os.write(master, b"i")  # give back control: one zero twist, then silence
    wait_for(lambda: not interventions[-1][1].data, 5, "intervention=false")
    time.sleep(0.3)
    count = len(twists)
    time.sleep(0.5)
    assert len(twists) == count
    assert proc.poll() is None
    os.close(master)
    os.close(slave)


def test_keyboard_without_terminal_is_one_line_error(tmp_path):
    from robot_stack.drivers.teleop.keyboard import KeyboardDevice

    regular = tmp_path / "notatty"
    regular.write_text("")
    with pytest.raises(UserError, match="not a terminal"):
        KeyboardDevice(str(regular))


def test_gamepad_mapping_from_evdev_events():
    from evdev import InputEvent, ecodes

    from robot_stack.drivers.teleop.gamepad import GamepadMapping

    mapping = GamepadMapping({ecodes.ABS_Y: (-32768, 32767), ecodes.ABS_X: (-32768, 32767),
                              ecodes.ABS_Z: (0, 255), ecodes.ABS_RZ: (0, 255)})
    for code, value in ((ecodes.ABS_Y, -32768), (ecodes.ABS_X, 0), (ecodes.ABS_Z, 0), (ecodes.ABS_RZ, 255)):
        mapping.feed(InputEvent(0, 0, ecodes.EV_ABS, code, value))
    mapping.feed(InputEvent(0, 0, ecodes.EV_KEY, ecodes.BTN_SOUTH, 1))
    mapping.feed(InputEvent(0, 0, ecodes.EV_KEY, ecodes.BTN_EAST, 1))
    mapping.feed(InputEvent(0, 0, ecodes.EV_ABS, ecodes.ABS_HAT0Y, -1))
    out = mapping.take()
    assert out.linear[0] == pytest.approx(1.0) and abs(out.linear[1]) < 1e-3 and out.linear[2] == pytest.approx(1.0)
    assert out.gripper_toggle and out.deadman and out.speed_change == 1
    again = mapping.take()  # edges are reported once, axes and deadman persist
    assert not again.gripper_toggle and again.deadman and again.speed_change == 0


def test_spacemouse_reports():
    parser = SpaceMouseParser()
    parser.feed(bytes([1]) + struct.pack("<hhh", 0, -350, 0))  # push away from the user
    parser.feed(bytes([2]) + struct.pack("<hhh", 0, 0, 350))
    parser.feed(bytes([3, 0b01]))
    parser.feed(bytes([3, 0b00]))
    parser.feed(bytes([3, 0b10]))
    out = parser.take()
    assert out.linear[0] == pytest.approx(1.0) and np.allclose(out.linear[1:], 0)
    assert out.angular[2] == pytest.approx(-1.0)
    assert out.gripper_toggle and out.deadman
    assert not parser.take().gripper_toggle


def test_missing_devices_are_one_line_errors():
    from robot_stack.drivers.teleop.gamepad import GamepadDevice
    from robot_stack.drivers.teleop.spacemouse import SpaceMouseDevice

    with pytest.raises(UserError, match="no gamepad found"):
        GamepadDevice("/dev/input/event-missing")
    with pytest.raises(UserError, match=r"no SpaceMouse found \(HID devices: "):
        SpaceMouseDevice()
