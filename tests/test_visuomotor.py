"""The visuomotor policy's inputs: regions of interest, images prepared once, augmentation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from robot_stack.cli import main as cli_main
from robot_stack.errors import UserError
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.policies.diffusion.config import ShapeMeta, preset, replace
from robot_stack.policies.diffusion.image_cache import prepare_images
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.policies.diffusion.synthetic import write_store
from robot_stack.policies.diffusion.vision import color_jitter, jitter_factors
from robot_stack.profile import load_profile
from conftest import REPO, small_camera_profile

torch.set_num_threads(1)
SO101 = REPO / "config" / "robots" / "so101.yaml"


@pytest.mark.parametrize("roi", [[600, 0, 100, 100], [0, 0, 0, 10], [-1, 0, 10, 10], [0, 400, 640, 81]])
def test_a_region_of_interest_outside_the_image_is_one_line(tmp_path, roi):
    data = yaml.safe_load(SO101.read_text())
    data["cameras"][0]["roi"] = roi
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert "\n" not in message and "cameras[0]" in message and "roi" in message and "640x480" in message, message


def test_prepare_crops_the_region_before_resizing():
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:22, 20:36] = (200, 30, 30)  # the region of interest, 16x12
    out = prepare_images(torch.from_numpy(frame), (20, 10, 16, 12), (6, 8), "front")
    assert out.shape == (6, 8, 3) and (out.numpy() == (200, 30, 30)).all()
    whole = prepare_images(torch.from_numpy(frame), None, (6, 8)).numpy()
    assert not (whole == (200, 30, 30)).all()  # without it the square is a quarter of the image
    with pytest.raises(UserError, match="does not lie inside its 32x24 image"):
        prepare_images(torch.zeros((24, 32, 3), dtype=torch.uint8), (20, 10, 16, 12), (6, 8), "front")


def test_color_jitter_is_the_identity_at_one_and_stays_in_range():
    images = torch.rand(4, 3, 8, 8) * 255
    torch.testing.assert_close(color_jitter(images, torch.ones(4, 6)), images)
    factors = jitter_factors(4, 0.3, torch.Generator().manual_seed(0))
    assert factors.min() >= 0.7 and factors.max() <= 1.3
    out = color_jitter(images, factors)
    assert out.min() >= 0 and out.max() <= 255 and not torch.allclose(out, images)
    torch.testing.assert_close(factors, jitter_factors(4, 0.3, torch.Generator().manual_seed(0)))


def _policy(cfg, cameras=("front",)) -> DiffusionPolicy:
    shape = ShapeMeta(robot="so101", joint_names=tuple(f"j{i}" for i in range(6)), lowdim_dims={"joint_pos": 6},
                      action_dim=6, image_keys=tuple(f"{c}_image" for c in cameras))
    policy = DiffusionPolicy(cfg, shape)
    policy.normalizer.fit({"joint_pos": np.random.default_rng(0).normal(size=(50, 6)),
                           "action": np.random.default_rng(1).normal(size=(50, 6))})
    return policy.eval()


def test_live_frames_are_seen_as_the_dataset_prepared_them():
    cfg = replace(preset("tiny"), obs={"image_keys": ("front_image",), "rois": {"front": (8, 4, 16, 12)}})
    policy = _policy(cfg)
    policy.runtime = "eager"
    frames = torch.randint(0, 255, (2, 2, 24, 32, 3), dtype=torch.uint8)  # (B, To, H, W, 3) camera frames
    joints = torch.zeros(2, 2, 6)
    live = policy.encode_obs({"joint_pos": joints, "front_image": frames})
    cached = prepare_images(frames, (8, 4, 16, 12), cfg.obs.image_size)  # what load_images keeps in memory
    torch.testing.assert_close(live, policy.encode_obs({"joint_pos": joints, "front_image": cached}, prepared=True))


def test_images_of_the_last_step_only():
    cfg = replace(preset("tiny"), obs={"image_keys": ("front_image", "wrist_image"), "image_steps": 1})
    both = _policy(replace(preset("tiny"), obs={"image_keys": ("front_image", "wrist_image")}), ("front", "wrist"))
    last = _policy(cfg, ("front", "wrist"))
    width = last.unet.res_blocks()[0].cond[1].in_features
    assert width == both.unet.res_blocks()[0].cond[1].in_features - 2 * cfg.vision.feature_dim
    obs = {"joint_pos": torch.zeros(1, 2, 6), "front_image": torch.zeros(1, 2, 32, 32, 3, dtype=torch.uint8),
           "wrist_image": torch.zeros(1, 2, 32, 32, 3, dtype=torch.uint8)}
    cond = last.encode_obs(obs)
    obs["front_image"][:, 0] = 255  # the older frame is not looked at
    torch.testing.assert_close(cond, last.encode_obs(obs))
    assert last.predict_action(obs, generator=torch.Generator().manual_seed(0)).shape == (1, 16, 6)


def test_the_checkpoint_carries_the_region_and_refuses_another(tmp_path, capsys):
    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=16, cameras=("front",), image_hw=(24, 32))
    profile = small_camera_profile(tmp_path, front_roi=(4, 2, 24, 20))
    run = tmp_path / "run"
    args = ["train", "diffusion", "--data", str(store), "--out", str(run), "--robot", str(profile), "--preset", "tiny",
            "--obs-keys", "joint_pos,front_image", "--steps", "2", "--batch-size", "4", "--no-progress", "--device", "cpu"]
    assert cli_main(args) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["config"]["obs"]["rois"] == {"front": [4, 2, 24, 20]}
    latest = run / "checkpoints" / "latest"
    policy = ckpt.load_policy(latest, load_profile(str(profile)))
    assert policy.cfg.obs.rois == {"front": (4, 2, 24, 20)}

    other = small_camera_profile(tmp_path, front_roi=(0, 0, 16, 12), name="other.yaml")
    for target, here in ((other, "[0,0,16,12]"), (small_camera_profile(tmp_path, name="none.yaml"), "'none'")):
        with pytest.raises(UserError) as err:
            ckpt.load_policy(latest, load_profile(str(target)))
        message = str(err.value)
        assert "\n" not in message and f"obs.front_image.roi (checkpoint [4,2,24,20], here {here})" in message, message
    capsys.readouterr()
    # resuming against a profile whose region differs (run.json names the robot 'so101': the shipped profile,
    # which crops its front camera to the workspace) is refused before any training
    assert cli_main(["train", "diffusion", "--out", str(run), "--resume", "--steps", "4", "--no-progress",
                     "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "crops front [4, 2, 24, 20]" in err and "crops front [160, 80, 320, 240]" in err, err


def test_a_camera_the_store_lacks_or_the_robot_lacks_is_one_line(tmp_path, capsys):
    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=16, cameras=("front",), image_hw=(24, 32))
    common = ["--data", str(store), "--preset", "tiny", "--steps", "2", "--no-progress", "--device", "cpu"]
    assert cli_main(["train", "diffusion", *common, "--out", str(tmp_path / "a"), "--robot",
                     str(small_camera_profile(tmp_path)), "--obs-keys", "joint_pos,wrist_image"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing data/wrist_image" in err and "front_image" in err, err
    assert cli_main(["train", "diffusion", *common, "--out", str(tmp_path / "b"), "--obs-keys", "joint_pos,side_image"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no camera 'side'" in err and "front, wrist" in err, err
    # a region of interest for the profile's 640x480 camera does not fit the store's 32x24 frames
    data = yaml.safe_load(SO101.read_text())
    data["cameras"][0]["roi"] = [100, 100, 320, 240]
    data["hardware"]["calibration"] = None
    (tmp_path / "roi.yaml").write_text(yaml.safe_dump(data))
    assert cli_main(["train", "diffusion", *common, "--out", str(tmp_path / "c"), "--robot", str(tmp_path / "roi.yaml"),
                     "--obs-keys", "joint_pos,front_image"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not lie inside its 32x24 image" in err and "cameras[].roi" in err, err


def test_visual_randomisation_changes_the_view_not_the_scene():
    """pick_cube_visual: the cube poses of pick_cube's seeds, seen under other cameras, lights and colours."""
    from robot_stack.sim.robot import SimRobot
    from robot_stack.sim.tasks import load_task_config

    profile = load_profile("so101").with_cameras(["front"])
    plain, visual = SimRobot(profile, "pick_cube", seed=0), SimRobot(profile, "pick_cube_visual", seed=0)
    r = load_task_config("pick_cube_visual").randomization
    table, cube = visual.model.geom("table").id, visual.model.geom("cube").id
    front = visual.camera_ids["front"]
    colours, lights = set(), set()
    for seed in range(1000, 1006):
        plain.reset(seed)
        visual.reset(seed)
        np.testing.assert_array_equal(plain.object_state(), visual.object_state())
        np.testing.assert_array_equal(plain.data.qpos, visual.data.qpos)
        for geom, shift in ((table, r.table_color_shift), (cube, r.object_color_shift)):
            delta = visual.model.geom_rgba[geom, :3] - plain.model.geom_rgba[geom, :3]
            assert 0 < np.abs(delta).max() <= shift + 1e-6
        assert np.abs(visual.model.cam_pos[front] - plain.model.cam_pos[front]).max() <= r.camera_pos_jitter + 1e-9
        scale = visual.model.vis.headlight.diffuse[0] / plain.model.vis.headlight.diffuse[0]
        assert r.light_scale[0] - 1e-6 <= scale <= r.light_scale[1] + 1e-6
        colours.add(round(float(visual.model.geom_rgba[table, 0]), 6))
        lights.add(round(float(scale), 6))
    assert len(colours) == 6 and len(lights) == 6
    plain.reset(1000)  # nominal again after a randomised reset
    visual_nominal = SimRobot(profile, "pick_cube", seed=1000)
    np.testing.assert_array_equal(plain.model.geom_rgba, visual_nominal.model.geom_rgba)
