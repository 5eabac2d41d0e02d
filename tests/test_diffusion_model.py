"""Diffusion policy building blocks: shapes, normaliser, dataset windows, NaN guard, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robot_stack.errors import UserError
from robot_stack.profile import load_profile
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.policies.diffusion import dataset as ds
from robot_stack.policies.diffusion.config import ShapeMeta, preset, replace
from robot_stack.policies.diffusion.ee_actions import EndEffectorActions
from robot_stack.policies.diffusion.normalizer import Normalizer
from robot_stack.policies.diffusion import runtime as runtime_mod
from robot_stack.policies.diffusion.policy import DiffusionPolicy, NonFiniteError
from robot_stack.policies.diffusion.runtime import Compiled
from robot_stack.policies.diffusion.synthetic import write_store
from robot_stack.policies.diffusion.train import RunOptions, train
from robot_stack.policies.diffusion.unet import ConditionalUnet1D
from robot_stack.policies.diffusion.vision import ImageEncoder, crop, resize_images

torch.set_num_threads(1)
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def image_policy(seed: int = 0) -> DiffusionPolicy:
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",), "image_keys": ("front_image", "wrist_image")})
    shape = ShapeMeta(robot="so101", joint_names=JOINTS, lowdim_dims={"joint_pos": 6}, action_dim=6,
                      image_keys=("front_image", "wrist_image"))
    torch.manual_seed(seed)
    return DiffusionPolicy(cfg, shape).eval()


def image_obs(b: int = 2, hw: tuple[int, int] = (48, 64)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"joint_pos": torch.rand(b, 2, 6, generator=g) * 2 - 1,
            "front_image": torch.randint(0, 256, (b, 2, *hw, 3), dtype=torch.uint8, generator=g),
            "wrist_image": torch.randint(0, 256, (b, 2, *hw, 3), dtype=torch.uint8, generator=g)}


def test_shapes():
    cfg = preset("image")
    unet = ConditionalUnet1D(7, 40, cfg.unet)
    assert unet(torch.randn(3, 16, 7), torch.tensor([4]), torch.randn(3, 40)).shape == (3, 16, 7)
    enc = ImageEncoder(cfg.vision)
    assert enc(torch.rand(5, 3, 84, 84) * 255).shape == (5, cfg.vision.feature_dim)
    enc_avg = ImageEncoder(replace(cfg, vision={"pool": "avg"}).vision)
    assert enc_avg(torch.rand(2, 3, 84, 84) * 255).shape == (2, cfg.vision.feature_dim)
    policy = image_policy()
    action = policy.predict_action(image_obs(), generator=torch.Generator().manual_seed(0))
    assert action.shape == (2, 16, 6) and torch.isfinite(action).all()
    policy.reset()
    single = {k: v[0, 0].numpy() for k, v in image_obs(1).items()}
    assert policy.act(single).shape == (8, 6)


def test_precomputed_film_matches_per_step_conditioning():
    """predict_action's batched FiLM pass computes what the training-time forward computes per step."""
    policy, obs = image_policy(), image_obs()
    fast = policy.predict_action(obs, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cond = policy.encode_obs(obs)
        scheduler = policy.infer_scheduler
        scheduler.set_timesteps(policy.inference_steps)
        x = torch.randn(fast.shape, generator=torch.Generator().manual_seed(3))
        for t in scheduler.timesteps:
            x = scheduler.step(policy.unet(x, t.reshape(1), cond), t, x).prev_sample
        slow = policy.normalizer.unnormalize("action", x)
    assert torch.allclose(fast, slow, atol=1e-4), (fast - slow).abs().max()



@pytest.mark.parametrize("runtime", ["torchscript", "onnxruntime"])
def test_runtime_unet_step_matches_eager_and_follows_new_weights(runtime):
    """Inference's compiled U-Net step gives eager's actions, per batch size, and never keeps stale weights."""
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    policy, obs = image_policy(), image_obs()

    def actions(name: str, o: dict) -> torch.Tensor:
        policy.runtime = name
        return policy.predict_action(o, generator=torch.Generator().manual_seed(5))

    for batch in (obs, {k: v[:1] for k, v in obs.items()}):
        assert torch.allclose(actions(runtime, batch), actions("eager", batch), atol=1e-5)
    assert len(policy._compiled["unet", runtime]._graphs) == 2  # one graph per input shape
    assert len(policy._compiled["front_image", runtime]._graphs) == 2
    before = actions(runtime, obs)
    policy.load_state_dict(image_policy(seed=1).state_dict())  # e.g. EMA weights or a reloaded checkpoint
    after = actions(runtime, obs)
    assert not torch.allclose(before, after) and torch.allclose(after, actions("eager", obs), atol=1e-5)
    assert "_compiled" not in "".join(policy.state_dict())  # the compiled step is no submodule
    policy.train()
    assert not isinstance(policy._inference("unet", policy.unet, torch.device("cpu")), Compiled)


def test_runtime_choice():
    cpu = torch.device("cpu")
    have_ort = runtime_mod.onnxruntime_available()
    assert runtime_mod.choose_runtime("auto", cpu) == ("onnxruntime" if have_ort else "torchscript")
    assert runtime_mod.choose_runtime("eager", cpu) == "eager"
    with pytest.raises(UserError, match="use one of"):
        runtime_mod.choose_runtime("tensorrt", cpu)
    from robot_stack.devices import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="use auto, cpu"):
        resolve_device("gpu")


def test_relative_actions_are_offsets_from_the_current_joints(tmp_path):
    store = write_store(tmp_path / "demos.zarr", n_episodes=3, length=20)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",), "relative_actions": True},
                  scheduler={"prediction_type": "sample"})
    data = ds.SequenceDataset(ds.load_store(store, cfg), np.arange(3), cfg)
    rel = data.relative_actions()
    item = data[5]
    assert rel.shape == (len(data) * 16, 6)
    assert np.allclose(rel[5 * 16:6 * 16], item["action"].numpy() - item["joint_pos"][1].numpy())

    shape = ShapeMeta(robot="so101", joint_names=JOINTS, lowdim_dims={"joint_pos": 6}, action_dim=6)
    policy = DiffusionPolicy(cfg, shape).eval()
    policy.normalizer.fit({"joint_pos": data.buffer.data["joint_pos"], "action": rel})
    torch.nn.init.zeros_(policy.unet.final[-1].weight)
    torch.nn.init.zeros_(policy.unet.final[-1].bias)  # predicts x0 = 0: the middle of the relative range
    obs = {"joint_pos": torch.rand(2, 2, 6)}
    middle = policy.normalizer.unnormalize("action", torch.zeros(6))
    expected = obs["joint_pos"][:, 1:2] + middle
    assert torch.allclose(policy.predict_action(obs), expected.expand(2, 16, 6), atol=1e-5)
    with pytest.raises(ValueError, match="relative_actions needs joint_pos"):
        replace(cfg, obs={"lowdim_keys": ("object_state",)})


def test_resize_and_crop():
    img = torch.randint(0, 256, (4, 2, 48, 64, 3), dtype=torch.uint8)
    small = resize_images(img, (32, 32))
    assert small.shape == (4, 2, 32, 32, 3) and small.dtype == torch.uint8
    flat = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    offsets = torch.tensor([[0, 1], [2, 2]])
    out = crop(flat, (4, 4), offsets)
    assert torch.equal(out[0], flat[0, :, 0:4, 1:5]) and torch.equal(out[1], flat[1, :, 2:6, 2:6])
    assert torch.equal(crop(flat, (4, 4)), flat[:, :, 1:5, 1:5])


def test_normalizer_round_trip():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 4)) * [1, 10, 0.01, 0]).astype(np.float32)  # last dim constant
    x[:, 3] = 2.5
    norm = Normalizer({"a": 4}).fit({"a": x})
    y = norm.normalize("a", torch.from_numpy(x))
    assert y[:, :3].min() >= -1 - 1e-5 and y[:, :3].max() <= 1 + 1e-5
    assert torch.allclose(y[:, :3].min(0).values, torch.full((3,), -1.0), atol=1e-5)
    assert torch.allclose(y[:, 3], torch.zeros(500))
    assert torch.allclose(norm.unnormalize("a", y), torch.from_numpy(x), atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        Normalizer({"a": 1}).fit({"a": np.array([[np.nan]])})


def test_sequence_windows_pad_like_diffusion_policy(tmp_path):
    store = write_store(tmp_path / "d.zarr", n_episodes=2, length=10)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",)})
    buf = ds.load_store(store, cfg)
    data = ds.SequenceDataset(buf, np.array([0, 1]), cfg)
    # per episode: indices -pad_before .. n - Tp + pad_after  ->  (10 - 16 + 7) + 1 + 1 = 3
    assert len(data) == 2 * 3
    first = data[0]
    q = buf.data["joint_pos"]
    assert torch.equal(first["joint_pos"], torch.from_numpy(np.stack([q[0], q[0]])))  # padded before start
    last = data[2]
    act = buf.data["action"]
    assert torch.equal(last["action"][-1], torch.from_numpy(act[9]))  # padded past the end with the last action
    assert first["action"].shape == (16, 6)
    train, val = ds.split_episodes(10, 0.2, 0)
    assert len(val) == 2 and not set(train) & set(val)


def test_intervention_store_keeps_only_intervened_samples(tmp_path):
    store = write_store(tmp_path / "h.zarr", n_episodes=2, length=20, intervention_every=5)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos",)})
    buf = ds.load_store(store, cfg, weight=3.0)
    data = ds.SequenceDataset(buf, np.array([0, 1]), cfg)
    full = ds.SequenceDataset(ds.load_store(store, cfg), np.array([0, 1]), cfg)
    assert 0 < len(data) < len(full)
    assert np.all(data.weights == 3.0)


def test_nan_guard():
    policy = image_policy()
    obs = image_obs()
    obs["joint_pos"][0, 1, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="joint_pos"):
        policy.predict_action(obs)
    with torch.no_grad():
        policy.unet.final[1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="NaN"):
        policy.predict_action(image_obs())


def test_checkpoint_round_trip_and_profile_mismatch(tmp_path):
    from robot_stack.profile import load_profile

    policy = image_policy(seed=3)
    policy.normalizer.fit({"joint_pos": np.random.default_rng(0).uniform(-2, 2, (50, 6)),
                           "action": np.random.default_rng(1).uniform(-2, 2, (50, 6))})
    ckpt.save_checkpoint(tmp_path / "c", policy, step=7)
    so101 = load_profile("so101")  # the policy crops nothing: so101 with its cameras uncropped
    so101 = dataclasses.replace(so101, cameras=tuple(dataclasses.replace(c, roi=None) for c in so101.cameras))
    loaded = ckpt.load_policy(tmp_path / "c", profile=so101)
    a = policy.predict_action(image_obs(), generator=torch.Generator().manual_seed(5))
    b = loaded.predict_action(image_obs(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (tmp_path / "c" / "model.safetensors").read_bytes()[:8] != b"\x80\x04"  # not a pickle
    with pytest.raises(UserError) as err:
        ckpt.load_policy(tmp_path / "c", profile=load_profile("panda"))
    msg = str(err.value)
    assert "\n" not in msg and "robot (checkpoint 'so101', here 'panda')" in msg
    assert "joint_names" in msg and "action_dim (checkpoint 6, here 8)" in msg and "obs.joint_pos" in msg
    with pytest.raises(UserError, match=r"obs.wrist_image \(checkpoint 'image', here 'missing'\)"):
        ckpt.load_policy(tmp_path / "c", obs_keys=["joint_pos", "front_image"])
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UserError, match="hash does not match"):
        ckpt.load_policy(tmp_path / "c")


def test_bad_store_is_one_line_error(tmp_path):
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos", "object_state")})
    with pytest.raises(UserError, match="dataset not found"):
        ds.load_store(tmp_path / "missing.zarr", cfg)
    store = write_store(tmp_path / "d.zarr", n_episodes=1, length=8)
    cfg2 = replace(cfg, obs={"image_keys": ("top_image",)})
    with pytest.raises(UserError, match=r"missing data/top_image \(store has: .*joint_pos"):
        ds.load_store(store, cfg2)


@pytest.mark.parametrize("name, preset_name, obs_keys", [("lowdim_small", "lowdim", None),
                                                         ("image_small", "image", "joint_pos,ee_pose,front_image")])
def test_shipped_policy_configs_build_and_act(name, preset_name, obs_keys):
    """config/policies/*.yaml (robot-stack demo's policies) merge over their preset and give finite actions."""
    from robot_stack.cli import build_parser
    from robot_stack.policies.diffusion.cli import build_config
    from robot_stack.resources import share_dir

    argv = ["train", "diffusion", "--out", "unused", "--preset", preset_name,
            "--config", str(share_dir() / "config" / "policies" / f"{name}.yaml")]
    cfg = build_config(build_parser().parse_args(argv + (["--obs-keys", obs_keys] if obs_keys else [])))
    assert cfg.scheduler.prediction_type == "sample" and cfg.obs.lowdim_noise > 0
    dims = {"joint_pos": 6, "ee_pose": 7, "object_state": 7}
    shape = ShapeMeta(robot="so101", joint_names=tuple(f"j{i}" for i in range(6)), action_dim=6,
                      lowdim_dims={k: dims[k] for k in cfg.obs.lowdim_keys}, image_keys=cfg.obs.image_keys)
    policy = DiffusionPolicy(cfg, shape).eval()
    obs = {k: np.zeros(dims[k], np.float32) for k in cfg.obs.lowdim_keys}
    obs.update({k: np.zeros((480, 640, 3), np.uint8) for k in cfg.obs.image_keys})
    actions = policy.act(obs)
    assert actions.shape == (cfg.horizon.n_action_steps, 6) and np.isfinite(actions).all()


def test_config_file_that_is_not_a_mapping_is_one_line_error():
    from robot_stack.policies.diffusion.cli import merge_config

    with pytest.raises(UserError, match="my.yaml: expected a mapping of config sections"):
        merge_config(preset("tiny"), ["unet", 64], "my.yaml")
    assert merge_config(preset("tiny"), {"unet": {"kernel_size": 3}}, "my.yaml").unet.kernel_size == 3


def test_ee_actions_round_trip_through_ik():
    profile = load_profile("so101")
    ee = EndEffectorActions(profile)
    home = np.asarray(profile.sim.home, dtype=float)
    path = home + np.cumsum(np.random.default_rng(0).uniform(-0.03, 0.03, (12, 6)), 0)  # smooth, near home
    targets = ee.encode(path)
    assert targets.shape == (12, 10) and ee.dim == 10
    joints = ee.decode(targets, path[0])
    back = ee.encode(joints)
    np.testing.assert_allclose(back[:, :3], targets[:, :3], atol=1e-3)  # the end effector within 1 mm
    np.testing.assert_allclose(back[:, 3:9], targets[:, 3:9], atol=0.05)
    np.testing.assert_array_equal(joints[:, 5], path[:, 5].astype(np.float32))  # the gripper passes through


def test_ee_action_space_trains_and_returns_joint_targets(tmp_path):
    store = write_store(tmp_path / "demos.zarr", n_episodes=2, length=20)
    cfg = replace(preset("tiny"), obs={"lowdim_keys": ("joint_pos", "object_state"), "action_space": "ee"},
                  train={"steps": 4, "val_ratio": 0.0, "val_every": 4, "ckpt_every": 4, "log_every": 2})
    run = train(RunOptions(out=tmp_path / "run", data=[str(store)], cfg=cfg, progress=False))
    policy = ckpt.load_policy(run / "checkpoints" / "latest", load_profile("so101"))
    assert policy.shape.model_action_dim == 10 and policy.ee_actions is not None
    obs = {"joint_pos": torch.rand(2, 2, 6) * 0.2, "object_state": torch.rand(2, 2, 6)}
    joints = policy.predict_action(obs, generator=torch.Generator().manual_seed(0))
    assert joints.shape == (2, 16, 6) and torch.isfinite(joints).all()
    with pytest.raises(ValueError, match="action_space ee needs joint_pos"):
        replace(cfg, obs={"lowdim_keys": ("object_state",)})


def test_fused_adamw_step_matches_the_per_parameter_loop():
    """Training's fused AdamW (the speed lever) computes the update the default loop computes."""
    from robot_stack.policies.diffusion.train import EMA, LossWrapper, make_optimizer, train_step

    cpu = torch.device("cpu")
    batch = {**image_obs(4), "action": torch.rand(4, 16, 6) * 2 - 1}
    params = {}
    for fused in (True, False):
        policy = image_policy().train()
        cfg = policy.cfg
        optimizer = make_optimizer(policy, cfg, cpu, fused=fused)
        assert bool(optimizer.defaults["fused"]) is fused
        ema = EMA(policy, cfg.ema.power, cfg.ema.inv_gamma, cfg.ema.min_decay, cfg.ema.max_decay)
        for step in range(3):
            loss = train_step(LossWrapper(policy), policy, optimizer, ema, batch, torch.Generator().manual_seed(step),
                              (0, 1), cfg, step, cpu)
            assert torch.isfinite(loss)
        params[fused] = torch.cat([p.detach().flatten() for p in policy.parameters()])
    assert torch.allclose(params[True], params[False], atol=1e-6)
    assert not torch.equal(params[True], torch.cat([p.flatten() for p in image_policy().parameters()]))


def test_bf16_autocast_training_step_runs_on_the_cpu():
    from robot_stack.policies.diffusion.train import LossWrapper, make_optimizer, train_step

    cpu = torch.device("cpu")
    policy = image_policy().train()
    policy.cfg = replace(policy.cfg, train={"precision": "bf16"})
    optimizer = make_optimizer(policy, policy.cfg, cpu)
    batch = {**image_obs(2), "action": torch.rand(2, 16, 6) * 2 - 1}
    loss = train_step(LossWrapper(policy), policy, optimizer, None, batch, torch.Generator().manual_seed(0), (0, 1),
                      policy.cfg, 0, cpu)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in policy.parameters())  # weights stay fp32
