"""Servo-bus emulator: a pseudo-terminal that answers like a bus of Dynamixel or Feetech servos.

``servo_bus_emulator --robot so101`` opens a pty, prints one JSON line ``{"port": "/dev/pts/N", ...}``
and then answers the real packet protocol (Dynamixel Protocol 2.0 or Feetech SCS/STS, chosen by the
profile's ``hardware.models``) for the servo IDs of the profile, so the vendor SDKs (and the
``servo_arm_node`` driver) talk to it like to a USB bus adapter. Joint motion comes from MuJoCo
physics of the profile's MJCF, stepped in real time: goal positions become position-actuator
targets, present position/velocity/current are read back from the simulation through the joint
calibration (the same ticks <-> radians map a real arm has).

Fault injection: ``--silent 3`` (servo 3 never answers, or only after ``--silent-after`` s),
``--corrupt 0.1`` (each status packet's checksum is corrupted with probability 0.1),
``--overload 2`` (servo 2 reports the overload error bit), ``--latency-ms 2`` (added reply delay).

Counters (packets, corrupted replies, goal writes, goal writes outside the joint limits, ...) are
written as JSON to ``--status-file`` every 0.2 s and on exit, for tests and monitoring.

``ServoBus`` (the control tables and the packet protocol on the pty) serves any ``Plant`` (what the
servos move): ``MujocoArm`` here (the arm alone), the emulated robot cell's arm in its task scene
(``robot_stack.sim.cell``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import sys
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from robot_stack.drivers.servo import protocol as P
from robot_stack.drivers.servo.calibration import CalibrationFile, TickMap, joint_limits
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile

# First read-only address (present values) per protocol; writes at or above it are refused.
_READ_ONLY_FROM = {"dynamixel": 120, "feetech": 56}


@dataclass(frozen=True)
class Faults:
    silent: tuple[int, ...] = ()
    """Servo IDs that do not answer."""
    silent_after: float = 0.0
    """Seconds after start before the silent IDs stop answering."""
    corrupt: float = 0.0
    """Probability that a status packet is sent with a wrong checksum/CRC."""
    overload: tuple[int, ...] = ()
    """Servo IDs that report the overload error bit in every status packet."""
    latency_ms: float = 0.0
    """Added delay before each reply."""
    seed: int = 0


class _Servo:
    """One servo's control table (bytes), as the bus sees it."""

    def __init__(self, servo_id: int, model: P.ServoModel, joint: int):
        self.id, self.model, self.joint = servo_id, model, joint
        self.mem = bytearray(model.rom_size)

    def get(self, name: str) -> int:
        reg = self.model.reg(name)
        return reg.decode(self.mem, reg.address)

    def set(self, name: str, value: int) -> None:
        reg = self.model.reg(name)
        self.mem[reg.address: reg.address + reg.size] = reg.encode(value)


class Plant(Protocol):
    """What a servo bus moves: joints in profile order (arm joints then gripper), SI units."""

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position (rad), velocity (rad/s) and torque (N·m) of every joint, as the servos' sensors see them."""

    def actuate(self, joint: int, torque_on: bool, goal: float, effort_limit: float) -> None:
        """Servo ``joint`` changed: torque enable, goal angle (rad), torque limit (N·m)."""


class RealTimeClock:
    """Paces a fixed-step simulation on the wall clock.

    ``due()`` says how many steps of ``dt`` bring simulated time up to elapsed wall time (at most
    ``burst`` at once); a backlog beyond ``max_lag`` s (an overloaded host) is dropped and counted,
    so the simulation never runs fast to catch up."""

    def __init__(self, dt: float, *, max_lag: float = 0.1, burst: int = 50):
        self.dt, self.max_lag, self.burst = dt, max_lag, burst
        self.start = time.monotonic()
        self.sim_time = 0.0
        self.overruns = 0
        self.skipped = 0.0
        """Wall seconds not simulated (dropped backlogs)."""

    def restart(self) -> None:
        self.start, self.sim_time, self.skipped = time.monotonic(), 0.0, 0.0

    def _lag(self) -> float:
        return time.monotonic() - self.start - self.skipped - self.sim_time

    def due(self) -> int:
        lag = self._lag()
        return min(self.burst, math.ceil(lag / self.dt)) if lag > 0 else 0

    def advance(self, steps: int) -> None:
        self.sim_time += steps * self.dt
        lag = self._lag()
        if lag > self.max_lag:
            self.overruns += 1
            self.skipped += lag

    @property
    def realtime_factor(self) -> float:
        """Simulated over wall seconds since the start."""
        wall = time.monotonic() - self.start
        return self.sim_time / wall if wall > 0 else 1.0


class MujocoArm:
    """Plant: the profile's MJCF alone (no scene), position actuators driven by the servos' goals."""

    def __init__(self, profile: RobotProfile):
        import mujoco

        if profile.sim is None:
            raise UserError(f"robot {profile.name!r} has no sim.mjcf: the emulator needs the MuJoCo model")
        path = profile.resolve(profile.sim.mjcf)
        try:
            self.model = mujoco.MjModel.from_xml_path(str(path))
        except (ValueError, FileNotFoundError) as err:
            raise UserError(f"{path}: cannot load MJCF ({str(err).splitlines()[0]})") from None
        self.data = mujoco.MjData(self.model)
        self._mj_step = mujoco.mj_step
        self.qadr, self.dadr, self.act = [], [], []
        for name in profile.all_joint_names:
            jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise UserError(f"{path}: no joint {name!r} (profile {profile.name!r})")
            acts = [a for a in range(self.model.nu) if self.model.actuator_trnid[a, 0] == jid]
            if not acts:
                raise UserError(f"{path}: joint {name!r} has no actuator")
            self.qadr.append(self.model.jnt_qposadr[jid])
            self.dadr.append(self.model.jnt_dofadr[jid])
            self.act.append(acts[0])
        self.gain = self.model.actuator_gainprm[self.act, 0].copy()
        self.bias = self.model.actuator_biasprm[self.act, 1:3].copy()
        self.force_range = self.model.actuator_forcerange[self.act].copy()
        home = np.array(profile.sim.home if profile.sim.home else np.zeros(len(self.act)))
        self.data.qpos[self.qadr] = home
        self.data.ctrl[self.act] = home

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.data
        return d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy(), d.actuator_force[self.act].copy()

    def actuate(self, joint: int, torque_on: bool, goal: float, effort_limit: float) -> None:
        j, a = joint, self.act[joint]
        self.model.actuator_gainprm[a, 0] = self.gain[j] if torque_on else 0.0
        self.model.actuator_biasprm[a, 1:3] = self.bias[j] if torque_on else 0.0
        limit = min(effort_limit, float(self.force_range[j, 1]))
        self.model.actuator_forcerange[a] = (-limit, limit)
        self.data.ctrl[a] = goal

    def step(self) -> None:
        self._mj_step(self.model, self.data)


class ServoBus:
    """The servos of ``profile.hardware`` on a pseudo-terminal: control tables and the packet protocol,
    in front of a ``Plant``. Whoever steps the plant calls ``update_present()`` (holding ``lock``)."""

    def __init__(self, profile: RobotProfile, calibration: CalibrationFile, plant: Plant, faults: Faults = Faults(),
                 status_file: str | Path | None = None):
        hw = profile.hardware
        names = profile.all_joint_names
        if len(hw.ids) != len(names) or len(hw.models) != len(names):
            raise UserError(f"robot {profile.name!r}: hardware.ids and hardware.models need one entry per joint "
                            f"({', '.join(names)})")
        models = [P.get_model(m) for m in hw.models]
        protocols = {m.protocol for m in models}
        if len(protocols) != 1:
            raise UserError(f"robot {profile.name!r}: one bus cannot mix Dynamixel and Feetech servos")
        self.protocol = protocols.pop()
        self.profile, self.plant, self.faults = profile, plant, faults
        self.status_file = Path(status_file) if status_file else None
        self.ticks = TickMap(calibration, profile, [m.resolution for m in models])
        self.lower, self.upper = joint_limits(profile)
        self.tolerance = 1.5 * self.ticks.rad_per_tick

        self.servos: dict[int, _Servo] = {}
        for j, (sid, model) in enumerate(zip(hw.ids, models)):
            s = _Servo(sid, model, j)
            s.set("model_number", model.model_number)
            s.set("firmware_version", 52 if model.protocol == "dynamixel" else 3)
            s.set("id", sid)
            s.set("status_return_level", 2 if model.protocol == "dynamixel" else 1)
            s.set("operating_mode", 3 if model.protocol == "dynamixel" else 0)
            s.set("min_position_limit", int(self.ticks.tick_min[j]))
            s.set("max_position_limit", int(self.ticks.tick_max[j]))
            s.set("effort_limit", model.effort_limit_value(model.stall_torque))
            s.set("present_voltage", 50 if model.protocol == "dynamixel" else 74)
            s.set("present_temperature", 35)
            self.servos[sid] = s
        self.lock = threading.Lock()
        self.update_present()
        for s in self.servos.values():
            s.set("goal_position", s.get("present_position"))
            self._apply(s)
        self.rng = random.Random(faults.seed)
        self.counters = {
            "rx_packets": 0, "rx_bad_checksum": 0, "tx_status": 0, "tx_corrupted": 0, "dropped_silent": 0,
            "instruction_errors": 0, "sync_reads": 0, "sync_writes": 0, "bulk_reads": 0, "goal_writes": 0,
            "out_of_limit_writes": 0, "torque_writes": 0,
        }
        self.goal_log: deque[tuple[float, list[int]]] = deque(maxlen=500)
        """(monotonic time, goal ticks in profile order) after every sync write: the bus-side command history."""
        self.master = self.slave = -1
        self.port = ""
        self.link: Path | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self, link: str | Path | None = None) -> str:
        """Create the pty (and ``link``, a stable symlink to it) and start serving; returns the port path."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: a raw byte pipe like a USB adapter
        self.port = os.ttyname(self.slave)
        self.link = Path(link) if link else None
        if self.link is not None:
            if self.link.is_symlink():
                self.link.unlink()
            self.link.symlink_to(self.port)
        self._t0 = time.monotonic()
        self._start(self._serve)
        return self.port

    def _start(self, target) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.write_status()
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1

    def status(self) -> dict:
        with self.lock:
            goals = {sid: s.get("goal_position") for sid, s in self.servos.items()}
            torque = {sid: s.get("torque_enable") for sid, s in self.servos.items()}
            q = self.plant.joint_state()[0].tolist()
            log = list(self.goal_log)
        return {"port": self.port, "protocol": self.protocol, "time": time.monotonic() - self._t0,
                **self.counters, "goal_ticks": goals, "torque": torque, "joint_positions": q, "goal_log": log}

    def write_status(self) -> None:
        if self.status_file is None:
            return
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, self.status_file)

    # -- plant -------------------------------------------------------------------------------------
    def update_present(self) -> None:
        """Present position/velocity/current/load registers from the plant (call holding ``lock``)."""
        q, qd, force = self.plant.joint_state()
        raw_ticks = self.ticks.zero + self.ticks.direction * q / self.ticks.rad_per_tick
        for s in self.servos.values():
            j, m = s.joint, s.model
            d = self.ticks.direction[j]
            s.set("present_position", int(np.clip(round(raw_ticks[j]), 0, m.position_max)))
            s.set("present_velocity", round(d * qd[j] / m.velocity_unit))
            s.set("present_current", round(d * force[j] / m.torque_constant / m.current_unit))
            s.set("moving", int(abs(qd[j]) > 0.02))
            if m.protocol == "feetech":
                s.set("present_load", int(np.clip(round(1000 * d * force[j] / m.stall_torque), -1000, 1000)))

    def _apply(self, s: _Servo) -> None:
        """Hand a servo's torque, goal and effort limit to the plant."""
        self.plant.actuate(s.joint, s.get("torque_enable") == 1, self._goal_angle(s),
                           s.model.effort_limit_nm(s.get("effort_limit")))

    def _goal_angle(self, s: _Servo) -> float:
        j = s.joint
        return float(self.ticks.direction[j] * (s.get("goal_position") - self.ticks.zero[j]) * self.ticks.rad_per_tick[j])

    # -- bus -----------------------------------------------------------------------------------------
    def _serve(self) -> None:
        parser = P.PacketParser(self.protocol)
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the other side closed; keep serving the next opener
                time.sleep(0.01)
                continue
            replies: list[bytes] = []
            for packet in parser.feed(data):
                self.counters["rx_packets"] += 1
                with self.lock:
                    replies += self._handle(packet)
            if replies:
                if self.faults.latency_ms > 0:
                    time.sleep(self.faults.latency_ms / 1000)
                os.write(self.master, b"".join(replies))

    def _silent(self, sid: int) -> bool:
        return sid in self.faults.silent and time.monotonic() - self._t0 >= self.faults.silent_after

    def _status(self, s: _Servo, error: int = 0, params: bytes = b"") -> list[bytes]:
        """The status packet of servo ``s`` (empty when it is silent)."""
        if self._silent(s.id):
            self.counters["dropped_silent"] += 1
            return []
        if s.id in self.faults.overload:
            error |= s.model.overload_bit
            if s.model.protocol == "dynamixel":
                s.set("hardware_error", P.DXL_HW_OVERLOAD)
        if self.protocol == "dynamixel":
            pkt = bytearray(P.dxl_packet(s.id, P.STATUS, params, error))
        else:
            pkt = bytearray(P.scs_packet(s.id, error, params))
        if self.faults.corrupt > 0 and self.rng.random() < self.faults.corrupt:
            pkt[-1] ^= 0xFF
            self.counters["tx_corrupted"] += 1
        self.counters["tx_status"] += 1
        return [bytes(pkt)]

    def _handle(self, pkt: P.Packet) -> list[bytes]:
        dxl = self.protocol == "dynamixel"
        target = self.servos.get(pkt.servo_id)
        if not pkt.ok:
            self.counters["rx_bad_checksum"] += 1
            # Dynamixel answers a unicast packet with a CRC error; Feetech ignores it.
            return self._status(target, P.DXL_ERR_CRC) if (dxl and target) else []
        if pkt.servo_id != P.BROADCAST_ID and target is None:
            return []
        p, inst = pkt.params, pkt.instruction
        addr_size = 2 if dxl else 1

        def word(i: int) -> int:
            return int.from_bytes(p[i: i + addr_size], "little")

        if inst == P.PING:
            targets = [target] if target else list(self.servos.values())
            out: list[bytes] = []
            for s in targets:
                params = s.model.reg("model_number").encode(s.get("model_number")) + bytes([s.get("firmware_version")]) \
                    if dxl else b""
                out += self._status(s, 0, params)
            return out
        if inst == P.READ and target:
            addr, length = word(0), word(addr_size)
            if addr + length > len(target.mem):
                return self._status(target, P.DXL_ERR_ACCESS if dxl else 0)
            return self._status(target, 0, bytes(target.mem[addr: addr + length]))
        if inst == P.WRITE:
            addr, data = word(0), p[addr_size:]
            targets = [target] if target else list(self.servos.values())
            out = []
            for s in targets:
                err = self._write(s, addr, data)
                if target:
                    out += self._status(s, err if dxl else 0)
            return out
        if inst in (P.SYNC_READ, P.SYNC_WRITE) and pkt.servo_id == P.BROADCAST_ID:
            addr, length = word(0), word(addr_size)
            body = p[2 * addr_size:]
            if inst == P.SYNC_READ:
                self.counters["sync_reads"] += 1
                out = []
                for sid in body:
                    s = self.servos.get(sid)
                    if s is not None and addr + length <= len(s.mem):
                        out += self._status(s, 0, bytes(s.mem[addr: addr + length]))
                return out
            self.counters["sync_writes"] += 1
            for i in range(0, len(body) - length, length + 1):
                s = self.servos.get(body[i])
                if s is not None:
                    self._write(s, addr, body[i + 1: i + 1 + length])
            self.goal_log.append((time.monotonic(), [s.get("goal_position") for s in self.servos.values()]))
            return []
        if dxl and inst == P.BULK_READ and pkt.servo_id == P.BROADCAST_ID:
            self.counters["bulk_reads"] += 1
            out = []
            for i in range(0, len(p) - 4, 5):
                s = self.servos.get(p[i])
                addr, length = int.from_bytes(p[i + 1: i + 3], "little"), int.from_bytes(p[i + 3: i + 5], "little")
                if s is not None and addr + length <= len(s.mem):
                    out += self._status(s, 0, bytes(s.mem[addr: addr + length]))
            return out
        if dxl and inst == P.REBOOT and target:
            target.set("torque_enable", 0)
            target.set("hardware_error", 0)
            self._apply(target)
            return self._status(target)
        self.counters["instruction_errors"] += 1
        return self._status(target, P.DXL_ERR_INSTRUCTION) if (dxl and target) else []

    def _write(self, s: _Servo, addr: int, data: bytes) -> int:
        """Write ``data`` at ``addr`` of servo ``s``; returns a Dynamixel error number (0 = ok)."""
        m = s.model
        end = addr + len(data)
        if end > _READ_ONLY_FROM[m.protocol] or not data:
            return P.DXL_ERR_ACCESS
        if addr < P.EEPROM_END[m.protocol] and s.get("torque_enable") == 1 and m.protocol == "dynamixel":
            return P.DXL_ERR_ACCESS  # EEPROM is locked while torque is on
        goal = m.reg("goal_position")
        if addr < goal.address + goal.size and end > goal.address:
            new = bytearray(s.mem)
            new[addr:end] = data
            ticks = goal.decode(new, goal.address)
            if not self._goal_ok(s, ticks):
                self.counters["out_of_limit_writes"] += 1
                if m.protocol == "dynamixel":
                    return P.DXL_ERR_DATA_LIMIT  # X series refuses goals beyond its position limits
                ticks = int(np.clip(ticks, s.get("min_position_limit"), s.get("max_position_limit")))
                data = bytes(new[addr:goal.address]) + goal.encode(ticks) + bytes(new[goal.address + goal.size:end])
            self.counters["goal_writes"] += 1
        torque = m.reg("torque_enable")
        if addr <= torque.address < end:
            self.counters["torque_writes"] += 1
        s.mem[addr:end] = data
        self._apply(s)
        return 0

    def _goal_ok(self, s: _Servo, ticks: int) -> bool:
        if not s.get("min_position_limit") <= ticks <= s.get("max_position_limit"):
            return False
        j = s.joint
        angle = self.ticks.direction[j] * (ticks - self.ticks.zero[j]) * self.ticks.rad_per_tick[j]
        return bool(self.lower[j] - self.tolerance[j] <= angle <= self.upper[j] + self.tolerance[j])



class ServoBusEmulator(ServoBus):
    """``servo_bus_emulator``: a ``ServoBus`` in front of ``MujocoArm``, stepped in real time."""

    def __init__(self, profile: RobotProfile, calibration: CalibrationFile, faults: Faults = Faults(),
                 status_file: str | Path | None = None):
        self.arm = MujocoArm(profile)
        super().__init__(profile, calibration, self.arm, faults, status_file)

    def open(self, link: str | Path | None = None) -> str:
        port = super().open(link)
        self._start(self._physics)
        return port

    def _physics(self) -> None:
        clock = RealTimeClock(self.arm.model.opt.timestep)
        next_status = 0.0
        while not self._stop.is_set():
            with self.lock:
                steps = clock.due()
                for _ in range(steps):
                    self.arm.step()
                clock.advance(steps)
                self.update_present()
            if clock.sim_time >= next_status:
                self.write_status()
                next_status = clock.sim_time + 0.2
            time.sleep(clock.dt)


# --------------------------------------------------------------------------------------------------
def _ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated servo IDs, got {text!r}") from None


DESCRIPTION = ("Emulate a Dynamixel (Protocol 2.0) or Feetech STS servo bus on a pseudo-terminal, with the "
               "joints driven by MuJoCo physics of the robot. Prints {\"port\": ...} as the first stdout line.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servo_bus_emulator", description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", default="so101", help="robot profile name or YAML path")
    parser.add_argument("--calibration", default=None,
                        help="joint calibration YAML (default: the profile's hardware.calibration)")
    parser.add_argument("--link", default=None, help="also make this symlink to the pty (a stable port name)")
    parser.add_argument("--status-file", default=None, help="write counters as JSON here every 0.2 s")
    parser.add_argument("--silent", type=_ids, default=(), help="servo IDs that do not answer, e.g. 3 or 3,5")
    parser.add_argument("--silent-after", type=float, default=0.0, help="seconds before --silent takes effect")
    parser.add_argument("--corrupt", type=float, default=0.0, help="probability of a corrupted status packet")
    parser.add_argument("--overload", type=_ids, default=(), help="servo IDs that report an overload error")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added delay before each reply, ms")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the fault injection")
    parser.add_argument("--realtime-priority", type=int, default=0, metavar="N",
                        help="serve and step at SCHED_FIFO priority N (1-99), like servos that do not share the "
                             "computer's cores: for latency benchmarks on a loaded machine; 0 = normal scheduling")


def main(argv: list[str] | None = None) -> int:
    from robot_stack.cli import without_ros_args  # a launch file's <node> appends --ros-args

    return run(build_parser().parse_args(without_ros_args(sys.argv[1:] if argv is None else argv)))


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    from robot_stack.node import StopSignals

    stop = StopSignals()  # handlers that only record: any burst of signals gives one clean stop
    try:
        emulator = _build(args)
    except UserError as err:
        print(f"servo_bus_emulator: error: {err}", file=sys.stderr)
        return 2
    if args.realtime_priority:
        from robot_stack.realtime import set_fifo

        refused = set_fifo(args.realtime_priority)  # the bus and physics threads started next inherit it
        if refused:
            print(f"servo_bus_emulator: normal scheduling: {refused}", file=sys.stderr)
    port = emulator.open(args.link)
    print(json.dumps({"port": port, "protocol": emulator.protocol, "ids": list(emulator.servos)}), flush=True)
    try:
        stop.wait()
    finally:
        emulator.close()
        stop.ignore_rest()
    return 0


def _build(args: argparse.Namespace) -> ServoBusEmulator:
    from robot_stack.drivers.servo.calibration import load_calibration
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    cal_path = args.calibration or (str(profile.resolve(profile.hardware.calibration))
                                    if profile.hardware.calibration else None)
    if cal_path is None:
        raise UserError(f"robot {profile.name!r} has no hardware.calibration: pass --calibration")
    if not 0 <= args.realtime_priority <= 99:
        raise UserError(f"--realtime-priority must be 0 (normal scheduling) to 99, got {args.realtime_priority}")
    if not 0.0 <= args.corrupt <= 1.0:
        raise UserError(f"--corrupt must be a probability in [0, 1], got {args.corrupt}")
    faults = Faults(silent=args.silent, silent_after=args.silent_after, corrupt=args.corrupt,
                    overload=args.overload, latency_ms=args.latency_ms, seed=args.seed)
    return ServoBusEmulator(profile, load_calibration(cal_path, profile), faults, args.status_file)


if __name__ == "__main__":
    sys.exit(main())
