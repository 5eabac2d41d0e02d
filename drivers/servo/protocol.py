"""Servo-bus wire formats and control tables.

Two packet protocols are spoken on the bus:

* **Dynamixel Protocol 2.0** (ROBOTIS X series: XL330, XL430, XM430, ...): header ``FF FF FD 00``,
  16-bit length, CRC-16 (polynomial 0x8005), byte stuffing (``FF FF FD`` -> ``FF FF FD FD``) and
  status packets with instruction ``0x55`` and an error byte (bit 7 = hardware alert).
* **Feetech SCS/STS** (STS3215 in the SO-100/SO-101 arms): Dynamixel-1.0-like ``FF FF ID LEN INST
  PARAMS CHECKSUM`` with ``checksum = ~sum(ID..params) & 0xFF``, little-endian words and sign-magnitude
  signed values.

The codecs here are independent of the vendor SDKs (the emulator uses them; the driver uses the
SDKs), so the tests cross-check one against the other byte for byte. Control-table addresses were
taken from the ROBOTIS e-Manual / ``dynamixel_sdk`` examples and the Feetech memory table (as used
by ``scservo_sdk`` and LeRobot).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from robot_stack.errors import UserError

BROADCAST_ID = 0xFE

# Instructions (shared numbering; Feetech uses the Protocol 1.0 subset).
PING, READ, WRITE, REG_WRITE, ACTION, FACTORY_RESET, REBOOT = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08
STATUS = 0x55
SYNC_READ, SYNC_WRITE, BULK_READ, BULK_WRITE = 0x82, 0x83, 0x92, 0x93

# Dynamixel 2.0 status error numbers (low 7 bits of the error byte) and the alert bit.
DXL_ERR_RESULT_FAIL, DXL_ERR_INSTRUCTION, DXL_ERR_CRC = 1, 2, 3
DXL_ERR_DATA_RANGE, DXL_ERR_DATA_LENGTH, DXL_ERR_DATA_LIMIT, DXL_ERR_ACCESS = 4, 5, 6, 7
DXL_ERRBIT_ALERT = 0x80
DXL_HW_OVERLOAD = 0x20  # Hardware Error Status (address 70) bit 5

# Feetech status error bits.
SCS_ERRBIT_VOLTAGE, SCS_ERRBIT_ANGLE, SCS_ERRBIT_OVERHEAT, SCS_ERRBIT_OVERELE, SCS_ERRBIT_OVERLOAD = 1, 2, 4, 8, 32


# ------------------------------------------------------------------------------------------------
# Control tables
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register:
    address: int
    size: int
    sign_bit: int | None = None
    """Feetech sign-magnitude bit; ``None`` with ``signed`` means two's complement."""
    signed: bool = False

    def decode(self, raw: bytes | bytearray | list[int], offset: int = 0) -> int:
        value = int.from_bytes(bytes(raw[offset: offset + self.size]), "little")
        if self.sign_bit is not None:
            mask = 1 << self.sign_bit
            return -(value & ~mask) if value & mask else value
        if self.signed and value >= 1 << (8 * self.size - 1):
            value -= 1 << (8 * self.size)
        return value

    def encode(self, value: int) -> bytes:
        value = int(value)
        if self.sign_bit is not None:
            value = (-value) | (1 << self.sign_bit) if value < 0 else value
        elif value < 0:
            value += 1 << (8 * self.size)
        return value.to_bytes(self.size, "little")


@dataclass(frozen=True)
class ServoModel:
    """One servo model: protocol, model number, control table and physical units."""

    name: str
    protocol: Literal["dynamixel", "feetech"]
    model_number: int
    resolution: int
    """Position ticks per revolution."""
    velocity_unit: float
    """rad/s per velocity tick."""
    current_unit: float
    """A per current tick."""
    torque_constant: float
    """N·m per A (approximate, from the datasheet stall torque and current)."""
    stall_torque: float
    """N·m at the nominal voltage."""
    table: dict[str, Register] = field(repr=False)
    position_max: int = 4095
    overload_bit: int = SCS_ERRBIT_OVERLOAD
    rom_size: int = 256

    def reg(self, name: str) -> Register:
        return self.table[name]

    @property
    def state_block(self) -> tuple[int, int]:
        """(start address, length) of one contiguous read covering position, velocity and current."""
        regs = [self.table[n] for n in ("present_position", "present_velocity", "present_current")]
        start = min(r.address for r in regs)
        end = max(r.address + r.size for r in regs)
        return start, end - start

    def effort_limit_value(self, effort_nm: float) -> int:
        """Register value for the ``effort_limit`` register that caps torque at ``effort_nm``."""
        if self.protocol == "dynamixel":  # Current Limit, in current units
            return max(1, round(effort_nm / self.torque_constant / self.current_unit))
        return max(1, min(1000, round(1000 * effort_nm / self.stall_torque)))  # Torque Limit, 0.1 %

    def effort_limit_nm(self, value: int) -> float:
        if self.protocol == "dynamixel":
            return value * self.current_unit * self.torque_constant
        return value / 1000 * self.stall_torque


_RPM = 2 * math.pi / 60

# ROBOTIS X series (Protocol 2.0), e-Manual control table.
_DXL_X_TABLE = {
    "model_number": Register(0, 2),
    "firmware_version": Register(6, 1),
    "id": Register(7, 1),
    "baud_rate": Register(8, 1),
    "return_delay_time": Register(9, 1),
    "drive_mode": Register(10, 1),
    "operating_mode": Register(11, 1),
    "homing_offset": Register(20, 4, signed=True),
    "effort_limit": Register(38, 2),  # Current Limit
    "max_position_limit": Register(48, 4),
    "min_position_limit": Register(52, 4),
    "torque_enable": Register(64, 1),
    "led": Register(65, 1),
    "status_return_level": Register(68, 1),
    "hardware_error": Register(70, 1),
    "goal_current": Register(102, 2, signed=True),
    "goal_velocity": Register(104, 4, signed=True),
    "profile_velocity": Register(112, 4),
    "goal_position": Register(116, 4, signed=True),
    "moving": Register(122, 1),
    "present_current": Register(126, 2, signed=True),
    "present_velocity": Register(128, 4, signed=True),
    "present_position": Register(132, 4, signed=True),
    "present_voltage": Register(144, 2),
    "present_temperature": Register(146, 1),
}
_DXL_EEPROM_END = 64  # addresses below Torque Enable are EEPROM: writable only with torque off

# Feetech STS/SMS series memory table (little-endian, sign-magnitude signed fields).
_STS_TABLE = {
    "firmware_version": Register(0, 1),
    "model_number": Register(3, 2),
    "id": Register(5, 1),
    "baud_rate": Register(6, 1),
    "return_delay_time": Register(7, 1),
    "status_return_level": Register(8, 1),
    "min_position_limit": Register(9, 2),
    "max_position_limit": Register(11, 2),
    "max_torque_limit": Register(16, 2),
    "homing_offset": Register(31, 2, sign_bit=11),
    "operating_mode": Register(33, 1),
    "torque_enable": Register(40, 1),
    "acceleration": Register(41, 1),
    "goal_position": Register(42, 2, sign_bit=15),
    "goal_time": Register(44, 2),
    "goal_velocity": Register(46, 2, sign_bit=15),
    "effort_limit": Register(48, 2),  # Torque Limit, 0.1 % of max torque
    "lock": Register(55, 1),
    "present_position": Register(56, 2),
    "present_velocity": Register(58, 2, sign_bit=15),
    "present_load": Register(60, 2, sign_bit=10),
    "present_voltage": Register(62, 1),
    "present_temperature": Register(63, 1),
    "hardware_error": Register(65, 1),  # Status
    "moving": Register(66, 1),
    "present_current": Register(69, 2, sign_bit=15),
}
_STS_EEPROM_END = 40

MODELS: dict[str, ServoModel] = {
    "xl330-m288": ServoModel("xl330-m288", "dynamixel", 1200, 4096, 0.229 * _RPM, 0.001, 0.52 / 1.47, 0.52,
                             _DXL_X_TABLE, overload_bit=DXL_ERRBIT_ALERT),
    "xl330-m077": ServoModel("xl330-m077", "dynamixel", 1190, 4096, 0.229 * _RPM, 0.001, 0.215 / 1.47, 0.215,
                             _DXL_X_TABLE, overload_bit=DXL_ERRBIT_ALERT),
    "xl430-w250": ServoModel("xl430-w250", "dynamixel", 1060, 4096, 0.229 * _RPM, 0.00269, 1.5 / 1.4, 1.5,
                             _DXL_X_TABLE, overload_bit=DXL_ERRBIT_ALERT),
    "xm430-w350": ServoModel("xm430-w350", "dynamixel", 1020, 4096, 0.229 * _RPM, 0.00269, 4.1 / 2.3, 4.1,
                             _DXL_X_TABLE, overload_bit=DXL_ERRBIT_ALERT),
    # STS3215 (7.4 V): speed in ticks/s, current 6.5 mA per unit, ~2.94 N·m stall at ~2.7 A.
    "sts3215": ServoModel("sts3215", "feetech", 777, 4096, 2 * math.pi / 4096, 0.0065, 2.94 / 2.7, 2.94,
                          _STS_TABLE),
}
EEPROM_END = {"dynamixel": _DXL_EEPROM_END, "feetech": _STS_EEPROM_END}


def get_model(name: str) -> ServoModel:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise UserError(f"unknown servo model {name!r} (known: {', '.join(MODELS)})") from None


# ------------------------------------------------------------------------------------------------
# Dynamixel Protocol 2.0 codec
# ------------------------------------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()
DXL_HEADER = b"\xff\xff\xfd\x00"


def dxl_crc(data: bytes | bytearray) -> int:
    """CRC-16 (polynomial 0x8005, MSB first, initial value 0) used by Protocol 2.0."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def dxl_stuff(body: bytes) -> bytes:
    """Insert 0xFD after every FF FF FD inside instruction+parameters (the header is not stuffed)."""
    out = bytearray()
    for byte in body:
        out.append(byte)
        if byte == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def dxl_unstuff(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        if body[i] == 0xFD and i >= 2 and body[i - 2] == 0xFF and body[i - 1] == 0xFF and i + 1 < len(body) \
                and body[i + 1] == 0xFD:
            i += 1  # skip the stuffed copy
        i += 1
    return bytes(out)


def dxl_packet(servo_id: int, instruction: int, params: bytes = b"", error: int | None = None) -> bytes:
    """A complete Protocol 2.0 packet (instruction, or status when ``error`` is given)."""
    body = bytes([instruction]) + (bytes([error]) if error is not None else b"") + bytes(params)
    body = dxl_stuff(body)
    head = DXL_HEADER + bytes([servo_id]) + (len(body) + 2).to_bytes(2, "little")
    crc = dxl_crc(head + body)
    return head + body + crc.to_bytes(2, "little")


# ------------------------------------------------------------------------------------------------
# Feetech (SCS protocol) codec
# ------------------------------------------------------------------------------------------------
def scs_checksum(data: bytes | bytearray) -> int:
    return ~sum(data) & 0xFF


def scs_packet(servo_id: int, instruction_or_error: int, params: bytes = b"") -> bytes:
    """A complete Feetech packet: FF FF ID LEN INST|ERR PARAMS CHECKSUM."""
    core = bytes([servo_id, len(params) + 2, instruction_or_error]) + bytes(params)
    return b"\xff\xff" + core + bytes([scs_checksum(core)])


# ------------------------------------------------------------------------------------------------
# Stream parsers (byte stream in, packets out)
# ------------------------------------------------------------------------------------------------
@dataclass
class Packet:
    servo_id: int
    instruction: int
    params: bytes
    ok: bool = True
    """False when the checksum/CRC did not match (the packet is reported so it can be counted)."""


class PacketParser:
    """Incremental parser for instruction packets of one protocol."""

    def __init__(self, protocol: Literal["dynamixel", "feetech"]):
        self.protocol = protocol
        self.buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Packet]:
        self.buffer += data
        while True:
            packet = self._next_dxl() if self.protocol == "dynamixel" else self._next_scs()
            if packet is None:
                return
            yield packet

    def _sync(self, header: bytes) -> bool:
        idx = self.buffer.find(header)
        if idx < 0:
            keep = len(header) - 1  # a header may be split across reads
            del self.buffer[: max(0, len(self.buffer) - keep)]
            return False
        del self.buffer[:idx]
        return True

    def _next_dxl(self) -> Packet | None:
        while self._sync(DXL_HEADER[:3]):
            if len(self.buffer) < 7:
                return None
            if self.buffer[3] != 0x00:  # reserved byte; FF FF FD FD is stuffing, not a header
                del self.buffer[0]
                continue
            length = int.from_bytes(self.buffer[5:7], "little")
            if length < 3 or length > 1024:
                del self.buffer[0]
                continue
            total = 7 + length
            if len(self.buffer) < total:
                return None
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            ok = dxl_crc(raw[:-2]) == int.from_bytes(raw[-2:], "little")
            body = dxl_unstuff(raw[7:-2])
            return Packet(raw[4], body[0], body[1:], ok)
        return None

    def _next_scs(self) -> Packet | None:
        while self._sync(b"\xff\xff"):
            if len(self.buffer) < 4:
                return None
            if self.buffer[2] == 0xFF:  # FF FF FF ...: drop one leading FF
                del self.buffer[0]
                continue
            length = self.buffer[3]
            if length < 2:
                del self.buffer[0]
                continue
            total = 4 + length
            if len(self.buffer) < total:
                return None
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            ok = scs_checksum(raw[2:-1]) == raw[-1]
            return Packet(raw[2], raw[4], raw[5:-1], ok)
        return None
