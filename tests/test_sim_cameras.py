"""The twin's camera rendering: the cheaper visual geometry leaves the physics bit for bit and the
pictures within a grey level of the MJCF's own meshes; a rig renders the same pixels from a
snapshot (the twin node's render thread) as from live data (TwinEnv); the camera stream counts
every frame as published or dropped in real time and drops none on sim time."""

from __future__ import annotations

import contextlib
import functools

import mujoco
import numpy as np
import pytest

import robot_stack.sim.robot as sim_robot
from conftest import wait_for
from robot_stack.profile import load_profile
from robot_stack.sim.camera_stream import QUEUE_DEPTH, CameraStream
from robot_stack.sim.cameras import CameraRig
from robot_stack.sim.scene import FLOOR_GRID, LEVEL_TAG, build_scene, cluster_mesh


def twin(simplify: bool, seed: int = 7) -> sim_robot.SimRobot:
    """SO-101 pick_cube with the visual meshes simplified (today) or as the MJCF has them."""
    original = sim_robot.build_scene
    sim_robot.build_scene = functools.partial(build_scene, simplify_meshes=simplify)
    try:
        return sim_robot.SimRobot(load_profile("so101"), "pick_cube", seed=seed)
    finally:
        sim_robot.build_scene = original


@pytest.fixture(scope="module")
def pair() -> tuple[sim_robot.SimRobot, sim_robot.SimRobot]:
    """Today's scene, and the old one: the MJCF's visual meshes, the floor's 5 cm rendering grid."""
    simple, original = twin(True), twin(False)
    floor = mujoco.mj_name2id(original.model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    assert original.model.geom_size[floor][2] == FLOOR_GRID
    original.model.geom_size[floor][2] = 0.05
    return simple, original


def test_render_only_changes_leave_the_physics_bit_identical(pair):
    simple, original = pair
    rng = np.random.default_rng(0)
    target = simple.read().position
    for k in range(400):  # random joint targets; the arm sweeps while the cube rests on the table
        if k % 20 == 0:
            target = target + rng.normal(0, 0.1, target.shape)
        for sim in pair:
            sim.write(target)
            sim.step()
    assert simple.data.ncon > 0
    assert np.array_equal(simple.data.qpos, original.data.qpos)
    assert np.array_equal(simple.data.qvel, original.data.qvel)
    for key in ("body_mass", "body_inertia", "body_ipos", "body_iquat"):
        assert np.array_equal(getattr(simple.model, key), getattr(original.model, key)), key
    m = simple.model
    collide = (m.geom_contype != 0) | (m.geom_conaffinity != 0)
    collide[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")] = False  # its grid differs (rendering only)
    for key in ("geom_size", "geom_pos", "geom_quat", "geom_friction", "geom_dataid"):
        assert np.array_equal(getattr(m, key)[collide], getattr(original.model, key)[collide]), key


def test_only_visual_geoms_draw_simplified_meshes(pair):
    model = pair[0].model
    meshes = [i for i in range(model.ngeom) if model.geom_type[i] == mujoco.mjtGeom.mjGEOM_MESH]
    collide = [i for i in meshes if model.geom_contype[i] or model.geom_conaffinity[i]]
    visual = [i for i in meshes if i not in collide]
    assert collide and visual
    assert not any(LEVEL_TAG in model.mesh(model.geom_dataid[i]).name for i in collide)
    simplified = [i for i in visual if LEVEL_TAG in model.mesh(model.geom_dataid[i]).name]
    faces = sum(model.mesh_facenum[model.geom_dataid[i]] for i in visual)
    assert len(simplified) >= len(visual) - 1 and faces < 0.2 * sum(
        pair[1].model.mesh_facenum[pair[1].model.geom_dataid[i]] for i in visual)


def test_images_match_the_mjcf_meshes_and_show_the_cube(pair):
    """Today's rig against the old renderer (mujoco.Renderer, every geom, the MJCF's meshes), same state."""
    simple, original = pair
    profile = simple.profile
    rig = CameraRig(simple.model, profile, simple.camera_ids)
    reference = mujoco.Renderer(original.model, 480, 640)
    try:
        for name in ("front", "wrist"):
            image = rig.render_rgb(name, simple.data)
            reference.update_scene(original.data, camera=original.camera_ids[name])
            expected = reference.render()
            assert np.abs(image.astype(int) - expected).mean() < 1.0, name
            red = [np.sum((im[..., 0] > 150) & (im[..., 1] < 90) & (im[..., 2] < 90)) for im in (image, expected)]
            assert red[1] > 50 and abs(red[0] - red[1]) <= 0.05 * red[1], (name, red)  # the cube, as large
    finally:
        reference.close()
        rig.close()


def test_snapshot_and_live_data_render_the_same_pixels(pair):
    simple = pair[0]
    live = CameraRig(simple.model, simple.profile, simple.camera_ids)
    posed = CameraRig(simple.model, simple.profile, simple.camera_ids)
    try:
        posed.load(simple.snapshot())
        for name in ("front", "wrist"):
            out = np.zeros((480, 640, 3), np.uint8)
            assert posed.render_rgb(name, out=out) is out
            assert np.array_equal(live.render_rgb(name, simple.data), out), name
    finally:
        live.close()
        posed.close()


def test_cluster_mesh_merges_within_a_cell():
    # a finely tessellated sphere of radius 5 cm: 20k triangles
    u, v = np.meshgrid(np.linspace(0, np.pi, 72), np.linspace(0, 2 * np.pi, 144, endpoint=False), indexing="ij")
    verts = 0.05 * np.stack([np.sin(u) * np.cos(v), np.sin(u) * np.sin(v), np.cos(u)], -1).reshape(-1, 3)
    grid = np.arange(72 * 144).reshape(72, 144)
    a, b = grid[:-1], grid[1:]
    c, d = np.roll(a, -1, axis=1), np.roll(b, -1, axis=1)
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([c, b, d], -1).reshape(-1, 3)])
    merged, kept = cluster_mesh(verts, faces, 0.005)
    assert len(kept) < 0.25 * len(faces) and kept.max() < len(merged)
    assert np.all(kept[:, 0] != kept[:, 1]) and np.all(kept[:, 1] != kept[:, 2])
    radius = np.linalg.norm(merged, axis=1)
    assert np.all(np.abs(radius - 0.05) < 0.005 * np.sqrt(3))  # every vertex within a cell of the surface


@contextlib.contextmanager
def stream_of(sim: sim_robot.SimRobot, ros, camera: str, *, lossless: bool):
    """A CameraStream on the harness node, 20 ticks of both cameras submitted at once (0.0 ... 1.9 s),
    and the stamps of ``camera``'s frames a subscriber received."""
    from sensor_msgs.msg import Image

    from robot_stack import convert
    from robot_stack.contract import qos

    received = ros.collect(Image, f"{camera}/color/image_raw", qos(100))
    stream = CameraStream(ros.node, sim.model, sim.profile, sim.camera_ids, lossless=lossless)
    try:
        image_pub = stream.publishers[camera]._image  # matched before the first frame
        wait_for(lambda: image_pub.get_subscription_count() > 0, 10, "the subscriber")
        for k in range(20):  # at once: far faster than two 640x480 renders each
            stream.submit(0.1 * k, sim.snapshot(), ["front", "wrist"])
        stream.drain()
        wait_for(lambda: len(received) >= stream.counters.rendered[camera], 10, f"the published {camera} frames")
        yield stream, [convert.to_sec(m.header.stamp) for _, m in received], received
    finally:
        stream.close()


def test_stream_in_real_time_drops_the_oldest_frames_and_counts_them(pair, ros):
    with stream_of(pair[0], ros, "front", lossless=False) as (stream, stamps, _):
        c = stream.counters
        assert {n: c.rendered[n] + c.dropped[n] for n in c.rendered} == {"front": 20, "wrist": 20}
        assert stream.dropped_frames > 0 and stream.rendered_frames >= 2 * QUEUE_DEPTH
        assert stamps[-1] == pytest.approx(1.9), "the newest frame is kept"


def test_stream_on_sim_time_delivers_every_frame_to_a_subscriber(pair, ros):
    from robot_stack import convert

    with stream_of(pair[0], ros, "wrist", lossless=True) as (stream, stamps, received):
        assert stream.rendered_frames == 40 and stream.dropped_frames == 0
        assert stamps == pytest.approx([0.1 * k for k in range(20)])
        assert convert.image_to_array(received[-1][1]).shape == (480, 640, 3)
