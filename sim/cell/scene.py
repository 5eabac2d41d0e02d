"""The cell's scene: the twin's scene (``SimRobot``) changed by the gap, built the same way in every process
that needs it (physics in the cell, rendering in its camera process)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile, load_profile
from robot_stack.sim.cell.config import CellConfig, Gap, SceneGap
from robot_stack.sim.robot import SimRobot
from robot_stack.sim.tasks import Randomization, Task, TaskConfig, load_task_config, make_task


class _DressedTask:
    """The task, with the cell's table and lights added when the scene is built."""

    def __init__(self, task: Task, scene: SceneGap):
        self._task, self._scene = task, scene

    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None:
        self._task.build(spec, profile)
        table = spec.geom("table")
        table.rgba = [*self._scene.table_rgb, 1.0]
        if self._scene.table_texture > 0:
            dark = [c * (1 - 0.35 * self._scene.table_texture) for c in self._scene.table_rgb]
            spec.add_texture(name="cell_table", type=mujoco.mjtTexture.mjTEXTURE_2D,
                             builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, mark=mujoco.mjtMark.mjMARK_RANDOM,
                             random=0.2 * self._scene.table_texture, width=512, height=512,
                             rgb1=list(self._scene.table_rgb), rgb2=dark, markrgb=dark)
            spec.add_material(name="cell_table", textures=["", "cell_table"], texrepeat=[3, 3], texuniform=True)
            table.material = "cell_table"
            table.rgba = [1.0, 1.0, 1.0, 1.0]
        for light in spec.lights:
            light.diffuse = [min(1.0, c * self._scene.light_scale) for c in light.diffuse]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def cell_task(config: CellConfig, gap: Gap) -> TaskConfig:
    """The task with the gap's objects, placed at random per episode but otherwise one fixed reality
    (no per-episode domain randomisation: mass, friction, cameras and lights are what the gap says)."""
    task = load_task_config(config.task)
    o, g = task.object, gap.object
    obj = dataclasses.replace(o, half_size=tuple(h * g.size_scale for h in o.half_size), mass=o.mass * g.mass_scale,
                              friction=o.friction * g.friction_scale)
    r = task.randomization
    fixed = Randomization(object_x=r.object_x, object_y=r.object_y, object_yaw=r.object_yaw, target_x=r.target_x,
                          target_y=r.target_y, target_z=r.target_z, target_yaw=r.target_yaw,
                          min_separation=r.min_separation)
    return dataclasses.replace(task, object=obj, randomization=fixed)


def cell_profile(config: CellConfig, cameras: str = "all") -> RobotProfile:
    """The robot profile with the cell's stream settings, restricted to ``cameras`` (comma list, all, none)."""
    profile = load_profile(config.robot)
    if profile.hardware.backend not in ("dynamixel", "feetech"):
        raise UserError(f"robot {profile.name!r}: hardware.backend {profile.hardware.backend!r} is not a servo bus "
                        "(the cell emulates Dynamixel and Feetech arms)")
    unknown = sorted(set(config.streams) - set(profile.camera_names))
    if unknown:
        raise UserError(f"cell {config.name!r}: streams: {unknown[0]!r} is not a camera of robot {profile.name!r} "
                        f"(cameras: {', '.join(profile.camera_names) or 'none'})")
    specs = []
    for cam in profile.cameras:
        s = config.streams.get(cam.name)
        changes = {k: v for k, v in (("width", s.width), ("height", s.height), ("fps", s.fps)) if v} if s else {}
        specs.append(dataclasses.replace(cam, **changes))
    profile = dataclasses.replace(profile, cameras=tuple(specs))
    text = cameras.strip().lower()
    if text == "none":
        return profile.with_cameras([])
    if text in ("", "all"):
        return profile
    return profile.with_cameras([c.strip() for c in cameras.split(",") if c.strip()])


def _move_cameras(model: mujoco.MjModel, ids: list[int], position: float, rotation: float, rng: np.random.Generator) -> None:
    """Mount errors: each camera moved ``position`` m along a random direction and turned ``rotation`` rad."""
    for cam in ids:
        direction = rng.normal(size=3)
        model.cam_pos[cam] += position * direction / np.linalg.norm(direction)
        axis = rng.normal(size=3)
        dq, out = np.zeros(4), np.zeros(4)
        mujoco.mju_axisAngle2Quat(dq, axis / np.linalg.norm(axis), rotation)
        mujoco.mju_mulQuat(out, model.cam_quat[cam].copy(), dq)
        model.cam_quat[cam] = out


@dataclass
class CellScene:
    config: CellConfig
    gap: Gap
    profile: RobotProfile
    """The robot profile with the cell's streams, restricted to the cameras served."""
    task: Task
    sim: SimRobot
    arm_rng: np.random.Generator
    """Draws the arm's fixed realisation (joint offsets) and its noise."""
    optics_rng: np.random.Generator
    """Draws the lenses and the cameras' noise, drops and jitter."""


def build_cell_scene(config: CellConfig, cameras: str = "all", seed: int = 0) -> CellScene:
    """The scene, its camera mounts moved by the gap; ``gap.seed`` fixes every random effect, so every
    process that builds it from the same file gets the same cell."""
    gap = config.effective_gap
    poses, arm, optics = (np.random.default_rng(s) for s in np.random.SeedSequence(gap.seed).spawn(3))
    profile = cell_profile(config, cameras)
    task = make_task(cell_task(config, gap), profile)
    sim = SimRobot(profile, _DressedTask(task, gap.scene), seed=seed)  # type: ignore[arg-type]
    _move_cameras(sim.model, list(sim.camera_ids.values()), gap.camera.position_cm / 100,
                  np.radians(gap.camera.rotation_deg), poses)
    return CellScene(config, gap, profile, task, sim, arm, optics)
