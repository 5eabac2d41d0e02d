"""Gamepad teleop through Linux evdev (Xbox / PlayStation layouts; works headless and over SSH).

Left stick: x/y, triggers: z up/down, right stick: pitch/yaw, bumpers: roll. South button (A/X)
toggles the gripper, east (B/circle) is the deadman toggle, west/north start and save episodes,
select discards, mode (home) is the E-STOP, d-pad up/down change speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_stack.drivers.teleop.device import TeleopInput, deadzone
from robot_stack.errors import UserError


def _ecodes():
    try:
        from evdev import ecodes
    except ImportError:
        raise UserError("gamepad teleop needs the 'evdev' package: pip install evdev") from None
    return ecodes


class GamepadMapping:
    """Turns evdev events into TeleopInput (kept apart from the device so any event source works)."""

    def __init__(self, abs_info: dict[int, tuple[int, int]]):
        e = _ecodes()
        self.e = e
        self.abs_info = abs_info  # code -> (min, max)
        self.axes: dict[int, float] = {}
        self.held: set[int] = set()
        self.deadman = False
        self._pending = TeleopInput()

    def _norm(self, code: int, value: int) -> float:
        lo, hi = self.abs_info.get(code, (-32768, 32767))
        return float(np.clip(2.0 * (value - lo) / max(hi - lo, 1) - 1.0, -1.0, 1.0))

    def feed(self, event) -> None:  # evdev.InputEvent
        e, p = self.e, self._pending
        if event.type == e.EV_ABS:
            if event.code == e.ABS_HAT0Y and event.value:
                p.speed_change += -int(np.sign(event.value))
            else:
                self.axes[event.code] = self._norm(event.code, event.value)
        elif event.type == e.EV_KEY:
            if event.value == 1:
                self.held.add(event.code)
                if event.code == e.BTN_SOUTH:
                    p.gripper_toggle = True
                elif event.code == e.BTN_EAST:
                    self.deadman = not self.deadman
                elif event.code == e.BTN_WEST:
                    p.episode = "start"
                elif event.code == e.BTN_NORTH:
                    p.episode = "save"
                elif event.code == e.BTN_SELECT:
                    p.episode = "discard"
                elif event.code == e.BTN_MODE:
                    p.estop = True
            elif event.value == 0:
                self.held.discard(event.code)

    def take(self) -> TeleopInput:
        e, a = self.e, self.axes
        out, self._pending = self._pending, TeleopInput()
        trig = (a.get(e.ABS_RZ, -1.0) + 1) / 2 - (a.get(e.ABS_Z, -1.0) + 1) / 2  # triggers rest at -1
        out.linear = np.array([-deadzone(a.get(e.ABS_Y, 0.0)), -deadzone(a.get(e.ABS_X, 0.0)), deadzone(trig)])
        roll = float(e.BTN_TR in self.held) - float(e.BTN_TL in self.held)
        out.angular = np.array([roll, -deadzone(a.get(e.ABS_RY, 0.0)), -deadzone(a.get(e.ABS_RX, 0.0))])
        out.deadman = self.deadman
        return out


class GamepadDevice:
    name = "gamepad"

    def __init__(self, path: str = ""):
        ecodes = _ecodes()
        import evdev

        candidates = [path] if path else sorted(str(p) for p in Path("/dev/input").glob("event*"))
        found = []
        for candidate in candidates:
            try:
                dev = evdev.InputDevice(candidate)
            except OSError:
                continue
            caps = dev.capabilities()
            if ecodes.BTN_SOUTH in caps.get(ecodes.EV_KEY, []):
                self.dev = dev
                break
            found.append(f"{candidate} ({dev.name})")
            dev.close()
        else:
            where = f"{path}" if path else "/dev/input/event*"
            raise UserError(f"no gamepad found at {where} (input devices: {', '.join(found) or 'none'}); "
                            "plug one in or pass device_path")
        abs_info = {code: (info.min, info.max) for code, info in self.dev.capabilities().get(ecodes.EV_ABS, [])}
        self.mapping = GamepadMapping(abs_info)

    def poll(self) -> TeleopInput:
        try:
            while (event := self.dev.read_one()) is not None:
                self.mapping.feed(event)
        except OSError as err:
            raise UserError(f"gamepad {self.dev.path} disconnected ({err.strerror})") from None
        return self.mapping.take()

    def close(self) -> None:
        self.dev.close()
