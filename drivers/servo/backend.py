"""ServoBusBackend: an ArmBackend for Dynamixel (Protocol 2.0) and Feetech STS servo buses.

Per control period one sync read (present position, velocity and current of every servo in one
instruction) and one sync write (goal positions), through the vendor SDKs (``dynamixel_sdk``,
``scservo_sdk``). Joint radians <-> servo ticks go through the joint calibration. A bad or missing
status packet is retried per servo (``retries`` times) and counted; a servo that still does not
answer raises a one-line ``ServoBusError`` naming the servo and the port.

Targets are clamped again here (joint limits, calibration tick range, NaN -> last goal), so the bus
never sees an out-of-range goal even if a caller forgets ``ArmSafety``.
"""

from __future__ import annotations

import importlib
import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import serial

from robot_stack.arm.backend import JointReading
from robot_stack.drivers.servo import protocol as P
from robot_stack.drivers.servo.calibration import CalibrationFile, TickMap, joint_limits, load_calibration
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile


LOG = logging.getLogger("robot_stack.servo")
PORT_ERRORS = (OSError, termios.error, serial.SerialException)
"""What pyserial raises when the port's far end is gone (adapter unplugged, emulator stopped)."""


class ServoBusError(UserError):
    """The bus or a servo on it misbehaves (no answer, hardware error, port missing)."""


def no_answer(servo_id: int, port: str) -> ServoBusError:
    return ServoBusError(f"servo {servo_id} on {port} does not answer: check power, ID and baud rate")


@dataclass
class BusStats:
    reads: int = 0
    writes: int = 0
    retries: int = 0
    corrupt: int = 0
    timeouts: int = 0
    clamped: int = 0
    """Targets changed by the backend's own clamp (NaN, beyond limits)."""
    hardware_errors: dict[int, int] = field(default_factory=dict)
    """Status packets with error bits set, per servo ID."""


class Bus:
    """One serial bus through the vendor SDK of its protocol (the same calls for both vendors)."""

    def __init__(self, port: str, baudrate: int, protocol: str, timeout_ms: float = 100.0):
        self.protocol = protocol
        if protocol == "dynamixel":
            self.sdk = importlib.import_module("dynamixel_sdk")
            self.packets = self.sdk.PacketHandler(2.0)
        else:
            self.sdk = importlib.import_module("scservo_sdk")
            self.packets = self.sdk.PacketHandler(0)  # STS/SMS: little-endian words
        self.port_name = port
        if not Path(port).exists():
            raise ServoBusError(f"serial port {port} does not exist: check the USB cable and the port name "
                                "(robot-stack servo scan --port PORT lists the servos on a port)")
        self.port = self.sdk.PortHandler(port)
        sdk_timeout = self.port.setPacketTimeout

        def set_packet_timeout(packet_length: int) -> None:
            # The SDK waits 2 latency timers (~34 ms): too short when a loaded host delays the reply.
            sdk_timeout(packet_length)
            self.port.packet_timeout = max(self.port.packet_timeout, timeout_ms)

        self.port.setPacketTimeout = set_packet_timeout
        self._guard_io()
        try:
            opened = self.port.openPort() and self.port.setBaudRate(baudrate)
        except Exception as err:  # noqa: BLE001 - pyserial raises SerialException/OSError variants
            raise ServoBusError(f"cannot open {port}: {err} (check permissions: add yourself to the dialout group)") from None
        if not opened:
            raise ServoBusError(f"cannot open {port} at {baudrate} baud (unsupported baud rate?)")
        # The SDKs poll a non-blocking port in a busy loop; a short blocking read returns as soon as
        # the requested bytes are there but gives the CPU away while a reply is on its way.
        self.port.ser.timeout = 0.002
        self.ok = self.sdk.COMM_SUCCESS
        self.timeout = self.sdk.COMM_RX_TIMEOUT

    def _guard_io(self) -> None:
        """A port that goes away (adapter unplugged, emulator gone) is a one-line ServoBusError, not a traceback."""
        port = self.port
        for name in ("readPort", "writePort"):
            method = getattr(port, name)

            def guarded(*args, _method=method):
                try:
                    return _method(*args)
                except PORT_ERRORS as err:
                    raise ServoBusError(f"lost the serial port {self.port_name} ({err}): "
                                        "is the adapter unplugged or the bus powered off?") from None

            setattr(port, name, guarded)

    def flush(self) -> None:
        try:
            self.port.ser.reset_input_buffer()  # drop late replies of an earlier, failed transaction
        except PORT_ERRORS as err:
            raise ServoBusError(f"lost the serial port {self.port_name} ({err})") from None

    def close(self) -> None:
        self.port.closePort()


class ServoBusBackend:
    """ArmBackend for the servo bus described by ``profile.hardware``."""

    def __init__(self, profile: RobotProfile, *, port: str | None = None,
                 calibration: CalibrationFile | str | Path | None = None, retries: int = 3,
                 timeout_ms: float = 100.0, clock: Callable[[], float] = time.time, torque_on: bool = True):
        hw = profile.hardware
        names = profile.all_joint_names
        if hw.backend not in ("dynamixel", "feetech"):
            raise UserError(f"robot {profile.name!r}: hardware.backend is {hw.backend!r}, not a servo bus "
                            "(use dynamixel or feetech)")
        if len(hw.ids) != len(names) or len(hw.models) != len(names):
            raise UserError(f"robot {profile.name!r}: hardware.ids and hardware.models need one entry per joint "
                            f"({', '.join(names)})")
        self.models = [P.get_model(m) for m in hw.models]
        wrong = [m.name for m in self.models if m.protocol != hw.backend]
        if wrong:
            raise UserError(f"robot {profile.name!r}: servo model {wrong[0]!r} does not speak {hw.backend}")
        if calibration is None:
            if not hw.calibration:
                raise UserError(f"robot {profile.name!r} has no hardware.calibration file (see docs/servo.md)")
            calibration = profile.resolve(hw.calibration)
        if not isinstance(calibration, CalibrationFile):
            calibration = load_calibration(calibration, profile)
        self.profile, self.ids, self.retries, self.clock = profile, list(hw.ids), retries, clock
        self.ticks = TickMap(calibration, profile, [m.resolution for m in self.models])
        lower, upper = joint_limits(profile)
        cal_lo, cal_hi = self.ticks.radian_range()
        self.lower, self.upper = np.maximum(lower, cal_lo), np.minimum(upper, cal_hi)
        self.stats = BusStats()
        self.port_name = port or hw.port
        self.bus = Bus(self.port_name, hw.baudrate, hw.backend, timeout_ms)
        model = self.models[0]
        self.state_start, self.state_len = model.state_block
        self.regs = {n: model.reg(n) for n in ("present_position", "present_velocity", "present_current",
                                               "goal_position", "torque_enable", "effort_limit")}
        self.vel_unit = np.array([m.velocity_unit for m in self.models])
        self.effort_per_tick = np.array([m.current_unit * m.torque_constant for m in self.models])
        self._reported: set[int] = set()
        try:
            self._check_servos()
            self.sync_read = self.bus.sdk.GroupSyncRead(self.bus.port, self.bus.packets, self.state_start, self.state_len)
            for sid in self.ids:
                self.sync_read.addParam(sid)
            goal = self.regs["goal_position"]
            self.sync_write = self.bus.sdk.GroupSyncWrite(self.bus.port, self.bus.packets, goal.address, goal.size)
            for sid in self.ids:
                self.sync_write.addParam(sid, [0] * goal.size)
            self._set_gripper_limit()
            first = self.read()
            self.goal = first.position.copy()
            if torque_on:
                self.set_torque(True)
        except BaseException:
            self.bus.close()
            raise

    # -- ArmBackend ----------------------------------------------------------------------------------
    def read(self) -> JointReading:
        raw = self._sync_read()
        pos = np.array([self.regs["present_position"].decode(raw[i], self._off("present_position"))
                        for i in self.ids], dtype=float)
        vel = np.array([self.regs["present_velocity"].decode(raw[i], self._off("present_velocity")) for i in self.ids],
                       dtype=float)
        cur = np.array([self.regs["present_current"].decode(raw[i], self._off("present_current")) for i in self.ids],
                       dtype=float)
        self.stats.reads += 1
        return JointReading(position=self.ticks.radians(pos), velocity=self.ticks.rates(vel * self.vel_unit),
                            effort=self.ticks.rates(cur * self.effort_per_tick), stamp=self.clock())

    def write(self, position: np.ndarray) -> None:
        target = np.asarray(position, dtype=float).reshape(-1)
        if target.shape != self.goal.shape:
            raise ValueError(f"expected {self.goal.size} joint targets, got {target.size}")
        safe = np.where(np.isfinite(target), target, self.goal)
        safe = np.clip(safe, self.lower, self.upper)
        if not np.array_equal(safe, target):
            self.stats.clamped += 1
        ticks = self.ticks.ticks(safe)
        goal = self.regs["goal_position"]
        for sid, t in zip(self.ids, ticks):
            self.sync_write.changeParam(sid, list(goal.encode(int(t))))
        self._tx(self.sync_write.txPacket, "sync write")
        self.goal = safe
        self.stats.writes += 1

    def set_torque(self, enabled: bool) -> None:
        if enabled:  # hold where the arm is, so enabling torque never jumps
            self.goal = self.read().position
            self.write(self.goal)
        for sid in self.ids:
            self._write_register(sid, "torque_enable", int(enabled))

    def torque_enabled(self) -> bool:
        """Whether every servo is energised now (read back from the torque-enable registers)."""
        reg = self.regs["torque_enable"]
        return all(reg.decode(self._read_retry(sid, reg.address, reg.size), 0) for sid in self.ids)

    def close(self) -> None:
        self.bus.close()

    def diagnostics(self) -> dict[str, object]:
        s = self.stats
        return {"bus_port": self.port_name, "bus_reads": s.reads, "bus_retries": s.retries, "bus_corrupt": s.corrupt,
                "bus_timeouts": s.timeouts, "bus_clamped": s.clamped,
                "bus_hardware_errors": sum(s.hardware_errors.values())}

    # -- bus transactions ------------------------------------------------------------------------------
    def _off(self, name: str) -> int:
        return self.regs[name].address - self.state_start

    def _tx(self, send: Callable[[], int], what: str) -> None:
        result = send()
        if result != self.bus.ok:
            raise ServoBusError(f"{what} on {self.port_name} failed: {self.bus.packets.getTxRxResult(result)}")

    def _count(self, result: int) -> None:
        if result == self.bus.timeout:
            self.stats.timeouts += 1
        else:
            self.stats.corrupt += 1

    def _error_bits(self, sid: int, error: int) -> None:
        if not error:
            return
        self.stats.hardware_errors[sid] = self.stats.hardware_errors.get(sid, 0) + 1
        if sid not in self._reported:
            self._reported.add(sid)
            detail = self.bus.packets.getRxPacketError(error)
            LOG.warning(
                f"servo {sid} on {self.port_name} reports an error: {detail.replace('[RxPacketError] ', '')}")

    def _sync_read(self) -> dict[int, bytes]:
        """Present-state block of every servo: one sync read, then per-servo retries for any bad reply."""
        bus, n = self.bus, self.state_len
        bus.flush()
        data: dict[int, bytes] = {}
        failed: list[int] = []
        if self.sync_read.txPacket() == bus.ok:
            for sid in self.ids:
                raw, result, error = bus.packets.readRx(bus.port, sid, n)
                if result == bus.ok and len(raw) >= n:
                    data[sid] = bytes(raw)
                    self._error_bits(sid, error)
                else:
                    self._count(result)
                    failed.append(sid)
                    if result != bus.timeout:
                        continue
                    # a timeout ends the window of the whole sync read: read the rest one by one
                    failed += [i for i in self.ids if i not in data and i not in failed]
                    break
        else:
            failed = list(self.ids)
        for sid in failed:
            data[sid] = self._read_retry(sid, self.state_start, n)
        return data

    def _read_retry(self, sid: int, address: int, length: int) -> bytes:
        bus = self.bus
        for _ in range(self.retries):
            self.stats.retries += 1
            bus.flush()
            raw, result, error = bus.packets.readTxRx(bus.port, sid, address, length)
            if result == bus.ok and len(raw) >= length:
                self._error_bits(sid, error)
                return bytes(raw)
            self._count(result)
        raise no_answer(sid, self.port_name)

    def _write_register(self, sid: int, name: str, value: int) -> None:
        reg, bus = self.models[self.ids.index(sid)].reg(name), self.bus
        write = {1: bus.packets.write1ByteTxRx, 2: bus.packets.write2ByteTxRx, 4: bus.packets.write4ByteTxRx}[reg.size]
        raw = int.from_bytes(reg.encode(value), "little")
        for attempt in range(self.retries + 1):
            self.stats.retries += attempt > 0
            bus.flush()
            result, error = write(bus.port, sid, reg.address, raw)
            if result == bus.ok:
                self._error_bits(sid, error)
                return
            self._count(result)
        raise no_answer(sid, self.port_name)

    def _check_servos(self) -> None:
        """Ping every servo (with retries) and check its model number against the profile."""
        bus = self.bus
        for sid, model in zip(self.ids, self.models):
            for attempt in range(self.retries + 1):
                self.stats.retries += attempt > 0
                bus.flush()
                try:
                    number, result, error = bus.packets.ping(bus.port, sid)
                except IndexError:  # a late reply to an earlier ping taken for this one: the SDK misparses it
                    result = -1
                if result == bus.ok:
                    break
                self._count(result)
            else:
                raise no_answer(sid, self.port_name)
            if number != model.model_number:
                found = next((m.name for m in P.MODELS.values() if m.model_number == number), f"model {number}")
                raise UserError(f"servo {sid} on {self.port_name} is a {found}, but the profile says {model.name} "
                                "(fix hardware.models or the servo ID)")

    def _set_gripper_limit(self) -> None:
        """Cap the gripper servo's torque at ``profile.gripper.effort`` (it squeezes, never crushes)."""
        g = self.profile.gripper
        if g is None:
            return
        j = len(self.profile.joints)
        sid, model = self.ids[j], self.models[j]
        self._write_register(sid, "torque_enable", 0)  # Dynamixel EEPROM writes need torque off
        self._write_register(sid, "effort_limit", model.effort_limit_value(g.effort))


def scan(port: str, protocol: str, baudrate: int = 1_000_000, ids: range = range(0, 21),
         timeout_ms: float = 50.0) -> dict[int, str]:
    """Servo IDs answering a ping on ``port`` -> model name (or ``model <number>``)."""
    bus = Bus(port, baudrate, protocol, timeout_ms)
    found: dict[int, str] = {}
    try:
        for sid in ids:
            bus.flush()
            number, result, _ = bus.packets.ping(bus.port, sid)
            if result == bus.ok:
                found[sid] = next((m.name for m in P.MODELS.values() if m.model_number == number), f"model {number}")
    finally:
        bus.close()
    return found
