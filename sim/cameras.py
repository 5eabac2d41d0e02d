"""Rendering the profile's cameras (mujoco.Renderer, headless with MUJOCO_GL=egl).

``CameraRig`` renders from a state snapshot into its own ``MjData``, so it can run on a thread
other than the physics (the GL context belongs to the thread that first renders; create, use and
close a rig on one thread). Intrinsics follow the MJCF ``fovy`` (ideal pinhole, no distortion).
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_stack.camera_info import Intrinsics
from robot_stack.profile import CameraSpec, RobotProfile


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
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def _renderer(self, spec: CameraSpec) -> mujoco.Renderer:
        key = (spec.height, spec.width)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height=spec.height, width=spec.width)
        return self._renderers[key]

    def load(self, snapshot: dict[str, np.ndarray]) -> None:
        """Pose the rig's copy of the scene from ``SimRobot.snapshot()``."""
        d = self.data
        d.qpos[:] = snapshot["qpos"]
        d.mocap_pos[:] = snapshot["mocap_pos"]
        d.mocap_quat[:] = snapshot["mocap_quat"]
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_camlight(self.model, d)

    def render(self, name: str, data: mujoco.MjData | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB (or (H, W) for mono8) of camera ``name`` in ``data`` (default: the loaded snapshot)."""
        spec = self.specs[name]
        renderer = self._renderer(spec)
        renderer.update_scene(self.data if data is None else data, camera=self.ids[name])
        rgb = renderer.render()
        if spec.encoding == "bgr8":
            return np.ascontiguousarray(rgb[..., ::-1])
        if spec.encoding == "mono8":
            return (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        return rgb

    def render_rgb(self, name: str, data: mujoco.MjData | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB whatever the camera's wire encoding (the gym observation)."""
        spec = self.specs[name]
        renderer = self._renderer(spec)
        renderer.update_scene(self.data if data is None else data, camera=self.ids[name])
        return renderer.render()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
