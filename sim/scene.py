"""Scene building: a profile's robot MJCF composed with MjSpec into a task scene.

``build_scene(profile, task)`` loads the robot MJCF (any path, ``pkg://`` path or a
``menagerie:<robot>/<file>.xml`` name resolved from a local ``mujoco_menagerie`` checkout) and adds a
table (top at z = 0, the robot base sits on it), a floor, lights, the task's objects and every
profile camera that the MJCF lacks: a fixed camera looking at the workspace, or, for cameras whose
name contains ``wrist``/``hand``, a camera mounted just behind the end effector looking along the
approach direction. The robot base frame is the world frame.

For the cameras, visual-only meshes are drawn from simplified copies in levels of detail
(``simplify_visual_meshes``) and the floor from a coarse grid, last: rendering settings only,
the physics is bit for bit that of the MJCF (tests/test_sim_cameras.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import mujoco
import numpy as np

from robot_stack.errors import UserError
from robot_stack.profile import CameraSpec, RobotProfile

TABLE_HEIGHT = 0.75
FRONT_FOVY = 45.0
WRIST_FOVY = 70.0
GRASP_PADS = ("fixed_jaw_pad", "moving_jaw_pad")
"""Fingertip pads the SO-101 MJCF ships with collisions disabled (bit 2); the twin enables them so
grasped objects are held by flat faces instead of two mesh points."""
MENAGERIE_ENV = "MUJOCO_MENAGERIE_PATH"
MENAGERIE_CACHE = "~/.cache/mujoco_menagerie"
OFFSCREEN_SAMPLES = 0
"""Offscreen multisampling. 0 (no anti-aliasing) renders ~2x faster on CPU (llvmpipe) and looks
like a raw sensor image; raise it for nicer pictures on a GPU."""
RENDER_MESH_CELL = 0.001
"""Grid (m) on which visual-only meshes are simplified for drawing (vertex clustering). CAD exports
carry ~20k triangles per part (the SO-101's visual meshes: 400k triangles in view), which cost a
CPU rasteriser (llvmpipe) most of each frame; 1 mm is about one pixel of the front camera at the
workspace. Collision meshes, and so the physics, are untouched."""
SIMPLIFY_MIN_FACES = 2000
SIMPLIFY_MAX_FACES = 2_000_000
"""Meshes with fewer triangles, or more (beyond ``cluster_mesh``'s int64 keys), are drawn as they are."""
RENDER_LEVELS = 3
"""Levels of detail of each simplified mesh, on grids of 1, 2 and 4 x the cell: ``CameraRig`` draws a
geom with the coarsest level whose cell covers at most ``cameras.LOD_PIXELS`` pixels where the geom is."""
FLOOR_GRID = 0.5
"""Spacing (m) of the floor plane's rendering grid (its size[2]; plane collisions ignore it). MuJoCo
tessellates a plane into grid squares for lighting: 0.05 m made the 8 m floor 51k triangles,
1.5 ms of every frame on llvmpipe, for a mean pixel difference of 0.007 grey levels."""
BACKGROUND_GROUP = 1
"""Geom group of the floor. ``CameraRig`` draws this group after every other geom, so the
rasteriser skips the floor pixels that the table hides instead of texturing them first."""


class SceneTask(Protocol):
    def build(self, spec: mujoco.MjSpec, profile: RobotProfile) -> None: ...


@dataclass
class Scene:
    model: mujoco.MjModel
    path: Path
    """The robot MJCF the scene was built from."""
    cameras: dict[str, int]
    """Profile camera name -> MuJoCo camera id."""


def resolve_mjcf(profile: RobotProfile) -> Path:
    """The robot MJCF file named by ``profile.sim.mjcf``.

    ``menagerie:<robot>/<file>.xml`` names a model of mujoco_menagerie, looked up (only when used) in
    ``$MUJOCO_MENAGERIE_PATH`` or ``~/.cache/mujoco_menagerie`` (git clones of
    google-deepmind/mujoco_menagerie); nothing is downloaded here: the error says how to fetch it.
    """
    if profile.sim is None:
        raise UserError(f"robot profile {profile.name!r} has no 'sim' section (needed by the twin)")
    name = profile.sim.mjcf
    if name.startswith("menagerie:"):
        rel = name[len("menagerie:"):]
        roots = [Path(r).expanduser() for r in (os.environ.get(MENAGERIE_ENV, ""), MENAGERIE_CACHE) if r]
        found = [root / rel for root in roots if (root / rel).is_file()]
        if not found:
            raise UserError(
                f"sim.mjcf {name!r}: not found in {' or '.join(map(str, roots))}; fetch the models once with "
                f"'git clone --depth 1 https://github.com/google-deepmind/mujoco_menagerie {MENAGERIE_CACHE}' "
                f"(or point {MENAGERIE_ENV} at a clone)")
        path = found[0]
    else:
        path = profile.resolve(name)
    if not path.is_file():
        raise UserError(f"{profile.source or profile.name}: sim.mjcf: {path} not found")
    return path


def load_robot_spec(profile: RobotProfile) -> tuple[mujoco.MjSpec, Path]:
    path = resolve_mjcf(profile)
    try:
        spec = mujoco.MjSpec.from_file(str(path))
        spec.compile()
    except ValueError as err:
        raise UserError(f"{path}: MJCF does not compile: {_first_line(err)}") from None
    return spec, path


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def look_at_quat(position: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """MuJoCo camera quaternion (wxyz) at ``position`` looking at ``target`` (camera looks along -z)."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    rot = np.column_stack([right, cam_up, -forward])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rot.ravel())
    return quat


def workspace_box(profile: RobotProfile) -> tuple[np.ndarray, np.ndarray]:
    ws = profile.workspace
    if ws is None:
        return np.array([0.1, -0.3, 0.0]), np.array([0.5, 0.3, 0.4])
    return np.array(ws.lower, float), np.array(ws.upper, float)


def _add_environment(spec: mujoco.MjSpec, profile: RobotProfile) -> None:
    lower, upper = workspace_box(profile)
    world = spec.worldbody
    spec.option.noslip_iterations = max(spec.option.noslip_iterations, 3)
    spec.add_texture(name="twin_grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     width=256, height=256, rgb1=[0.25, 0.27, 0.3], rgb2=[0.3, 0.32, 0.35])
    spec.add_material(name="twin_floor", textures=["", "twin_grid"], texrepeat=[4, 4], texuniform=True)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[4, 4, FLOOR_GRID], pos=[0, 0, -TABLE_HEIGHT],
                   material="twin_floor", group=BACKGROUND_GROUP)
    half = np.maximum(np.abs(lower[:2]), np.abs(upper[:2])) + 0.2
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[half[0], half[1], TABLE_HEIGHT / 2],
                   pos=[0, 0, -TABLE_HEIGHT / 2], rgba=[0.62, 0.55, 0.45, 1], friction=[1.0, 0.005, 0.0001])
    center = (lower + upper) / 2
    world.add_light(name="twin_top", pos=[center[0], center[1], 1.5], dir=[0, 0, -1], diffuse=[0.6, 0.6, 0.6],
                    specular=[0.2, 0.2, 0.2], castshadow=False)
    world.add_light(name="twin_side", pos=[center[0] + 1.0, center[1] - 1.0, 1.0], dir=[-0.6, 0.6, -0.5],
                    diffuse=[0.4, 0.4, 0.4], specular=[0.1, 0.1, 0.1], castshadow=False)
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]


def _approach_axis(model: mujoco.MjModel, site: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Body carrying the EE site, the site position in it and the approach direction (body frame)."""
    body = int(model.site_bodyid[site])
    pos = model.site_pos[site].copy()
    norm = np.linalg.norm(pos)
    approach = pos / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
    return body, pos, approach


def _add_camera(spec: mujoco.MjSpec, robot: mujoco.MjModel, profile: RobotProfile, cam: CameraSpec) -> None:
    lower, upper = workspace_box(profile)
    if any(key in cam.name.lower() for key in ("wrist", "hand", "gripper")):
        assert profile.sim is not None
        site = mujoco.mj_name2id(robot, mujoco.mjtObj.mjOBJ_SITE, profile.sim.ee_site)
        body_id, site_pos, approach = _approach_axis(robot, site)
        side = np.cross(approach, [1.0, 0.0, 0.0])
        if np.linalg.norm(side) < 1e-3:
            side = np.cross(approach, [0.0, 1.0, 0.0])
        side /= np.linalg.norm(side)
        pos = site_pos - 0.09 * approach + 0.045 * side
        target = site_pos + 0.06 * approach
        body = spec.body(robot.body(body_id).name)
        body.add_camera(name=cam.sim_camera, pos=pos, quat=look_at_quat(pos, target, up=side), fovy=WRIST_FOVY)
        return
    span = float(max(upper[0] - lower[0], upper[1] - lower[1]))
    target = np.array([(lower[0] + upper[0]) / 2, (lower[1] + upper[1]) / 2, 0.05])
    direction = np.array([1.0, 0.0, 0.75]) / np.linalg.norm([1.0, 0.0, 0.75])
    pos = target + 0.85 * span * direction
    spec.worldbody.add_camera(name=cam.sim_camera, pos=pos, quat=look_at_quat(pos, target), fovy=FRONT_FOVY)


def _mount_calibrated_camera(spec: mujoco.MjSpec, robot: mujoco.MjModel, profile: RobotProfile, cam: CameraSpec) -> None:
    """Place the camera where its hand-eye calibration says the real one is (field of view from its intrinsics)."""
    import math

    from robot_stack.calibration.handeye import twin_camera_mount
    from robot_stack.camera_info import Intrinsics

    body, pos, quat_wxyz = twin_camera_mount(profile, robot, profile.resolve(cam.extrinsics))
    fovy = WRIST_FOVY if any(k in cam.name.lower() for k in ("wrist", "hand", "gripper")) else FRONT_FOVY
    if cam.intrinsics:
        intrinsics = Intrinsics.load(profile.resolve(cam.intrinsics))
        fovy = math.degrees(2 * math.atan(0.5 * intrinsics.height / intrinsics.fy))
    existing = spec.camera(cam.sim_camera)
    if existing is not None:
        spec.delete(existing)
    spec.body(body).add_camera(name=cam.sim_camera, pos=pos, quat=quat_wxyz, fovy=fovy)


def asset_mesh(model: mujoco.MjModel, mesh: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (in the frame the MJCF places the mesh in, scale applied) and faces of compiled ``mesh``."""
    first, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.mesh_quat[mesh])
    verts = model.mesh_pos[mesh] + model.mesh_vert[first:first + count].astype(float) @ rot.reshape(3, 3).T
    first, count = model.mesh_faceadr[mesh], model.mesh_facenum[mesh]
    return verts, model.mesh_face[first:first + count].astype(np.int64)


def cluster_mesh(verts: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: vertices in one ``cell``-sized grid box merge into their mean; faces that
    collapse (or repeat) go."""
    box = np.floor(verts / cell).astype(np.int64)
    box -= box.min(axis=0)
    span = box.max(axis=0) + 1
    _, index, counts = np.unique((box[:, 0] * span[1] + box[:, 1]) * span[2] + box[:, 2], return_inverse=True,
                                 return_counts=True)
    merged = np.stack([np.bincount(index, verts[:, k], counts.size) for k in range(3)], axis=1) / counts[:, None]
    faces = index[faces]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    key = np.sort(faces, axis=1)
    _, first = np.unique((key[:, 0] * counts.size + key[:, 1]) * counts.size + key[:, 2], return_index=True)
    faces = faces[np.sort(first)]
    used, faces = np.unique(faces, return_inverse=True)
    return merged[used], faces.reshape(-1, 3)


_SIMPLIFIED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
"""Simplified meshes by (MJCF path, mesh name, size, cell): each scene build of a process reuses them."""


def _geoms_set_inertia(spec: mujoco.MjSpec, body: mujoco.MjsBody) -> bool:
    mode = spec.compiler.inertiafromgeom
    return mode == mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE or (
        mode == mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_AUTO and not body.explicitinertial)


def simplify_visual_meshes(spec: mujoco.MjSpec, robot: mujoco.MjModel, path: Path, cell: float | None) -> int:
    """Point every visual-only mesh geom (no collisions, no say in inertia, no texture coordinates)
    at a copy of its mesh clustered on a ``cell`` grid, and add the coarser levels of detail
    (``render_levels``); returns the number of geoms changed. The geoms keep their pose and
    material; geoms that collide keep the original meshes."""
    if not cell:
        return 0
    lo, hi = spec.compiler.inertiagrouprange
    ids = {robot.mesh(i).name: i for i in range(robot.nmesh)}
    added: dict[str, str | None] = {}
    changed = 0
    for body in spec.bodies:
        inertial = _geoms_set_inertia(spec, body)
        for geom in body.geoms:
            mesh = ids.get(geom.meshname)
            if (geom.type != mujoco.mjtGeom.mjGEOM_MESH or mesh is None or geom.contype or geom.conaffinity
                    or (inertial and lo <= geom.group <= hi) or robot.mesh_texcoordnum[mesh]
                    or not SIMPLIFY_MIN_FACES <= robot.mesh_facenum[mesh] <= SIMPLIFY_MAX_FACES):
                continue
            if geom.meshname not in added:
                added[geom.meshname] = _add_levels(spec, robot, mesh, path, cell)
            if added[geom.meshname] is not None:
                geom.meshname = added[geom.meshname]
                changed += 1
    return changed


def _add_levels(spec: mujoco.MjSpec, robot: mujoco.MjModel, mesh: int, path: Path, cell: float) -> str | None:
    """Add the levels of detail of ``mesh`` (each at least 20% fewer triangles than the one before); the name of level 0."""
    name = robot.mesh(mesh).name
    faces = int(robot.mesh_facenum[mesh])
    original = asset_mesh(robot, mesh)
    for level in range(RENDER_LEVELS):
        key = (str(path), name, faces, cell * 2**level)
        if key not in _SIMPLIFIED:
            _SIMPLIFIED[key] = cluster_mesh(*original, cell * 2**level)
        verts, simple = _SIMPLIFIED[key]
        if len(simple) > 0.8 * faces:
            break
        spec.add_mesh(name=f"{name}{LEVEL_TAG}{level}", uservert=verts.ravel().tolist(), userface=simple.ravel().tolist(),
                      inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL)
        faces = len(simple)
    return None if faces == robot.mesh_facenum[mesh] else f"{name}{LEVEL_TAG}0"


LEVEL_TAG = "__render"


def render_levels(model: mujoco.MjModel) -> dict[int, list[int]]:
    """Mesh id of level 0 -> mesh ids of its levels of detail, finest first (grids of 1, 2, 4 ... x the cell)."""
    names = {model.mesh(i).name: i for i in range(model.nmesh)}
    levels: dict[int, list[int]] = {}
    for name, i in names.items():
        if name.endswith(f"{LEVEL_TAG}0"):
            base = name[:-1]
            levels[i] = [names[f"{base}{k}"] for k in range(RENDER_LEVELS) if f"{base}{k}" in names]
    return levels


def check_joints(profile: RobotProfile, model: mujoco.MjModel, where: str) -> None:
    """Every profile joint, the EE site and the base body exist (one line naming the first missing),
    and the base sits at the world origin."""
    from robot_stack.arm.kinematics import check_model

    check_model(profile, model, where)
    assert profile.sim is not None
    base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, profile.sim.base_body) if profile.sim.base_body else 0
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    if np.abs(data.xpos[base]).max() > 1e-6 or np.abs(data.xmat[base] - np.eye(3).ravel()).max() > 1e-6:
        raise UserError(f"{where}: the robot base ({profile.sim.base_body or 'world'}) must sit at the world origin "
                        "unrotated (the twin lays out its table and tasks in the base frame); move it in the MJCF")


def build_scene(profile: RobotProfile, task: SceneTask | None = None, *, simplify_meshes: bool = True) -> Scene:
    """Compile the robot, table, lights, the task's objects and the profile's cameras into one model.

    ``simplify_meshes``: draw visual meshes simplified (``RENDER_MESH_CELL``), else the MJCF's originals."""
    spec, path = load_robot_spec(profile)
    robot = spec.compile()
    check_joints(profile, robot, str(path))
    simplify_visual_meshes(spec, robot, path, RENDER_MESH_CELL if simplify_meshes else None)
    for geom in spec.geoms:
        if geom.name in GRASP_PADS:
            geom.contype, geom.conaffinity = 1, 1
    if robot.nu and not np.any(robot.actuator_biastype == mujoco.mjtBias.mjBIAS_NONE):
        # Servo-driven arm: real servos hold pose against gravity (integral action, stiff gears);
        # the MJCF's proportional servos alone sag by centimetres, so compensate gravity on the arm.
        for body in spec.bodies[1:]:
            body.gravcomp = 1.0
    _add_environment(spec, profile)
    for cam in profile.cameras:
        if cam.extrinsics:
            _mount_calibrated_camera(spec, robot, profile, cam)
        elif mujoco.mj_name2id(robot, mujoco.mjtObj.mjOBJ_CAMERA, cam.sim_camera) < 0:
            _add_camera(spec, robot, profile, cam)
    spec.visual.quality.offsamples = OFFSCREEN_SAMPLES
    if profile.cameras:
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, *(c.width for c in profile.cameras))
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, *(c.height for c in profile.cameras))
    if task is not None:
        task.build(spec, profile)
    try:
        model = spec.compile()
    except ValueError as err:
        raise UserError(f"{path}: scene does not compile: {_first_line(err)}") from None
    cameras = {c.name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, c.sim_camera) for c in profile.cameras}
    return Scene(model=model, path=path, cameras=cameras)
