"""Keyboard teleop in a terminal (works over SSH: no X11/Wayland, just stdin in raw mode).

Terminals report key presses (with auto-repeat) but never releases, so a motion key moves the
arm for ``hold_s`` after its last (repeated) press. Keys::

    w/s  +x/-x (forward/back)     a/d  +y/-y (left/right)     r/f  +z/-z (up/down)
    q/e  yaw left/right           t/g  pitch                  z/c  roll
    space  toggle gripper         i  take / give back control (deadman)
    n  start episode   y  save episode   x  discard episode   u  re-record (discard + start)
    +/-  speed up/down            backspace  E-STOP
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty

import numpy as np

from robot_stack.drivers.teleop.device import TeleopInput
from robot_stack.errors import UserError

MOTION = {
    "w": (0, 0, +1), "s": (0, 0, -1), "a": (0, 1, +1), "d": (0, 1, -1), "r": (0, 2, +1), "f": (0, 2, -1),
    "z": (1, 0, +1), "c": (1, 0, -1), "t": (1, 1, +1), "g": (1, 1, -1), "q": (1, 2, +1), "e": (1, 2, -1),
}
EPISODE = {"n": "start", "y": "save", "x": "discard", "u": "rerecord"}
HELP = "w/s a/d r/f move  q/e t/g z/c rotate  space gripper  i control  n/y/x/u episode  +/- speed  backspace E-STOP"


class KeyboardDevice:
    name = "keyboard"

    def __init__(self, path: str = "", hold_s: float = 0.6, clock=time.monotonic):
        """Read keys from the terminal ``path`` (default: this process's controlling terminal)."""
        try:
            self.fd = os.open(path or "/dev/tty", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            raise UserError("keyboard teleop needs a terminal: run it in one (ssh -t works) or pass device_path") from None
        if not os.isatty(self.fd):
            os.close(self.fd)
            raise UserError(f"{path}: not a terminal")
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self.hold_s, self.clock = hold_s, clock
        self._axis_until = np.zeros((2, 3))  # time until which each axis is pressed
        self._axis_sign = np.zeros((2, 3))
        self.deadman = False

    def poll(self) -> TeleopInput:
        out = TeleopInput()
        now = self.clock()
        for key in self._read_keys():
            if key in MOTION:
                kind, axis, sign = MOTION[key]
                self._axis_until[kind, axis] = now + self.hold_s
                self._axis_sign[kind, axis] = sign
            elif key == " ":
                out.gripper_toggle = True
            elif key == "i":
                self.deadman = not self.deadman
            elif key in EPISODE:
                out.episode = EPISODE[key]
            elif key in "+=":
                out.speed_change += 1
            elif key in "-_":
                out.speed_change -= 1
            elif key in ("\x7f", "\b"):
                out.estop = True
        active = self._axis_until > now
        motion = np.where(active, self._axis_sign, 0.0)
        out.linear, out.angular = motion[0].copy(), motion[1].copy()
        out.deadman = self.deadman
        return out

    def _read_keys(self) -> str:
        chunks = []
        while select.select([self.fd], [], [], 0)[0]:
            try:
                data = os.read(self.fd, 64)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data.decode(errors="ignore"))
        return "".join(chunks)

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        os.close(self.fd)
