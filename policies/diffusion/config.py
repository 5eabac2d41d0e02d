"""Typed configuration of a diffusion policy (Chi et al., RSS 2023) and of its training run.

``DiffusionConfig`` holds everything a user chooses (observation keys, horizons, model sizes,
noise scheduler, optimiser, EMA, training loop); ``ShapeMeta`` holds what the data decides
(robot, joint names, per-key dimensions) and is filled in from the dataset when training starts.
Both are stored as JSON in every checkpoint. ``preset(name)`` gives the defaults per task type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from robot_stack.typed_config import field

LOWDIM_KEYS = ("timestamp", "joint_pos", "joint_vel", "ee_pose", "object_state")
IMAGE_SUFFIX = "_image"


@dataclass(frozen=True)
class ObsConfig:
    lowdim_keys: tuple[str, ...] = ("joint_pos",)
    """Low-dimensional observation arrays (``data/<key>`` in the store), concatenated in this order."""
    image_keys: tuple[str, ...] = ()
    """Camera arrays ``<camera>_image`` (uint8 HxWx3); each camera gets its own encoder."""
    image_size: tuple[int, int] = (96, 96)
    """(height, width) every image is resized to (in the dataset and at inference alike)."""
    crop_size: tuple[int, int] = (84, 84)
    """(height, width) of the crop: random while training, centred at inference."""
    random_crop: bool = True
    rois: dict[str, tuple[int, int, int, int]] = dataclasses.field(default_factory=dict)
    """Per camera, the region of interest ``[x, y, width, height]`` cropped before resizing: the robot profile's
    ``cameras[].roi``, copied in by ``train`` and checked against the profile wherever the policy is loaded."""
    image_steps: int = 0
    """Observation steps at which images are encoded: the last ``image_steps`` of the To steps (0: all To).
    1 halves the image encoders' work at To=2; low-dim keys keep all To steps."""
    color_jitter: float = 0.0
    """Training augmentation: brightness, contrast, saturation and a gain per colour channel, each drawn from
    [1 - x, 1 + x] per image (one draw for a sample's steps of one camera); 0: off."""
    lowdim_noise: float = 0.0
    """Std of Gaussian noise added to the normalised ([-1, 1]) low-dim observations in training: a policy
    that has seen slightly perturbed states generalises to new object poses and recovers from small errors."""
    action_key: str = "action"
    relative_actions: bool = False
    """Predict the action sequence relative to the current ``joint_pos`` (the last observed step) instead
    of as absolute targets; the policy still returns absolute targets. Needs ``joint_pos`` in lowdim_keys."""
    action_space: Literal["joint", "ee"] = "joint"
    """What the policy predicts: ``joint`` targets as recorded, or ``ee``: end-effector targets (position
    + 6-D rotation + gripper) derived from them by forward kinematics and turned back into joint targets
    by IK from the current ``joint_pos`` (needs it in lowdim_keys). The policy returns joint targets either way."""

    def __post_init__(self) -> None:
        if self.relative_actions and "joint_pos" not in self.lowdim_keys:
            raise ValueError("relative_actions needs joint_pos in lowdim_keys")
        if self.action_space == "ee" and ("joint_pos" not in self.lowdim_keys or self.relative_actions):
            raise ValueError("action_space ee needs joint_pos in lowdim_keys and relative_actions false")
        if not self.lowdim_keys and not self.image_keys:
            raise ValueError("give at least one of lowdim_keys, image_keys")
        for key in self.image_keys:
            if not key.endswith(IMAGE_SUFFIX):
                raise ValueError(f"image_keys: {key!r} must be '<camera>{IMAGE_SUFFIX}'")
        if any(c > s for c, s in zip(self.crop_size, self.image_size)):
            raise ValueError(f"crop_size {self.crop_size} must fit in image_size {self.image_size}")
        if self.lowdim_noise < 0:
            raise ValueError("lowdim_noise must be >= 0")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError("color_jitter must be in [0, 1)")
        if self.image_steps < 0:
            raise ValueError("image_steps must be >= 0 (0: every observation step)")
        unknown = sorted(set(self.rois) - set(self.cameras))
        if unknown:
            raise ValueError(f"rois: camera {unknown[0]!r} is not observed (image_keys: {', '.join(self.image_keys) or 'none'})")

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras observed: ``image_keys`` without their suffix."""
        return tuple(k[: -len(IMAGE_SUFFIX)] for k in self.image_keys)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.lowdim_keys + self.image_keys


@dataclass(frozen=True)
class HorizonConfig:
    n_obs_steps: int = 2
    """To: observation steps the policy conditions on."""
    horizon: int = 16
    """Tp: action steps predicted per inference."""
    n_action_steps: int = 8
    """Ta: action steps executed before re-planning."""

    def __post_init__(self) -> None:
        if not 1 <= self.n_obs_steps <= self.horizon:
            raise ValueError("need 1 <= n_obs_steps <= horizon")
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            raise ValueError("need 1 <= n_action_steps <= horizon - n_obs_steps + 1")


@dataclass(frozen=True)
class VisionConfig:
    """ResNet-18 layout (four stages of two basic blocks) with GroupNorm in place of BatchNorm."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    """Channels per stage; ResNet-18 proper is (64, 128, 256, 512)."""
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    group_size: int = 16
    """Channels per GroupNorm group (diffusion_policy uses channels // 16 groups)."""
    pool: Literal["spatial_softmax", "avg"] = "spatial_softmax"
    num_keypoints: int = 32
    feature_dim: int = 64
    """Output features per camera per observation step."""

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError("widths and blocks need the same (non-zero) length")
        if any(w % self.group_size for w in self.widths):
            raise ValueError(f"every width must be a multiple of group_size ({self.group_size})")


@dataclass(frozen=True)
class UNetConfig:
    """1-D temporal U-Net over the action sequence, FiLM-conditioned on step and observations."""

    down_dims: tuple[int, ...] = (64, 128, 256)
    """Channels per level; the paper uses (256, 512, 1024) on a GPU, this default fits a 2-core CPU budget."""
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    cond_predict_scale: bool = True
    """FiLM predicts a scale and a bias (True) or only a bias."""

    def __post_init__(self) -> None:
        if not self.down_dims or any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"down_dims must be non-empty multiples of n_groups ({self.n_groups})")


@dataclass(frozen=True)
class SchedulerConfig:
    train_steps: int = 100
    """DDPM diffusion steps in training."""
    inference_steps: int = 10
    """DDIM steps at inference (8-16 is the useful range with ``leading`` spacing; 1-3 with ``trailing``
    and x0 prediction)."""
    timestep_spacing: Literal["leading", "trailing"] = "leading"
    """Which diffusion steps DDIM visits: ``leading`` (diffusers' default, the paper's) ends at step 0 and,
    with few steps, starts far below the last training step (1 step: t=0, as if the noise were a clean
    sample); ``trailing`` starts at the last step (Lin et al. 2024), so that 1-3 steps still denoise
    from pure noise."""
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    clip_sample: bool = True
    init_noise_scale: float = 1.0
    """Scale of the Gaussian noise inference starts denoising from: 1 samples the learnt action
    distribution (the paper); smaller values favour its modes (0: deterministic DDIM)."""

    def __post_init__(self) -> None:
        if not 1 <= self.inference_steps <= self.train_steps:
            raise ValueError("need 1 <= inference_steps <= train_steps")
        if not 0.0 <= self.init_noise_scale <= 1.0:
            raise ValueError("init_noise_scale must be in [0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    grad_clip: float = 0.0
    """Clip the gradient norm to this value (0: no clipping)."""


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = True
    power: float = 0.75
    inv_gamma: float = 1.0
    min_decay: float = 0.0
    max_decay: float = 0.9999


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    batch_size: int = 64
    """Global batch size (split evenly over DDP processes)."""
    val_ratio: float = 0.1
    """Fraction of episodes held out for validation (at least one when there are two or more)."""
    val_every: int = 500
    ckpt_every: int = 2000
    log_every: int = 50
    num_workers: int = 0
    seed: int = 0
    intervention_weight: float = 2.0
    """Loss weight of intervention samples when fine-tuning (HG-DAgger style)."""
    eval_every: int = 0
    """Steps between rollouts of the EMA policy on the in-process twin (0: none); ``checkpoints/best`` then
    keeps the highest success rate instead of the lowest validation loss."""
    eval_episodes: int = 10
    eval_task: str = ""
    """Twin task to evaluate on ('': the task the demo store was recorded on)."""
    eval_seed: int = 500
    """First episode seed of every periodic evaluation (apart from the demos' and ``robot-stack eval``'s 1000+)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """``bf16``: autocast matmuls and convolutions to bfloat16 (CPUs with AVX512-BF16 or AMX, recent GPUs);
    weights, optimiser and loss stay fp32."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.eval_every < 0 or self.eval_episodes < 1:
            raise ValueError("eval_every must be >= 0 and eval_episodes >= 1")
        if not 0.0 <= self.val_ratio < 1.0:
            raise ValueError("val_ratio must be in [0, 1)")


@dataclass(frozen=True)
class DiffusionConfig:
    obs: ObsConfig = ObsConfig()
    horizon: HorizonConfig = HorizonConfig()
    vision: VisionConfig = VisionConfig()
    unet: UNetConfig = UNetConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    optim: OptimConfig = OptimConfig()
    ema: EMAConfig = EMAConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        levels = len(self.unet.down_dims) - 1
        if self.obs.image_steps > self.horizon.n_obs_steps:
            raise ValueError(f"obs.image_steps ({self.obs.image_steps}) must be at most horizon.n_obs_steps "
                             f"({self.horizon.n_obs_steps})")
        if self.horizon.horizon % (2**levels):
            raise ValueError(f"horizon.horizon ({self.horizon.horizon}) must be divisible by 2**{levels} "
                             f"(one halving per extra unet.down_dims level)")

    @property
    def image_steps(self) -> int:
        """Observation steps whose images are encoded (the last ones of To)."""
        return self.obs.image_steps or self.horizon.n_obs_steps


@dataclass(frozen=True)
class ShapeMeta:
    """What the data fixes: the robot, joint order and the dimension of every key."""

    robot: str = field("robot profile name the data was recorded with")
    joint_names: tuple[str, ...] = field("joint order of joint_pos and action (arm then gripper)")
    lowdim_dims: dict[str, int] = field("feature size of each low-dim observation key")
    action_dim: int = field("action size")
    image_keys: tuple[str, ...] = ()
    predicted_dim: int = 0
    """Size of what the model predicts when it is not the action itself (``obs.action_space: ee``); 0: action_dim."""

    @property
    def model_action_dim(self) -> int:
        return self.predicted_dim or self.action_dim

    def signature(self) -> dict[str, object]:
        """The fields a checkpoint must agree on with the robot/environment it is deployed on."""
        sig: dict[str, object] = {"robot": self.robot, "joint_names": list(self.joint_names),
                                  "action_dim": self.action_dim}
        sig.update({f"obs.{k}": d for k, d in self.lowdim_dims.items()})
        sig.update({f"obs.{k}": "image" for k in self.image_keys})
        return sig


def preset(name: str) -> DiffusionConfig:
    """Defaults per task type: ``lowdim`` (state only), ``image`` (cameras + joints), ``tiny`` (tests/CI)."""
    if name == "lowdim":
        return DiffusionConfig(obs=ObsConfig(lowdim_keys=("joint_pos", "object_state")), train=TrainConfig(batch_size=256))
    if name == "image":
        return DiffusionConfig(obs=ObsConfig(lowdim_keys=("joint_pos",), image_keys=("front_image", "wrist_image")))
    if name == "tiny":
        return DiffusionConfig(
            obs=ObsConfig(image_size=(32, 32), crop_size=(28, 28)),
            vision=VisionConfig(widths=(16, 16, 32, 32), blocks=(1, 1, 1, 1), group_size=8, feature_dim=16,
                                num_keypoints=8),
            unet=UNetConfig(down_dims=(32, 64), kernel_size=3, n_groups=8, step_embed_dim=32),
            optim=OptimConfig(lr=3e-3, warmup_steps=10),
            train=TrainConfig(steps=200, batch_size=32, val_every=100, ckpt_every=100, log_every=10),
        )
    raise ValueError(f"unknown preset {name!r} (use one of {', '.join(PRESETS)})")


PRESETS = ("lowdim", "image", "tiny")


def replace(cfg: DiffusionConfig, **sections: dict) -> DiffusionConfig:
    """``cfg`` with some fields of some sections replaced: ``replace(cfg, train={"steps": 10})``."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items() if values}
    return dataclasses.replace(cfg, **changes)
