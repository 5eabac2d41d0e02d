"""Typed configuration of human-in-the-loop RL (HIL-SERL style: RLPD/SAC + demos + interventions).

``AgentConfig`` is the learner's (networks, optimiser, RLPD ensemble, temperature, discrete gripper
critic), ``ActionConfig`` the action space the policy acts in (bounded joint deltas), ``HILConfig``
one training run (robot, task, budgets, demos, intervener, reward). Runs are YAML files under
``config/hil/`` loaded with :func:`load_hil_config` (``pick_cube_state`` is the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from robot_stack import resources
from robot_stack.devices import check_device_name
from robot_stack.typed_config import from_dict, load_yaml, to_dict


@dataclass(frozen=True)
class AgentConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of every critic."""
    n_critics: int = 2
    """Critic ensemble size (RLPD uses 10 with a subset of 2 for the target; HIL-SERL uses 2)."""
    critic_subsample: int = 2
    """Critics drawn at random for the target's min (RLPD); equal to ``n_critics`` means all."""
    critic_layer_norm: bool = True
    """LayerNorm after every hidden layer of the critics (RLPD)."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.97
    tau: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    utd_ratio: int = 2
    """Critic updates per environment step (the actor and temperature are updated once)."""
    demo_ratio: float = 0.5
    """Share of every batch drawn from the demo buffer (the rest from the online buffer)."""
    init_temperature: float = 0.01
    target_entropy: float | None = None
    """Entropy target of the temperature tuning; None: -act_dim / 2 (RLPD)."""
    backup_entropy: bool = False
    """Add the entropy bonus to the critic's target (SAC) or not (RLPD's default)."""
    actor_q: Literal["mean", "min"] = "min"
    """The actor maximises the ensemble's mean Q (RLPD, with 10 critics) or its min (SAC's clipped double Q,
    less prone to exploiting critic errors with 2 critics)."""
    return_bounds: tuple[float, float] | None = None
    """Bounds of the discounted return (e.g. [0, 1] for a 0/1 success reward that ends the episode);
    TD targets are clipped to them, so critic overestimation cannot run away. None: no clipping."""
    log_std_range: tuple[float, float] = (-10.0, 2.0)
    grad_clip: float = 0.0
    """Clip gradient norms to this value (0: no clipping)."""
    gripper_critic: bool = False
    """Discrete gripper (close/stay/open) with its own DQN critic (HIL-SERL); else a continuous gripper."""
    gripper_toggle_penalty: float = -0.02
    """Reward added for the gripper critic on every step that opens or closes the gripper."""
    gripper_epsilon: float = 0.05
    """Exploration: chance of a random gripper command when acting stochastically."""
    encoder: Literal["state", "conv"] = "state"
    """``state``: MLPs on the state vector; ``conv``: a small conv encoder on the image part too."""
    image_shape: tuple[int, int, int] = (64, 64, 3)
    """(H, W, C) of each image in the observation vector (``conv`` only)."""
    conv_channels: tuple[int, ...] = (32, 32, 32, 32)
    image_feature_dim: int = 64

    def __post_init__(self) -> None:
        if self.n_critics < 2:
            raise ValueError("n_critics must be at least 2")
        if not 1 <= self.critic_subsample <= self.n_critics:
            raise ValueError("critic_subsample must be in [1, n_critics]")
        if self.batch_size < 1 or self.utd_ratio < 1:
            raise ValueError("batch_size and utd_ratio must be positive")
        if not 0.0 <= self.demo_ratio <= 1.0:
            raise ValueError("demo_ratio must be in [0, 1]")
        if not 0.0 < self.gamma < 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("need 0 < gamma < 1 and 0 < tau <= 1")
        if self.init_temperature <= 0:
            raise ValueError("init_temperature must be positive")
        if not self.hidden_dims:
            raise ValueError("hidden_dims must not be empty")
        if self.return_bounds is not None and not self.return_bounds[0] < self.return_bounds[1]:
            raise ValueError("return_bounds must be [low, high] with low < high")


@dataclass(frozen=True)
class ActionConfig:
    max_joint_step: float = 0.1
    """rad: the largest arm joint move one policy step may command, relative to the measured position."""
    max_joint_steps: tuple[float, ...] = ()
    """Per arm joint overrides of ``max_joint_step`` (empty: the same for every joint)."""

    def __post_init__(self) -> None:
        if self.max_joint_step <= 0 or any(s <= 0 for s in self.max_joint_steps):
            raise ValueError("max_joint_step(s) must be positive")


@dataclass(frozen=True)
class IntervenerConfig:
    """The scripted intervener (the scripted expert standing in for a human at the teleop device)."""

    probability: float = 0.0
    """Chance per policy step of a takeover (0: none)."""
    steps: int = 20
    """Longest takeover, policy steps (it also ends when the episode does)."""
    budget_fraction: float = 1.0
    """Stop intervening after this fraction of the run's env steps."""
    patience: int = 10
    """Take over only once the task's progress has not improved for this many steps (a human steps in
    when the robot is stuck or going wrong); 0: at any step."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0 or not 0.0 <= self.budget_fraction <= 1.0:
            raise ValueError("probability and budget_fraction must be in [0, 1]")
        if self.steps < 1 or self.patience < 0:
            raise ValueError("steps must be positive, patience non-negative")


@dataclass(frozen=True)
class ObservationConfig:
    keys: tuple[str, ...] = ("joint_pos", "joint_vel", "ee_pose", "object_state")
    """Contract observation keys concatenated into the state vector (in this order)."""
    relative_object: bool = True
    """Append the object's position relative to the end effector (needs ee_pose and object_state)."""
    cameras: tuple[str, ...] = ()
    """Cameras whose images feed the ``conv`` encoder."""


@dataclass(frozen=True)
class HILConfig:
    robot: str = "so101"
    task: str = "pick_cube"
    seed: int = 0
    env_steps: int = 15000
    """Environment (policy) steps of the whole run."""
    warmup_steps: int = 500
    """Online steps before the first update (with demos the policy acts from the start)."""
    random_warmup: bool = False
    """Act uniformly at random during warmup (SAC from scratch) instead of with the policy."""
    demos: int = 10
    """Scripted-expert demo episodes collected into the demo buffer (successful ones only)."""
    reward: Literal["success", "classifier"] = "success"
    """Sparse task success from the twin, or a trained reward classifier's verdict."""
    classifier: str = ""
    """Checkpoint folder of the reward classifier (``reward: classifier``)."""
    classifier_threshold: float = 0.5
    terminate_on_success: bool = True
    buffer_capacity: int = 200000
    weights_period_s: float = 2.0
    """How often the learner ships actor weights to the actor (ROS path)."""
    eval_every: int = 0
    """Deterministic evaluation every this many env steps (0: none; the metrics are the training episodes)."""
    eval_episodes: int = 10
    torch_threads: int = 1
    """CPU threads of torch (acting, and learning on the CPU)."""
    device: str = "auto"
    """Where the learner's networks and batches live: ``auto`` (cuda when torch sees a GPU, else cpu),
    ``cpu``, ``cuda`` or ``cuda:<n>``. The actor always acts on the CPU with CPU weights."""
    agent: AgentConfig = AgentConfig()
    action: ActionConfig = ActionConfig()
    observation: ObservationConfig = ObservationConfig()
    intervener: IntervenerConfig = IntervenerConfig()

    def __post_init__(self) -> None:
        if self.env_steps < 1 or self.warmup_steps < 0 or self.demos < 0:
            raise ValueError("env_steps must be positive, warmup_steps and demos non-negative")
        if self.reward == "classifier" and not self.classifier:
            raise ValueError("reward: classifier needs classifier: <checkpoint folder>")
        if self.agent.encoder == "conv" and not self.observation.cameras:
            raise ValueError("agent.encoder: conv needs observation.cameras")
        check_device_name(self.device)


def load_hil_config(name_or_path: str = "pick_cube_state", **overrides: dict) -> HILConfig:
    """A shipped run config by name (``config/hil/<name>.yaml``) or a path, with section overrides.

    ``overrides`` replace top-level fields (``seed=1``) or fields of a section (``agent={"utd_ratio": 2}``).
    """
    path = resources.find_config("hil", name_or_path)
    data = load_yaml(path) or {}
    cfg = from_dict(HILConfig, data, str(path))
    return replace(cfg, **overrides) if overrides else cfg


def replace(cfg: HILConfig, **changes: object) -> HILConfig:
    """``cfg`` with top-level fields or section fields (given as dicts) replaced, re-validated."""
    data = to_dict(cfg)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = to_dict(value)
    return from_dict(HILConfig, data, "config")
