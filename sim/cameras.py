"""Rendering the profile's cameras (MuJoCo's OpenGL renderer, headless with MUJOCO_GL=egl).

``CameraRig`` renders from a state snapshot into its own ``MjData``, so it can run on a thread
other than the physics (the GL context belongs to the thread that first renders; create, use and
close a rig on one thread). Intrinsics follow the MJCF ``fovy`` (ideal pinhole, no distortion).
Each camera renders at its profile resolution: the in-process gym env and the twin node use this
rig alike, so a policy sees the same pixels on both paths.

Cost on a CPU rasteriser (Mesa llvmpipe), measured in docs/sim.md: the scene holds simplified
visual meshes in levels of detail (``scene.RENDER_MESH_CELL``, ``scene.RENDER_LEVELS``) and each
frame draws a geom at the coarsest level whose grid stays within ``LOD_PIXELS`` pixels where the
geom is; mesh geoms wholly outside the camera's view are not drawn; the floor is drawn last
(``scene.BACKGROUND_GROUP``: the pixels the table hides are never textured); one GL context serves
every camera, and the read-back goes into a reused buffer.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robot_stack.camera_info import Intrinsics
from robot_stack.profile import CameraSpec, RobotProfile
from robot_stack.sim.scene import BACKGROUND_GROUP, RENDER_MESH_CELL, render_levels

MONO_WEIGHTS = np.array([0.299, 0.587, 0.114])
LOD_PIXELS = 3.0
"""A coarser level of detail is drawn where its grid cell spans at most this many pixels (front
camera, SO-101: 7.7 ms per frame against 9.1 ms at 2 px, a mean pixel difference to the original
meshes of 0.25 grey levels against 0.12)."""


def camera_intrinsics(model: mujoco.MjModel, cam_id: int, spec: CameraSpec) -> Intrinsics:
    return Intrinsics.from_fovy(spec.width, spec.height, float(model.cam_fovy[cam_id]), camera_name=spec.name)


class CameraRig:
    def __init__(self, model: mujoco.MjModel, profile: RobotProfile, camera_ids: dict[str, int], names: list[str] | None = None):
        self.model = model
        self.names = list(camera_ids) if names is None else list(names)
        self.specs = {n: profile.camera(n) for n in self.names}
        self.ids = {n: camera_ids[n] for n in self.names}
        self.intrinsics = {n: camera_intrinsics(model, self.ids[n], self.specs[n]) for n in self.names}
        self.data = mujoco.MjData(model)
        self._gl = None
        self._context: mujoco.MjrContext | None = None
        self._scene = mujoco.MjvScene(model, maxgeom=10000)  # as mujoco.Renderer
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._perturb = mujoco.MjvPerturb()
        # first pass: every geom group a default view shows but the background; second pass: the background
        self._option = mujoco.MjvOption()
        self._background = None
        if self._option.geomgroup[BACKGROUND_GROUP]:
            self._background = mujoco.MjvOption()
            self._background.geomgroup[:] = 0
            self._background.geomgroup[BACKGROUND_GROUP] = 1
            self._option.geomgroup[BACKGROUND_GROUP] = 0
        pixels = max((s.width * s.height for s in self.specs.values()), default=0)
        self._readback = np.empty(3 * pixels, np.uint8)
        self._levels = {2 * k: [2 * i for i in v] for k, v in render_levels(model).items()}  # as MjvGeom.dataid

    def _make_current(self) -> mujoco.MjrContext:
        if self._context is None:
            width = max((s.width for s in self.specs.values()), default=1)
            height = max((s.height for s in self.specs.values()), default=1)
            vis = self.model.vis.global_
            if width > vis.offwidth or height > vis.offheight:
                raise ValueError(f"camera images up to {width}x{height} need an offscreen buffer that large "
                                 f"(the model has {vis.offwidth}x{vis.offheight}: build it with this profile)")
            self._gl = mujoco.GLContext(width, height)
            self._gl.make_current()
            self._context = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_100)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        else:
            self._gl.make_current()
        return self._context

    def load(self, snapshot: dict[str, np.ndarray] | mujoco.MjData) -> None:
        """Pose the rig's copy of the scene from ``SimRobot.snapshot()`` (or an ``MjData``): the
        kinematics of its ``qpos``. (After ``mj_step`` an ``MjData``'s poses are those of the state
        before the step; a rig always draws the state its joint readings report.)"""
        d = self.data
        if isinstance(snapshot, mujoco.MjData):
            snapshot = {"qpos": snapshot.qpos, "mocap_pos": snapshot.mocap_pos, "mocap_quat": snapshot.mocap_quat}
        d.qpos[:] = snapshot["qpos"]
        d.mocap_pos[:] = snapshot["mocap_pos"]
        d.mocap_quat[:] = snapshot["mocap_quat"]
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_camlight(self.model, d)

    def update_scene(self, name: str, data: mujoco.MjData | None = None) -> None:
        """Fill the scene to draw for camera ``name`` in the state of ``data`` (default: the loaded snapshot)."""
        if data is not None:
            self.load(data)
        data = self.data
        self._camera.fixedcamid = self.ids[name]
        mujoco.mjv_updateScene(self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL,
                               self._scene)
        if self._background is not None:
            mujoco.mjv_addGeoms(self.model, data, self._background, self._perturb, mujoco.mjtCatBit.mjCAT_ALL,
                                self._scene)
        self._select_meshes(name, data)

    def _draw(self, name: str, data: mujoco.MjData | None) -> np.ndarray:
        """Render camera ``name``; its pixels as read back: (H, W, 3) RGB, bottom row first."""
        context = self._make_current()
        spec = self.specs[name]
        self.update_scene(name, data)
        rect = mujoco.MjrRect(0, 0, spec.width, spec.height)
        mujoco.mjr_render(rect, self._scene, context)
        pixels = self._readback[:3 * spec.width * spec.height].reshape(spec.height, spec.width, 3)
        mujoco.mjr_readPixels(pixels, None, rect, context)
        return pixels

    def _select_meshes(self, name: str, data: mujoco.MjData) -> None:
        """Per mesh geom of the scene: not drawn when its bounding sphere lies outside the view,
        else drawn at the coarsest level of detail whose cell spans <= ``LOD_PIXELS`` at its near side."""
        cam, spec = self.ids[name], self.specs[name]
        tan_y = math.tan(math.radians(self.model.cam_fovy[cam]) / 2)
        tan_x = tan_y * spec.width / spec.height
        # every model geom's centre in the camera frame (looking along -z), at once
        x, y, z = ((data.geom_xpos - data.cam_xpos[cam]) @ data.cam_xmat[cam].reshape(3, 3)).T
        radius = self.model.geom_rbound
        outside = ((z > radius) | ((np.abs(x) + tan_x * z) / math.hypot(1.0, tan_x) > radius)
                   | ((np.abs(y) + tan_y * z) / math.hypot(1.0, tan_y) > radius))
        pixels = np.maximum(-z - radius, 0.0) * (2 * tan_y / spec.height)  # metres per pixel, near side
        level = np.log2(np.maximum(LOD_PIXELS * pixels / RENDER_MESH_CELL, 1.0)).astype(int)
        mesh, geom_object = mujoco.mjtGeom.mjGEOM_MESH, mujoco.mjtObj.mjOBJ_GEOM
        for i in range(self._scene.ngeom):
            geom = self._scene.geoms[i]
            if geom.type != mesh or geom.objtype != geom_object:
                continue
            if outside[geom.objid]:
                geom.type = mujoco.mjtGeom.mjGEOM_NONE
                continue
            levels = self._levels.get(geom.dataid)
            if levels:
                geom.dataid = levels[min(level[geom.objid], len(levels) - 1)]

    def render_rgb(self, name: str, data: mujoco.MjData | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of camera ``name`` in ``data`` (default: the loaded snapshot), whatever
        its wire encoding (the gym observation); into ``out`` when given."""
        flipped = self._draw(name, data)[::-1]
        if out is None:
            return flipped.copy()
        np.copyto(out, flipped)
        return out

    def render(self, name: str, data: mujoco.MjData | None = None) -> np.ndarray:
        """The image in the camera's wire encoding: (H, W, 3) uint8 RGB or BGR, or (H, W) for mono8."""
        encoding = self.specs[name].encoding
        flipped = self._draw(name, data)[::-1]
        if encoding == "bgr8":
            return np.ascontiguousarray(flipped[..., ::-1])
        if encoding == "mono8":
            return (flipped @ MONO_WEIGHTS).astype(np.uint8)
        return flipped.copy()

    def close(self) -> None:
        if self._context is not None:
            self._gl.make_current()
            self._context.free()
            self._context = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None
