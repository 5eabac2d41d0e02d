"""The emulated robot cell: one MuJoCo scene, stepped in real time, reachable only the way hardware is.

``Cell`` builds the twin's scene (``SimRobot``: arm, table, task objects, cameras) and changes it by
the cell file's gap, then serves it through hardware interfaces only:

* the arm on a servo bus on a pseudo-terminal (``drivers.servo.emulator.ServoBus`` in front of
  ``CellArm``), read by ``servo_arm_node`` like a USB bus adapter;
* the cameras as MJPEG over HTTP on 127.0.0.1 (``CellCameras``: rendered and served by a process of
  their own), read by ``opencv_camera_node`` like IP cameras;
* a leader arm on a second bus (``ServoBusEmulator``), for teleoperation;
* the harness channel (``HarnessServer``, HTTP/JSON under ``/harness/``) for the lab's person only.

Physics steps at the model's timestep on the wall clock (``RealTimeClock``); nothing here is a ROS node.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import mujoco
import numpy as np

from robot_stack.arm.kinematics import Kinematics
from robot_stack.drivers.servo.calibration import load_calibration
from robot_stack.drivers.servo.emulator import Faults, RealTimeClock, ServoBus, ServoBusEmulator
from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.sim.cell.arm import CellArm
from robot_stack.sim.cell.cameras import CellCameras
from robot_stack.sim.cell.config import CellConfig
from robot_stack.sim.cell.harness import HarnessServer
from robot_stack.sim.cell.scene import build_cell_scene
from robot_stack.sim.scene import TABLE_HEIGHT

LOOP_PERIOD = 0.004
"""Seconds between physics wake-ups (the steps due are taken at once): the servo registers are at most
this old when the driver reads them, and the loop wakes 250 times a second instead of 500."""
LEADER_FRICTION_NM = 0.3
"""Joint friction of the emulated leader arm (N·m)."""
PARKED_Z = -TABLE_HEIGHT + 0.05
"""Height of objects taken off the table (just above the floor)."""


class Cell:
    def __init__(self, config: CellConfig, *, cameras: str = "all", seed: int = 0):
        self.config = config
        scene = build_cell_scene(config, cameras, seed)
        self.gap, self.profile, self.task, self.sim = scene.gap, scene.profile, scene.task, scene.sim
        gap, profile = self.gap, self.profile
        self.model, self.data = self.sim.model, self.sim.data
        self.arm = CellArm(self.sim, gap.arm, scene.arm_rng)
        self.kinematics = Kinematics(profile)
        hw = profile.hardware
        if not hw.calibration:
            raise UserError(f"robot {profile.name!r} has no hardware.calibration: the cell's servos need one")
        calibration = load_calibration(profile.resolve(hw.calibration), profile)
        self.bus = ServoBus(profile, calibration, self.arm, Faults(latency_ms=gap.arm.bus_latency_ms))
        self.leader: ServoBusEmulator | None = None
        if config.leader:
            lp = load_profile(config.leader)
            if not lp.hardware.calibration:
                raise UserError(f"leader {lp.name!r} has no hardware.calibration")
            self.leader = ServoBusEmulator(lp, load_calibration(lp.resolve(lp.hardware.calibration), lp))
            arm = self.leader.arm  # back-drivable and light: it stays where the hand leaves it
            arm.model.dof_frictionloss[arm.dadr] = LEADER_FRICTION_NM
            arm.model.opt.gravity[:] = 0.0
        self.cameras = CellCameras(config, cameras, seed, profile)
        self.clock = RealTimeClock(self.model.opt.timestep)
        self.seed = seed
        self.next_seed = seed
        self.episode_start = 0.0
        self.episodes = 0
        self.harness: HarnessServer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._physics, name="cell-physics", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------------
    def open(self, *, link: str | None = None, leader_link: str | None = None, host: str = "127.0.0.1",
             camera_port: int = 0, harness_port: int = 0) -> dict[str, Any]:
        """Start serving; returns where: ``arm`` (pty), ``leader``, ``cameras`` (name -> URL), ``harness`` (URL)."""
        try:
            self.harness = HarnessServer({"GET /harness/state": lambda _: self.state(),
                                          "POST /harness/clear": lambda _: self.clear(),
                                          "POST /harness/reset": lambda body: self.reset(body.get("seed")),
                                          "POST /harness/leader": lambda body: self.pose_leader(body["position"])},
                                         host, harness_port)
        except OSError as err:
            raise UserError(f"cannot serve on {host} ({err.strerror}): choose other ports") from None
        urls = self.cameras.start(host, camera_port)
        arm_port = self.bus.open(link)
        leader_port = self.leader.open(leader_link) if self.leader else ""
        self.clock.restart()
        self.episode_start = 0.0
        self.harness.start()
        self._thread.start()
        return {"arm": link or arm_port, "leader": leader_link or leader_port, "cameras": urls,
                "harness": self.harness.url}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for part in (self.harness, self.cameras, self.bus, self.leader):
            if part is not None:
                part.close()

    # -- physics ------------------------------------------------------------------------------------
    def _physics(self) -> None:
        m, d, clock = self.model, self.data, self.clock
        while not self._stop.is_set():
            names: list[str] = []
            with self.bus.lock:
                steps = clock.due()
                for k in range(steps):
                    self.arm.before_step(clock.sim_time + k * clock.dt)
                    mujoco.mj_step(m, d)
                if steps:
                    clock.advance(steps)
                    self.bus.update_present()
                    names = self.cameras.due(clock.sim_time)
                    snapshot = self.sim.snapshot() if names else None
            if names:
                self.cameras.submit(time.time(), snapshot, names)
            time.sleep(LOOP_PERIOD)

    # -- the harness channel ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Ground truth, as the lab's person sees it."""
        with self.bus.lock:
            d = self.data
            state = {"time": time.time(), "sim_time": self.clock.sim_time, "episode": self.episodes,
                     "episode_time": self.clock.sim_time - self.episode_start, "seed": self.seed,
                     "success": bool(self.task.success(d)), "progress": float(self.task.progress(d)),
                     "objects": self.task.object_poses(d).tolist(), "objects_seen": self._objects_seen().tolist(),
                     "joints": self.arm.true_positions().tolist(),
                     "realtime_factor": round(self.clock.realtime_factor, 4), "overruns": self.clock.overruns}
        state["cameras"] = self.cameras.stats()
        if self.leader is not None:
            with self.leader.lock:
                state["leader"] = self.leader.arm.joint_state()[0].tolist()
        return state

    def _objects_seen(self) -> np.ndarray:
        """Object poses as an operator who sees gripper and object places them for the arm: shifted by the
        arm's own end-effector error (forward kinematics of the readings minus that of the true joints), so
        that bringing the measured end effector to them brings the real gripper to the objects."""
        n = len(self.profile.joints)
        true = self.arm.true_positions()[:n]
        believed, _ = self.kinematics.fk(true - self.arm.offset[:n])
        actual, _ = self.kinematics.fk(true)
        poses = self.task.object_poses(self.data)
        poses[:, :3] += believed - actual
        return poses

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """Put the task's objects somewhere new and start an episode; the arm stays where it is. Without a
        seed, the placements follow the cell's ``seed``, then ``seed + 1``, ..."""
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        with self.bus.lock:
            self.seed = self.next_seed if seed is None else seed
            self.next_seed = self.seed + 1
            self.task.reset(self.model, self.data, np.random.default_rng(self.seed))
            mujoco.mj_forward(self.model, self.data)
            self.task.start(self.data)
            self.episode_start = self.clock.sim_time
            self.episodes += 1
        return self.state()

    def clear(self) -> dict[str, Any]:
        """Take the task's objects off the table (onto the floor behind the robot), e.g. out of the gripper
        before the arm is homed."""
        with self.bus.lock:
            poses = self.task.object_poses(self.data)
            for i, row in enumerate(poses):
                row[:3] = [-1.0, 0.3 * i, PARKED_Z]
            self.task.set_object_poses(self.data, poses)
            mujoco.mj_forward(self.model, self.data)
        return self.state()

    def pose_leader(self, position: list[float]) -> dict[str, Any]:
        """Move the leader arm by hand to ``position`` (rad, profile order)."""
        if self.leader is None:
            raise ValueError("this cell has no leader arm")
        arm = self.leader.arm
        q = np.asarray(position, dtype=float)
        if q.shape != (len(arm.qadr),) or not np.all(np.isfinite(q)):
            raise ValueError(f"position: expected {len(arm.qadr)} finite joint angles")
        with self.leader.lock:
            arm.data.qpos[arm.qadr] = q
            arm.data.qvel[arm.dadr] = 0.0
            mujoco.mj_forward(arm.model, arm.data)
        return self.state()
