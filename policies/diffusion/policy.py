"""DiffusionPolicy: observations (B, To, ...) -> action sequence (B, Tp, Da) by iterative denoising.

Training noises demo action sequences with a DDPM schedule (100 steps) and learns to predict the
noise; inference runs DDIM (8-16 steps) from Gaussian noise. Observations are normalised, images
resized/cropped and encoded per camera, and all To steps are flattened into one global condition.

Deployment interface: ``reset()`` then ``act(obs)`` once per policy period with the newest
single-step observation (the policy keeps the To-step history) returning the Ta actions to run;
or ``predict_action(obs_history)`` for a batch of stacked histories.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from robot_stack.errors import UserError
from robot_stack.policies.diffusion.config import DiffusionConfig, ShapeMeta
from robot_stack.policies.diffusion.normalizer import Normalizer
from robot_stack.policies.diffusion.runtime import Compiled, choose_runtime
from robot_stack.policies.diffusion.unet import ConditionalUnet1D, FilmStep
from robot_stack.policies.diffusion.image_cache import prepare_images
from robot_stack.policies.diffusion.vision import (ImageEncoder, color_jitter, crop, jitter_factors, random_crop_offsets,
                                                   resize_images)


class NonFiniteError(UserError):
    """An observation or a predicted action contains NaN or Inf."""


class DiffusionPolicy(nn.Module):
    def __init__(self, cfg: DiffusionConfig, shape: ShapeMeta):
        super().__init__()
        self.cfg, self.shape = cfg, shape
        self.lowdim_keys = list(cfg.obs.lowdim_keys)
        self.image_keys = list(cfg.obs.image_keys)
        self.action_key = cfg.obs.action_key
        self.normalizer = Normalizer({**{k: shape.lowdim_dims[k] for k in self.lowdim_keys},
                                      self.action_key: shape.model_action_dim})
        self.encoders = nn.ModuleDict({k: ImageEncoder(cfg.vision) for k in self.image_keys})
        cond_dim = (sum(shape.lowdim_dims[k] for k in self.lowdim_keys) * cfg.horizon.n_obs_steps
                    + len(self.image_keys) * cfg.vision.feature_dim * cfg.image_steps)
        self.unet = ConditionalUnet1D(shape.model_action_dim, cond_dim, cfg.unet)
        sched = dict(num_train_timesteps=cfg.scheduler.train_steps, beta_schedule=cfg.scheduler.beta_schedule,
                     prediction_type=cfg.scheduler.prediction_type, clip_sample=cfg.scheduler.clip_sample)
        self.train_scheduler = DDPMScheduler(**sched)
        self.infer_scheduler = DDIMScheduler(**sched, set_alpha_to_one=True, steps_offset=0,
                                             timestep_spacing=cfg.scheduler.timestep_spacing)
        self.inference_steps = cfg.scheduler.inference_steps
        """DDIM steps per chunk; may be overridden per call (``num_steps``) or for a whole evaluation."""
        self.runtime = "auto"
        """How inference runs the image encoders and the U-Net step (``runtime.RUNTIMES``): ``auto`` is ONNX
        Runtime on the CPU when installed, else a TorchScript trace; ``eager`` for debugging. Same actions up
        to float rounding."""
        self._compiled: dict[tuple[str, str], Compiled] = {}
        """(part, runtime) -> that part on it (a plain dict: not a submodule, not in the state dict)."""
        self.ee_actions = None
        """``obs.action_space: ee``: the kinematics turning end-effector targets into joint targets (made
        from the profile named in ``shape.robot`` on first use unless set, e.g. to a profile loaded from a path)."""
        self._history: collections.deque = collections.deque(maxlen=cfg.horizon.n_obs_steps)

    def __getstate__(self) -> dict:
        """Copies (``copy.deepcopy`` for EMA, pickling) leave the compiled inference graphs behind."""
        return {**self.__dict__, "_compiled": {}}

    # -- observations ----------------------------------------------------------------------------
    def encode_obs(self, obs: dict[str, torch.Tensor], crop_offsets: dict[str, torch.Tensor] | None = None,
                   lowdim_noise: dict[str, torch.Tensor] | None = None, jitter: dict[str, torch.Tensor] | None = None,
                   prepared: bool = False) -> torch.Tensor:
        """Raw obs (B, To, ...) (images uint8 HWC camera frames) -> global condition (B, cond_dim).

        Camera frames are cropped to the camera's region of interest and resized (``image_cache.prepare_images``);
        ``prepared``: the images are the dataset's, prepared once at load. Training passes random crop offsets,
        noise for the normalised low-dim observations and colour-jitter factors."""
        to, ti = self.cfg.horizon.n_obs_steps, self.cfg.image_steps
        steps, tail = [], []  # features per observation step (B, To, d); image features of fewer steps (B, ti, d)
        for key in self.lowdim_keys:
            x = self.normalizer.normalize(key, obs[key][:, :to].float())
            steps.append(x if lowdim_noise is None else x + lowdim_noise[key].to(x.device))
        for key in self.image_keys:
            camera, size = key[: -len("_image")], self.cfg.obs.image_size
            img = obs[key][:, to - ti:to]
            img = resize_images(img, size) if prepared else prepare_images(img, self.cfg.obs.rois.get(camera), size, camera)
            b = img.shape[0]
            x = img.reshape(b * ti, *img.shape[2:]).permute(0, 3, 1, 2).float()  # channels-last memory
            x = crop(x, self.cfg.obs.crop_size, None if crop_offsets is None else crop_offsets[key].to(x.device))
            if jitter is not None:
                x = color_jitter(x, jitter[key].repeat_interleave(ti, 0))
            (steps if ti == to else tail).append(self._inference(key, self.encoders[key], x.device)(x).reshape(b, ti, -1))
        b = (steps or tail)[0].shape[0]
        return torch.cat([torch.cat(f, -1).reshape(b, -1) for f in (steps, tail) if f], -1)

    def _as_tensors(self, obs: dict) -> dict[str, torch.Tensor]:
        device = self.device
        out = {}
        for key in self.lowdim_keys + self.image_keys:
            if key not in obs:
                raise UserError(f"observation is missing key {key!r} (policy needs: {', '.join(self.lowdim_keys + self.image_keys)})")
            x = torch.as_tensor(np.asarray(obs[key]) if not torch.is_tensor(obs[key]) else obs[key], device=device)
            if key in self.lowdim_keys and not torch.isfinite(x.float()).all():
                raise NonFiniteError(f"observation {key!r} contains NaN or Inf; refusing to predict (check the sensor/driver)")
            out[key] = x
        return out

    def _current_joints(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """joint_pos at the last observed step, (B, 1, n): the origin of relative actions."""
        return obs["joint_pos"][:, self.cfg.horizon.n_obs_steps - 1:self.cfg.horizon.n_obs_steps].float()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_sampler(self, inference_steps: int, timestep_spacing: str) -> None:
        """Use DDIM with these steps from now on; the config (and so a checkpoint saved from it) says so."""
        scheduler = dataclasses.replace(self.cfg.scheduler, inference_steps=inference_steps,
                                        timestep_spacing=timestep_spacing)
        self.cfg = dataclasses.replace(self.cfg, scheduler=scheduler)
        self.infer_scheduler = DDIMScheduler.from_config(self.infer_scheduler.config, timestep_spacing=timestep_spacing)
        self.inference_steps = inference_steps

    # -- training --------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                     shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Weighted denoising MSE (noise or clean actions, per ``scheduler.prediction_type``) on a batch
        (obs keys, ``action`` (B, Tp, Da), optional ``weight`` (B,)).

        Noise, diffusion steps, crop offsets and observation noise are drawn on the CPU from ``generator`` for the whole
        global batch (``shard`` = (rank, world size)) and sliced per rank, so DDP over N processes
        computes exactly what one process does with the full batch.
        """
        rank, world = shard
        actions = batch[self.action_key].float()
        if self.cfg.obs.relative_actions:
            actions = actions - self._current_joints(batch)
        actions = self.normalizer.normalize(self.action_key, actions)
        b = actions.shape[0]
        n = b * world
        noise = torch.randn((n, *actions.shape[1:]), generator=generator)[rank::world].to(actions.device)
        steps = torch.randint(0, self.train_scheduler.config.num_train_timesteps, (n,), generator=generator)
        steps = steps[rank::world].to(actions.device)
        offsets = None
        if self.image_keys and self.cfg.obs.random_crop and self.training:
            ti = self.cfg.image_steps
            offsets = {k: random_crop_offsets(n * ti, self.cfg.obs.image_size, self.cfg.obs.crop_size, generator)
                       .reshape(n, ti, 2)[rank::world].reshape(b * ti, 2) for k in self.image_keys}
        obs_noise = None
        if self.cfg.obs.lowdim_noise > 0 and self.training:
            to = self.cfg.horizon.n_obs_steps
            obs_noise = {k: self.cfg.obs.lowdim_noise * torch.randn((n, to, batch[k].shape[-1]), generator=generator)[rank::world]
                         for k in self.lowdim_keys}
        jitter = None
        if self.image_keys and self.cfg.obs.color_jitter > 0 and self.training:
            jitter = {k: jitter_factors(n, self.cfg.obs.color_jitter, generator)[rank::world] for k in self.image_keys}
        cond = self.encode_obs(batch, offsets, obs_noise, jitter, prepared=True)
        noisy = self.train_scheduler.add_noise(actions, noise, steps)
        pred = self.unet(noisy, steps, cond)
        target = noise if self.cfg.scheduler.prediction_type == "epsilon" else actions
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2))
        weight = batch.get("weight")
        if weight is None:
            return per_sample.mean()
        return (per_sample * weight.to(per_sample)).sum() / weight.sum().clamp_min(1e-8)

    # -- inference -------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_action(self, obs: dict, generator: torch.Generator | None = None,
                       num_steps: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Obs history (B, To, ...) -> absolute joint targets (B, Tp, n); raises NonFiniteError, never returns NaN.

        ``noise`` (B, Tp, action dim): the standard-normal sample to denoise (default: drawn from ``generator``).

        The observations are encoded once and the FiLM parameters of all DDIM steps computed in one
        batched pass before the denoising loop, which then runs only the U-Net's convolutions.
        """
        tensors = self._as_tensors(obs)
        cond = self.encode_obs(tensors)
        b = cond.shape[0]
        scheduler = self.infer_scheduler
        scheduler.set_timesteps(num_steps or self.inference_steps)
        films = self.unet.films(scheduler.timesteps.to(cond.device), cond)
        shape = (b, self.cfg.horizon.horizon, self.shape.model_action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator)
        x = self.cfg.scheduler.init_noise_scale * noise.to(cond.device)
        denoise = self._inference("unet", FilmStep(self.unet), cond.device)
        for t, film in zip(scheduler.timesteps, films):
            x = scheduler.step(denoise(x, film), t, x).prev_sample
        action = self.normalizer.unnormalize(self.action_key, x)
        if self.cfg.obs.relative_actions:
            action = action + self._current_joints(tensors)
        if not torch.isfinite(action).all():
            raise NonFiniteError("diffusion policy produced NaN/Inf actions (corrupt weights or observations "
                                 "far outside the training range); not sending them")
        if self.cfg.obs.action_space == "ee":  # finite targets give finite joints
            action = self._joint_targets(action, self._current_joints(tensors))
        return action

    def _joint_targets(self, ee_targets: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """End-effector targets (B, Tp, dim) -> joint targets (B, Tp, n) by IK from the current joints (B, 1, n)."""
        if self.ee_actions is None:
            from robot_stack.policies.diffusion.ee_actions import EndEffectorActions
            from robot_stack.profile import load_profile

            self.ee_actions = EndEffectorActions(load_profile(self.shape.robot))
        out = [self.ee_actions.decode(t, q[0]) for t, q in zip(ee_targets.cpu().numpy(), joints.cpu().numpy())]
        return torch.as_tensor(np.stack(out), device=ee_targets.device)

    def _inference(self, part: str, module: nn.Module, device: torch.device):
        """``module`` (an image encoder, or the U-Net step ``(x, films) -> output``) on the inference runtime;
        itself while training.

        At batch 1 these networks are small, and PyTorch's per-operator overhead and its convolutions on
        small inputs (a 16-step time axis, 84x84 images) dominate: ONNX Runtime runs them several times
        faster than eager PyTorch or a TorchScript trace on this CPU (docs/diffusion.md). ``torch.compile``
        and ``torch.export`` were slower than the trace here.
        """
        if self.training or self.runtime == "eager":
            return module
        name = choose_runtime(self.runtime, device)
        if (part, name) not in self._compiled:
            self._compiled[part, name] = Compiled(module, name)
        return self._compiled[part, name]

    def reset(self) -> None:
        """Forget the observation history (call at the start of every episode)."""
        self._history.clear()

    def act(self, obs: dict, generator: torch.Generator | None = None) -> np.ndarray:
        """Newest single-step obs (no batch/time axes) -> the Ta actions to execute now, (Ta, Da) numpy."""
        self._history.append({k: np.asarray(obs[k]) for k in self.lowdim_keys + self.image_keys if k in obs})
        while len(self._history) < self._history.maxlen:
            self._history.appendleft(self._history[0])
        stacked = {k: np.stack([h[k] for h in self._history])[None] for k in self._history[-1]}
        actions = self.predict_action(stacked, generator)[0]
        start = self.cfg.horizon.n_obs_steps - 1
        return actions[start:start + self.cfg.horizon.n_action_steps].cpu().numpy()
