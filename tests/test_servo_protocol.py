"""Servo-bus codecs and calibration: our packet codecs against the vendor SDKs, byte for byte."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_stack.drivers.servo import protocol as P
from robot_stack.drivers.servo.calibration import (TickMap, joint_limits, load_calibration, make_calibration,
                                                   save_calibration)
from robot_stack.errors import UserError
from robot_stack.profile import load_profile


@pytest.fixture(scope="module")
def dxl():
    from dynamixel_sdk.protocol2_packet_handler import Protocol2PacketHandler

    return Protocol2PacketHandler()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_crc_matches_dynamixel_sdk(dxl, data):
    assert P.dxl_crc(data) == dxl.updateCRC(0, list(data), len(data))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 252), st.lists(st.sampled_from([0xFF, 0xFD, 0x00, 0x12]), max_size=24))
def test_instruction_packets_and_stuffing_match_dynamixel_sdk(dxl, servo_id, params):
    """The SDK builds a WRITE packet; ours must be identical (when no stuffing is needed) and both parse.

    dynamixel-sdk 4.1 drops the stuffed copy it builds (``txPacket`` ignores ``addStuffing``'s new
    list), so for params containing FF FF FD the SDK sends them unstuffed: the emulator accepts both.
    """
    sent = []

    class Port:
        is_using = False

        def clearPort(self):
            pass

        def writePort(self, packet):
            sent.append(bytes(packet))
            return len(packet)

    body = [0x74, 0x00] + params  # address 116, then data
    tx = [0] * (len(body) + 10)
    tx[4], tx[5], tx[6], tx[7] = servo_id, (len(body) + 3) & 0xFF, (len(body) + 3) >> 8, P.WRITE
    tx[8: 8 + len(body)] = body
    assert dxl.txPacket(Port(), tx) == 0
    ours = P.dxl_packet(servo_id, P.WRITE, bytes(body))
    if b"\xff\xff\xfd" not in bytes(body):
        assert ours == sent[0]
    ambiguous = b"\xff\xff\xfd\xfd" in bytes(body)  # unstuffed, it decodes as FF FF FD (spec-correct)
    for raw in (ours,) if ambiguous else (ours, sent[0]):
        (packet,) = list(P.PacketParser("dynamixel").feed(raw))
        assert packet.ok and packet.servo_id == servo_id and packet.instruction == P.WRITE
        assert packet.params == bytes(body)


def test_status_packet_unstuffed_by_the_sdk(dxl):
    params = bytes([0xFF, 0xFF, 0xFD, 0x01])
    raw = P.dxl_packet(3, P.STATUS, params, error=0)
    assert b"\xff\xff\xfd\xfd" in raw
    unstuffed = dxl.removeStuffing(list(raw))
    assert bytes(unstuffed[9: 9 + len(params)]) == params


def test_feetech_checksum_matches_sdk():
    import scservo_sdk

    sent = []

    class Port:
        is_using = False

        def clearPort(self):
            pass

        def writePort(self, packet):
            sent.append(bytes(packet))
            return len(packet)

    handler = scservo_sdk.PacketHandler(0)
    tx = [0, 0, 7, 5, P.WRITE, 42, 0x00, 0x08, 0]
    assert handler.txPacket(Port(), tx) == 0
    assert P.scs_packet(7, P.WRITE, bytes([42, 0x00, 0x08])) == sent[0]
    broken = bytearray(sent[0])
    broken[-1] ^= 1
    parser = P.PacketParser("feetech")
    out = list(parser.feed(b"\x00\xff" + bytes(broken[:4]))) + list(parser.feed(bytes(broken[4:]) + sent[0]))
    assert [p.ok for p in out] == [False, True]


def test_register_encodings():
    sts = P.get_model("sts3215")
    vel = sts.reg("present_velocity")
    assert vel.encode(-5) == bytes([5, 0x80]) and vel.decode(vel.encode(-5)) == -5
    assert sts.reg("homing_offset").decode(bytes([0x7B, 0x08])) == -123  # 0x800 | 123: sign bit 11
    cur = P.get_model("xm430-w350").reg("present_velocity")
    assert cur.encode(-1) == b"\xff\xff\xff\xff" and cur.decode(b"\xfe\xff\xff\xff") == -2
    assert sts.state_block == (56, 15)
    assert P.get_model("xl330-m288").state_block == (126, 10)
    with pytest.raises(UserError, match="unknown servo model"):
        P.get_model("mx-28x")


def test_calibration_round_trip(tmp_path):
    profile = load_profile("so101")
    cal = make_calibration(profile, zeros=[1300, 2000, 2900, 2048, 2048, 2048], directions=[1, -1, 1, -1, 1, 1])
    path = tmp_path / "cal.yaml"
    save_calibration(cal, path)
    assert load_calibration(path, profile) == cal
    ticks = TickMap(cal, profile, [4096] * 6)
    lower, upper = joint_limits(profile)
    q = np.array(profile.sim.home)
    assert np.allclose(ticks.radians(ticks.ticks(q)), q, atol=math.pi / 4096)
    lo, hi = ticks.radian_range()
    assert np.all(lo <= lower) and np.all(hi >= upper)
    assert np.all(ticks.ticks(np.full(6, 100.0)) <= ticks.tick_max)


def test_bad_calibration_files_are_one_line_errors(tmp_path):
    profile = load_profile("so101")
    path = tmp_path / "cal.yaml"
    path.write_text("robot: so101\njoints:\n  shoulder_pan: {zero: 2048, min: 10, max: 4000}\n")
    with pytest.raises(UserError, match="no calibration for joint 'shoulder_lift'"):
        load_calibration(path, profile)
    path.write_text("robot: so101\njoints:\n  shoulder_pan: {zero: 2048, min: 10, max: 4000, direction: 2}\n")
    with pytest.raises(UserError, match="direction must be 1 or -1"):
        load_calibration(path, profile)
    save_calibration(make_calibration(profile), path)
    with pytest.raises(UserError, match="made for robot 'so101', not 'panda'"):
        load_calibration(path, load_profile("panda").__class__(**{**vars(profile), "name": "panda"}))
