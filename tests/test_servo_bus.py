"""ServoBusBackend against the servo-bus emulator (its own process, on a pty), Dynamixel and Feetech."""

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_stack.drivers.servo import protocol as P
from robot_stack.drivers.servo.backend import ServoBusBackend, ServoBusError, scan
from robot_stack.drivers.servo.calibration import joint_limits
from robot_stack.drivers.servo.testing import dynamixel_profile, read_status, start_emulator
from robot_stack.errors import UserError
from robot_stack.profile import load_profile

PROTOCOLS = ["feetech", "dynamixel"]


@pytest.fixture(scope="module")
def robots(tmp_path_factory):
    """Profile path per protocol: the shipped SO-101 (Feetech) and the SO-101 on a Dynamixel bus."""
    return {"feetech": "so101", "dynamixel": str(dynamixel_profile(tmp_path_factory.mktemp("dxl")))}


class Emulator:
    def __init__(self, robot, folder, *args):
        self.status_file = folder / "status.json"
        self.proc, self.port = start_emulator(robot, *args, status_file=self.status_file)
        self.profile = load_profile(robot)

    def status(self, fresh=True):
        if fresh:  # wait for a status written after now
            t0 = read_status(self.status_file)["time"] if self.status_file.exists() else -1
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.05)
                s = read_status(self.status_file) if self.status_file.exists() else None
                if s and s["time"] > t0:
                    return s
        return read_status(self.status_file)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module", params=PROTOCOLS)
def clean(request, robots, tmp_path_factory):
    emu = Emulator(robots[request.param], tmp_path_factory.mktemp(request.param))
    yield emu
    emu.stop()


@pytest.fixture
def emulator(robots, tmp_path):
    started = []

    def start(protocol, *args):
        emu = Emulator(robots[protocol], tmp_path, *args)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


def test_tracks_a_commanded_trajectory(clean):
    backend = ServoBusBackend(clean.profile, port=clean.port)
    try:
        home = np.array(clean.profile.sim.home)
        start = backend.read().position
        period, worst = 0.01, 0.0
        t0 = time.monotonic()
        while (t := time.monotonic() - t0) < 3.0:
            # smooth move from the start pose to home, then a slow sine on the pan and wrist joints
            alpha = min(1.0, t / 1.0)
            target = start + alpha * (home - start)
            target[0] += 0.4 * np.sin(1.5 * t) * alpha
            target[3] += 0.2 * np.sin(2.0 * t) * alpha
            backend.write(target)
            reading = backend.read()
            if t > 1.5:
                worst = max(worst, float(np.max(np.abs(reading.position - target))))
            time.sleep(max(0.0, period - (time.monotonic() - t0 - t)))
        assert worst < 0.1, f"tracking error {worst:.3f} rad"
        assert reading.position.shape == (6,) and np.all(np.isfinite(reading.velocity))
        assert abs(reading.stamp - time.time()) < 1.0
        status = clean.status()
        assert status["out_of_limit_writes"] == 0 and status["goal_writes"] > 100
    finally:
        backend.close()


def test_torque_off_relaxes_and_gripper_effort_is_limited(clean):
    backend = ServoBusBackend(clean.profile, port=clean.port)
    try:
        assert all(v == 1 for v in clean.status()["torque"].values())
        backend.set_torque(False)
        assert all(v == 0 for v in clean.status()["torque"].values())
        backend.set_torque(True)  # re-enabling holds the measured pose (no jump)
        assert all(v == 1 for v in clean.status()["torque"].values())
        gripper = clean.profile.hardware.ids[-1]
        model = P.get_model(clean.profile.hardware.models[-1])
        limit = _read_register(clean, gripper, model, "effort_limit", backend)
        assert abs(model.effort_limit_nm(limit) - clean.profile.gripper.effort) < 0.05
    finally:
        backend.close()


def _read_register(emu, sid, model, name, backend):
    reg = model.reg(name)
    raw = backend._read_retry(sid, reg.address, reg.size)
    return reg.decode(raw)


def test_targets_beyond_limits_or_nan_never_reach_the_bus(clean):
    backend = ServoBusBackend(clean.profile, port=clean.port)
    lower, upper = joint_limits(clean.profile)
    values = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([np.nan, np.inf, -np.inf, 1e300])

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(values, min_size=6, max_size=6))
    def write_anything(targets):
        backend.write(np.array(targets, dtype=float))
        assert np.all(np.isfinite(backend.goal))
        assert np.all(backend.goal >= lower - 1e-9) and np.all(backend.goal <= upper + 1e-9)

    try:
        write_anything()
        assert backend.stats.writes >= 40 and backend.stats.clamped > 0
        # the bus side (the emulator) saw every goal, none outside the joint limits
        last = [int(t) for t in backend.ticks.ticks(backend.goal)]
        deadline = time.monotonic() + 10
        while (status := clean.status())["goal_log"][-1][1] != last and time.monotonic() < deadline:
            pass  # the emulator may not have processed the last write yet (loaded host)
        assert status["goal_log"][-1][1] == last
        assert status["goal_writes"] >= 6 * 40 and status["out_of_limit_writes"] == 0
    finally:
        backend.close()


def test_emulator_counts_out_of_limit_goals(clean):
    """The counter the clamp test relies on does count: a raw SDK write past the limit registers."""
    backend = ServoBusBackend(clean.profile, port=clean.port)
    try:
        sid = clean.profile.hardware.ids[1]
        model = P.get_model(clean.profile.hardware.models[1])
        upper = backend.ticks.tick_max[1]
        reg = model.reg("goal_position")
        write = backend.bus.packets.write4ByteTxRx if reg.size == 4 else backend.bus.packets.write2ByteTxRx
        result, error = write(backend.bus.port, sid, reg.address, int(upper) + 200)
        assert result == backend.bus.ok
        assert error == (P.DXL_ERR_DATA_LIMIT if model.protocol == "dynamixel" else 0)
        assert clean.status()["out_of_limit_writes"] == 1
        backend.write(backend.read().position)
    finally:
        backend.close()


def test_scan_lists_the_servos(clean):
    found = scan(clean.port, clean.profile.hardware.backend, ids=range(0, 17))
    assert found == {sid: m for sid, m in zip(clean.profile.hardware.ids, clean.profile.hardware.models)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_corrupted_status_packets_are_retried_and_counted(emulator, protocol):
    emu = emulator(protocol, "--corrupt", "0.05", "--overload", "2" if protocol == "feetech" else "12", "--seed", "3")
    backend = ServoBusBackend(emu.profile, port=emu.port)
    try:
        for _ in range(150):
            reading = backend.read()
            backend.write(reading.position)
        status = emu.status()
        assert status["tx_corrupted"] > 5
        # every corrupted packet was seen as corrupt by the driver and retried; no read failed
        # (a reply timeout on a loaded host flushes the rest of that sync read, unseen)
        stats = backend.stats
        assert status["tx_corrupted"] - 6 * stats.timeouts <= stats.corrupt <= status["tx_corrupted"]
        assert stats.retries >= stats.corrupt
        assert stats.reads == 152  # 150 + the first read + the read before torque on
        overloaded = emu.profile.hardware.ids[1]
        assert set(backend.stats.hardware_errors) == {overloaded}
        assert backend.diagnostics()["bus_corrupt"] == status["tx_corrupted"]
    finally:
        backend.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_silent_servo_is_named_within_a_second(emulator, protocol):
    emu = emulator(protocol, "--silent", "3" if protocol == "feetech" else "13")
    profile_ids = emu.profile.hardware.ids
    t0 = time.monotonic()
    with pytest.raises(ServoBusError) as err:
        ServoBusBackend(emu.profile, port=emu.port)
    assert time.monotonic() - t0 < 1.0
    assert str(err.value) == (f"servo {profile_ids[2]} on {emu.port} does not answer: "
                              "check power, ID and baud rate")
    assert isinstance(err.value, UserError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_servo_going_silent_while_running_is_named_within_a_second(emulator, protocol):
    sid = 5 if protocol == "feetech" else 15
    emu = emulator(protocol, "--silent", str(sid), "--silent-after", "1.5")
    backend = ServoBusBackend(emu.profile, port=emu.port)
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(ServoBusError, match=f"servo {sid} on {emu.port} does not answer"):
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                backend.read()
                time.sleep(0.01)
        assert time.monotonic() - t0 < 1.0
    finally:
        backend.close()


def test_wrong_model_and_missing_port_are_one_line_errors(emulator, tmp_path):
    emu = emulator("dynamixel")  # xm430-w350 servos
    wrong = load_profile(dynamixel_profile(tmp_path, model="xl330-m077"))
    with pytest.raises(UserError, match=f"servo 11 on {emu.port} is a xm430-w350, but the profile says xl330-m077"):
        ServoBusBackend(wrong, port=emu.port)
    with pytest.raises(ServoBusError, match="serial port /dev/ttyNOPE does not exist"):
        ServoBusBackend(load_profile("so101"), port="/dev/ttyNOPE")


def test_an_emulator_realtime_priority_out_of_range_is_one_line():
    import subprocess

    from robot_stack.drivers.servo.testing import EMULATOR

    result = subprocess.run([*EMULATOR, "--realtime-priority", "120"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("servo_bus_emulator: error: --realtime-priority must be 0 (normal scheduling) "
                                     "to 99, got 120"), result.stderr


def test_dynamixel_bulk_read_and_broadcast_ping(clean):
    if clean.profile.hardware.backend != "dynamixel":
        pytest.skip("bulk read and broadcast ping are Protocol 2.0 instructions")
    import dynamixel_sdk as dxl

    port = dxl.PortHandler(clean.port)
    assert port.openPort()
    packets = dxl.PacketHandler(2.0)
    try:
        found, result = packets.broadcastPing(port)
        assert result == dxl.COMM_SUCCESS
        assert {sid: model for sid, (model, _fw) in found.items()} == {sid: 1020 for sid in clean.profile.hardware.ids}
        bulk = dxl.GroupBulkRead(port, packets)
        ids = clean.profile.hardware.ids
        assert bulk.addParam(ids[0], 132, 4) and bulk.addParam(ids[1], 64, 1)
        assert bulk.txRxPacket() == dxl.COMM_SUCCESS
        assert 0 < bulk.getData(ids[0], 132, 4) < 4096
        assert bulk.getData(ids[1], 64, 1) in (0, 1)
    finally:
        port.closePort()
