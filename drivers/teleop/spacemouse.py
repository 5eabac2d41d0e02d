"""3Dconnexion SpaceMouse teleop through hidapi: 6-D twist plus two buttons.

Left button toggles the gripper, right button is the deadman toggle. Translation and rotation
come in HID reports 1 and 2 (three little-endian int16 each, about ±350 full scale); newer
models send all six axes in report 1. Axes are mapped to the base frame (x forward, y left, z up).
"""

from __future__ import annotations

import struct

import numpy as np

from robot_stack.drivers.teleop.device import TeleopInput, deadzone
from robot_stack.errors import UserError

VENDOR_IDS = (0x046D, 0x256F)  # Logitech (older 3Dconnexion), 3Dconnexion
FULL_SCALE = 350.0


class SpaceMouseParser:
    """Decodes raw HID reports (kept apart from the device so recorded reports can be replayed)."""

    def __init__(self) -> None:
        self.translation = np.zeros(3)
        self.rotation = np.zeros(3)
        self.buttons = 0
        self.deadman = False
        self._toggle = False

    def feed(self, report: bytes) -> None:
        if not report:
            return
        kind = report[0]
        if kind == 1 and len(report) >= 7:
            self.translation = np.array(struct.unpack("<hhh", bytes(report[1:7]))) / FULL_SCALE
            if len(report) >= 13:
                self.rotation = np.array(struct.unpack("<hhh", bytes(report[7:13]))) / FULL_SCALE
        elif kind == 2 and len(report) >= 7:
            self.rotation = np.array(struct.unpack("<hhh", bytes(report[1:7]))) / FULL_SCALE
        elif kind == 3 and len(report) >= 2:
            pressed = report[1] & ~self.buttons
            self.buttons = report[1]
            if pressed & 1:
                self._toggle = True
            if pressed & 2:
                self.deadman = not self.deadman

    def take(self) -> TeleopInput:
        t, r = np.clip(self.translation, -1, 1), np.clip(self.rotation, -1, 1)
        # device frame: x right, y towards the user, z down -> base frame x forward, y left, z up
        linear = np.array([-deadzone(t[1]), -deadzone(t[0]), -deadzone(t[2])])
        angular = np.array([-deadzone(r[1]), -deadzone(r[0]), -deadzone(r[2])])
        out = TeleopInput(linear=linear, angular=angular, deadman=self.deadman, gripper_toggle=self._toggle)
        self._toggle = False
        return out


class SpaceMouseDevice:
    name = "spacemouse"

    def __init__(self, path: str = ""):
        try:
            import hid
        except ImportError:
            raise UserError("SpaceMouse teleop needs the 'hidapi' package: pip install hidapi") from None
        devices = hid.enumerate()
        mice = [d for d in devices if d["vendor_id"] in VENDOR_IDS and "space" in (d.get("product_string") or "").lower()]
        if path:
            mice = [d for d in devices if d["path"].decode(errors="ignore") == path]
        if not mice:
            listed = ", ".join(f"{d.get('product_string') or '?'} ({d['vendor_id']:04x}:{d['product_id']:04x})" for d in devices)
            raise UserError(f"no SpaceMouse found (HID devices: {listed or 'none'}); plug one in and check udev permissions")
        self.dev = hid.device()
        self.dev.open_path(mice[0]["path"])
        self.dev.set_nonblocking(True)
        self.parser = SpaceMouseParser()

    def poll(self) -> TeleopInput:
        while report := self.dev.read(64):
            self.parser.feed(bytes(report))
        return self.parser.take()

    def close(self) -> None:
        self.dev.close()
