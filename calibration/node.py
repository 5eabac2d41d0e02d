"""Arm joint calibration as a ROS node: each step is a ``std_srvs/Trigger`` service (no blocking prompts).

Services (relative names, so a launch namespace applies), in the order a user goes through them:

=================================  ===========================================================
``calibration/release_torque``     torque off on every servo (support the arm first)
``calibration/record_zero``        the arm is in the zero pose: record raw ticks as offsets
``calibration/record_reference``   the arm is in the reference pose (``reference_pose``)
``calibration/record_moved``       every joint was moved a little in its positive direction
``calibration/start_sweep``        start tracking tick extremes (move every joint end to end)
``calibration/stop_sweep``         stop tracking
``calibration/save``               build the file (``directions``, ``ranges``) and write ``output``
=================================  ===========================================================

Each reply's ``message`` says what was recorded, or what is missing, on one line. Parameters:
``robot``, ``port`` (default: profile), ``output`` (default: the profile's ``hardware.calibration``),
``directions`` (reference | moved | profile), ``ranges`` (profile | moved), ``reference_pose``
(joint angles, rad; default: the profile's ``sim.home``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node

from robot_stack.calibration.arm import ArmCalibrator, RawBus, check_limits, default_output, profile_calibration
from robot_stack.drivers.servo.calibration import save_calibration
from robot_stack.errors import UserError
from robot_stack.node import run_node
from robot_stack.node_options import read_options
from robot_stack.typed_config import field
from robot_stack.profile import load_profile

NODE_NAME = "arm_calibration"
SERVICES = ("release_torque", "record_zero", "record_reference", "record_moved", "start_sweep", "stop_sweep", "save")


@dataclass(frozen=True)
class ArmCalibrationOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    port: str = field("serial port (default: the profile's hardware.port)", default="")
    output: str = field("calibration file to write (default: the profile's hardware.calibration)", default="")
    directions: str = field("reference | moved | profile", default="reference")
    ranges: str = field("profile | moved", default="profile")
    reference_pose: list[float] = field("reference pose joint angles, rad (arm joints then gripper; "
                                        "empty: the profile's sim.home)", default_factory=list)


class ArmCalibrationNode(Node):
    def __init__(self, defaults: ArmCalibrationOptions | None = None, **kwargs):
        """``defaults``: option values that parameters may still override (the command line's)."""
        super().__init__(NODE_NAME, **kwargs)
        from std_srvs.srv import Trigger

        options = read_options(self, ArmCalibrationOptions, defaults)
        self.profile = load_profile(options.robot)
        port = options.port
        self.output = options.output or str(default_output(self.profile))
        self.directions, self.ranges = options.directions, options.ranges
        home = list(self.profile.sim.home) if self.profile.sim and self.profile.sim.home else []
        reference = list(options.reference_pose) or home or [0.0] * len(self.profile.all_joint_names)
        self.reference_pose = np.array(reference, dtype=float)
        if self.directions not in ("reference", "moved", "profile") or self.ranges not in ("profile", "moved"):
            raise UserError(f"directions must be reference|moved|profile and ranges profile|moved, "
                            f"got {self.directions!r} / {self.ranges!r}")
        self.bus = RawBus(self.profile, port or None)
        self.cal = ArmCalibrator(self.profile, self.bus.resolutions)
        self.sweeping = False
        self.zero_ticks: np.ndarray | None = None
        for name in SERVICES:
            self.create_service(Trigger, f"calibration/{name}", self._handler(getattr(self, f"_{name}")))
        self.timer = self.create_timer(0.05, self._sample)
        self.get_logger().info(f"{self.profile.name}: calibration services ready on {self.bus.port_name} "
                               f"(calibration/record_zero, ...); writes {self.output}")

    def _handler(self, step):
        def call(_request, response):
            try:
                response.message = step()
                response.success = True
            except UserError as err:
                response.success, response.message = False, str(err)
            self.get_logger().info(response.message)
            return response

        return call

    def _sample(self) -> None:
        if self.sweeping:
            self.cal.observe(self.bus.read_ticks())

    def _release_torque(self) -> str:
        self.bus.release()
        return "torque off on every servo: the arm can be moved by hand"

    def _record_zero(self) -> str:
        self.zero_ticks = self.bus.sample()
        return self.cal.record_zero(self.zero_ticks)

    def _record_reference(self) -> str:
        return self.cal.record_reference(self.bus.sample(), self.reference_pose)

    def _record_moved(self) -> str:
        if self.zero_ticks is None:
            raise UserError("record the zero pose first, then move each joint a little in its positive direction")
        return self.cal.record_moved(self.zero_ticks, self.bus.sample())

    def _start_sweep(self) -> str:
        self.cal.reset_range()
        self.sweeping = True
        return "sweep started: move every joint through its full range, then call calibration/stop_sweep"

    def _stop_sweep(self) -> str:
        self.sweeping = False
        if self.cal.seen_min is None:
            return "sweep stopped (nothing recorded)"
        return "sweep stopped: " + ", ".join(f"{n}={lo}..{hi}" for n, lo, hi in
                                             zip(self.profile.all_joint_names, self.cal.seen_min, self.cal.seen_max))

    def _save(self) -> str:
        fallback = profile_calibration(self.profile) if self.directions != "profile" else None
        if self.directions == "profile":
            fallback = profile_calibration(self.profile)
            if fallback is None:
                raise UserError(f"robot {self.profile.name!r} has no calibration file to take directions from")
            directions = [fallback.joints[n].direction for n in self.profile.all_joint_names]
        else:
            directions = self.cal.directions(self.directions, fallback)
        result = self.cal.build(directions, self.ranges)
        save_calibration(result, self.output)
        warnings = check_limits(self.profile, result, self.bus.resolutions)
        return f"saved {self.output}" + (f" (warning: {warnings[0]})" if warnings else "")

    def close(self) -> None:
        self.bus.close()


def make_node(**kwargs):
    return ArmCalibrationNode(**kwargs)


def main() -> None:
    run_node(make_node)


if __name__ == "__main__":
    main()
