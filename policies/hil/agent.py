"""SAC in the RLPD recipe (Ball et al. 2023), as HIL-SERL's learner uses it.

* a tanh-squashed Gaussian actor; an ensemble of ``n_critics`` Q-networks evaluated as one batched
  network (``EnsembleLinear``: one ``baddbmm`` per layer for the whole ensemble) with LayerNorm;
* the TD target takes the min over a random subset of ``critic_subsample`` target critics (optionally
  clipped to known return bounds), the actor maximises the ensemble min (or mean, as RLPD does with
  10 critics); target critics follow by Polyak averaging;
* the temperature is tuned to a target entropy (default ``-act_dim / 2``);
* optional discrete gripper critic (HIL-SERL): a double-DQN head over close/stay/open whose reward
  includes the toggle penalty; the actor then outputs only the arm joints;
* optional conv encoder for image observations (DrQ style: trained by the critic, used detached by
  the actor, random-shift augmentation).

The networks, the temperature and every batch live on one torch device (``device``: the learner may
use a GPU, see :func:`resolve_device`); what leaves the agent is on the CPU: actions and
``actor_state()`` as numpy arrays, checkpoints as CPU tensors (a GPU learner's checkpoint loads on a
CPU-only machine).

Checkpoints are a folder with ``agent.safetensors`` (every tensor incl. optimiser moments) and
``agent.json`` (config, sizes, step, sha256 of the weights); nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robot_stack.checkpoint_meta import read_meta, sha256_file
from robot_stack.errors import UserError
from robot_stack.policies.hil.buffer import to_tensors
from robot_stack.devices import resolve_device as _resolve_device
from robot_stack.policies.hil.config import AgentConfig
from robot_stack.typed_config import from_dict, to_dict

FORMAT = "robot_stack.hil_sac"
VERSION = 1
WEIGHTS, META = "agent.safetensors", "agent.json"
GRIPPER_COMMANDS = np.array([-1.0, 0.0, 1.0], np.float32)  # close, stay, open


def resolve_device(name: str | torch.device) -> torch.device:
    """The learner's torch device from a config name (``robot_stack.devices``)."""
    return _resolve_device(name, what="hil device", cpu="device: cpu")


# -- networks ----------------------------------------------------------------------------------------
class EnsembleLinear(nn.Module):
    """``n`` independent linear layers applied to (n, B, in) at once."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(n, 1, d_out))
        bound = 1 / math.sqrt(d_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, d))
        self.bias = nn.Parameter(torch.zeros(n, 1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class Ensemble(nn.Module):
    """``n`` MLPs (in -> hidden... -> out) evaluated together: (B, in) -> (n, B, out)."""

    def __init__(self, n: int, d_in: int, hidden: tuple[int, ...], d_out: int, layer_norm: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [EnsembleLinear(n, d_in, h)] + ([EnsembleLayerNorm(n, h)] if layer_norm else []) + [nn.ReLU()]
            d_in = h
        layers.append(EnsembleLinear(n, d_in, d_out))
        self.net = nn.Sequential(*layers)
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(0).expand(self.n, *x.shape))


def mlp(d_in: int, hidden: tuple[int, ...], d_out: int, layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [nn.ReLU()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Images flattened at the end of the observation -> state features + per-image conv features."""

    def __init__(self, state_dim: int, n_images: int, shape: tuple[int, int, int], channels: tuple[int, ...],
                 feature_dim: int):
        super().__init__()
        self.state_dim, self.n_images, self.shape = state_dim, n_images, tuple(shape)
        layers, c = [], shape[2]
        for i, ch in enumerate(channels):
            layers += [nn.Conv2d(c, ch, 3, 2 if i == 0 else 1), nn.ReLU()]
            c = ch
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, shape[2], shape[0], shape[1])).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.out_dim = state_dim + n_images * feature_dim

    def forward(self, obs: torch.Tensor, augment: bool = False) -> torch.Tensor:
        b = obs.shape[0]
        h, w, c = self.shape
        images = obs[:, self.state_dim:].reshape(b * self.n_images, h, w, c).permute(0, 3, 1, 2) / 255.0
        if augment:
            images = random_shift(images, 4)
        feats = self.head(self.conv(images).reshape(b * self.n_images, -1)).reshape(b, -1)
        return torch.cat([obs[:, : self.state_dim], feats], 1)


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` and crop back at a random offset per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="replicate")
    dev = images.device
    top = torch.randint(0, 2 * pad + 1, (n,), device=dev)
    left = torch.randint(0, 2 * pad + 1, (n,), device=dev)
    rows = (top[:, None] + torch.arange(h, device=dev))[:, :, None]
    cols = (left[:, None] + torch.arange(w, device=dev))[:, None, :]
    return padded.permute(0, 2, 3, 1)[torch.arange(n, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)


class Actor(nn.Module):
    def __init__(self, d_in: int, hidden: tuple[int, ...], act_dim: int, log_std_range: tuple[float, float]):
        super().__init__()
        self.net = mlp(d_in, hidden, 2 * act_dim)
        self.log_std_range = log_std_range

    def forward(self, x: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (action in [-1, 1], log-probability)."""
        mean, log_std = self.net(x).chunk(2, -1)
        lo, hi = self.log_std_range
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1)
        if deterministic:
            return torch.tanh(mean), torch.zeros(x.shape[0], device=x.device)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)  # tanh correction
        return torch.tanh(u), log_prob


# -- the agent ---------------------------------------------------------------------------------------
class SACAgent:
    def __init__(self, config: AgentConfig, obs_dim: int, act_dim: int, state_dim: int | None = None,
                 seed: int | None = None, device: str | torch.device = "cpu"):
        """``state_dim``: leading non-image features of the observation (``conv`` encoder; default all).
        ``device``: where the networks learn (a name for :func:`resolve_device`; the actor's side uses cpu)."""
        self.device = resolve_device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.config, self.obs_dim, self.act_dim = config, int(obs_dim), int(act_dim)
        self.state_dim = int(state_dim if state_dim is not None else obs_dim)
        c = config
        self.cont_dim = act_dim - 1 if c.gripper_critic else act_dim
        if self.cont_dim < 1:
            raise UserError("the agent needs at least one continuous action besides the gripper")
        self.encoder: ConvEncoder | None = None
        self.target_encoder: ConvEncoder | None = None
        feat = obs_dim
        if c.encoder == "conv":
            n_img = (obs_dim - self.state_dim) // int(np.prod(c.image_shape))
            if n_img < 1 or self.state_dim + n_img * int(np.prod(c.image_shape)) != obs_dim:
                raise UserError(f"conv encoder: observation of {obs_dim} features does not hold {self.state_dim} "
                                f"state features plus whole {tuple(c.image_shape)} images")
            self.encoder = ConvEncoder(self.state_dim, n_img, c.image_shape, c.conv_channels, c.image_feature_dim)
            self.target_encoder = ConvEncoder(self.state_dim, n_img, c.image_shape, c.conv_channels, c.image_feature_dim)
            self.target_encoder.load_state_dict(self.encoder.state_dict())
            feat = self.encoder.out_dim
        self.actor = Actor(feat, c.hidden_dims, self.cont_dim, c.log_std_range)
        self.critic = Ensemble(c.n_critics, feat + self.cont_dim, c.hidden_dims, 1, c.critic_layer_norm)
        self.target = Ensemble(c.n_critics, feat + self.cont_dim, c.hidden_dims, 1, c.critic_layer_norm)
        self.target.load_state_dict(self.critic.state_dict())
        self.gripper: Ensemble | None = None
        self.gripper_target: Ensemble | None = None
        if c.gripper_critic:
            self.gripper = Ensemble(2, feat, c.hidden_dims, 3, c.critic_layer_norm)
            self.gripper_target = Ensemble(2, feat, c.hidden_dims, 3, c.critic_layer_norm)
            self.gripper_target.load_state_dict(self.gripper.state_dict())
        for mod in self._modules().values():  # initialised on the CPU (same weights on every device), then moved
            mod.to(self.device)
        critic_params = list(self.critic.parameters()) + (list(self.encoder.parameters()) if self.encoder else [])
        if self.gripper is not None:
            critic_params += list(self.gripper.parameters())
        self.log_alpha = torch.tensor(math.log(c.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = c.target_entropy if c.target_entropy is not None else -self.cont_dim / 2
        self.optimizers = {
            "actor": torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr),
            "critic": torch.optim.Adam(critic_params, lr=c.critic_lr),
            "temperature": torch.optim.Adam([self.log_alpha], lr=c.temperature_lr),
        }
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    # -- acting ---------------------------------------------------------------------------------
    def _features(self, obs: torch.Tensor, target: bool = False, augment: bool = False) -> torch.Tensor:
        encoder = self.target_encoder if target else self.encoder
        return obs if encoder is None else encoder(obs, augment)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Observation (obs_dim,) or (B, obs_dim) -> normalised action(s) in [-1, 1] (float32)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.ndim == 1
        x = x.reshape(-1, self.obs_dim)
        feats = self._features(x)
        action, _ = self.actor(feats, deterministic)
        out = action.cpu().numpy()
        if self.gripper is not None:
            command = self.gripper(feats).mean(0).argmax(-1).cpu().numpy()
            if not deterministic:
                explore = self.rng.random(len(command)) < self.config.gripper_epsilon
                command = np.where(explore, self.rng.integers(0, 3, len(command)), command)
            out = np.concatenate([out, GRIPPER_COMMANDS[command][:, None]], 1)
        out = out.astype(np.float32)
        return out[0] if single else out

    @property
    def temperature(self) -> float:
        return self.log_alpha.exp().item()

    # -- learning -------------------------------------------------------------------------------
    def update(self, batch: dict[str, np.ndarray], update_actor: bool = True) -> dict[str, float]:
        """One critic step on ``batch`` (and, with ``update_actor``, one actor and temperature step).

        RLPD's update-to-data ratio G is G calls per environment step with ``update_actor`` on the last.
        ``batch``: numpy arrays as ``mixed_batch`` draws them (moved to the agent's device here)."""
        c = self.config
        t = to_tensors(batch, self.device)
        obs, next_obs, action, reward, done = t["obs"], t["next_obs"], t["action"], t["reward"], t["done"]
        cont = action[:, : self.cont_dim]
        augment = self.encoder is not None
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_feats = self._features(next_obs, augment=augment)
            next_action, next_logp = self.actor(next_feats)
            target_feats = self._features(next_obs, target=True, augment=augment)
            q_next = self.target(torch.cat([target_feats, next_action], -1)).squeeze(-1)
            subset = self.rng.choice(c.n_critics, c.critic_subsample, replace=False)  # drawn always: same stream
            if c.critic_subsample < c.n_critics:
                q_next = q_next[torch.as_tensor(subset, device=self.device)]
            q_next = q_next.min(0).values
            if c.backup_entropy:
                q_next = q_next - alpha * next_logp
            target_q = reward + c.gamma * (1 - done) * q_next
            if c.return_bounds is not None:
                target_q = target_q.clamp(*c.return_bounds)
        feats = self._features(obs, augment=augment)
        q = self.critic(torch.cat([feats, cont], -1)).squeeze(-1)
        critic_loss = ((q - target_q) ** 2).mean()
        info = {"critic_loss": critic_loss.detach(), "q": q.detach().mean(), "target_q": target_q.mean()}
        loss = critic_loss
        if self.gripper is not None:
            g_loss = self._gripper_loss(feats, next_feats, target_feats, action, reward, done, t)
            loss = loss + g_loss
            info["gripper_loss"] = g_loss.detach()
        self._step("critic", loss)
        self._polyak()
        if update_actor:
            info.update(self._update_actor(feats.detach()))
        self.steps += 1
        return dict(zip(info, torch.stack(list(info.values())).tolist()))  # one device sync per update

    def _gripper_loss(self, feats, next_feats, target_feats, action, reward, done, t) -> torch.Tensor:
        assert self.gripper is not None and self.gripper_target is not None
        c = self.config
        index = (torch.round(action[:, -1]).clamp(-1, 1) + 1).long()
        with torch.no_grad():
            best = self.gripper(next_feats).mean(0).argmax(-1)  # double DQN: online argmax, target value
            q_next = self.gripper_target(target_feats).min(0).values.gather(1, best[:, None]).squeeze(1)
            penalty = t["penalty"] if "penalty" in t else torch.zeros_like(reward)
            target = reward + penalty + c.gamma * (1 - done) * q_next
        q = self.gripper(feats).gather(2, index[None, :, None].expand(2, -1, 1)).squeeze(-1)
        return ((q - target) ** 2).mean()

    def _update_actor(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        action, logp = self.actor(feats)
        for p in self.critic.parameters():
            p.requires_grad_(False)
        qs = self.critic(torch.cat([feats, action], -1)).squeeze(-1)
        q = qs.mean(0) if self.config.actor_q == "mean" else qs.min(0).values
        for p in self.critic.parameters():
            p.requires_grad_(True)
        alpha = self.log_alpha.exp()
        actor_loss = (alpha.detach() * logp - q).mean()
        self._step("actor", actor_loss)
        entropy = -logp.detach().mean()
        temp_loss = alpha * (entropy - self.target_entropy)
        self._step("temperature", temp_loss)
        return {"actor_loss": actor_loss.detach(), "entropy": entropy, "temperature": alpha.detach()}

    def _step(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.config.grad_clip)
        opt.step()

    @torch.no_grad()
    def _polyak(self) -> None:
        tau = self.config.tau
        pairs = [(self.target, self.critic), (self.target_encoder, self.encoder), (self.gripper_target, self.gripper)]
        for target, online in pairs:
            if target is None or online is None:
                continue
            tp, op = list(target.parameters()), list(online.parameters())
            torch._foreach_mul_(tp, 1 - tau)
            torch._foreach_add_(tp, op, alpha=tau)

    # -- shipping the actor -----------------------------------------------------------------------
    def _actor_modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"actor": self.actor}
        if self.encoder is not None:
            mods["encoder"] = self.encoder
        if self.gripper is not None:
            mods["gripper"] = self.gripper
        return mods

    def actor_state(self) -> dict[str, np.ndarray]:
        """What acting needs (actor, encoder, gripper critic) as flat ``{name: float32 array}``."""
        return {f"{m}.{k}": v.detach().cpu().numpy().copy()
                for m, mod in self._actor_modules().items() for k, v in mod.state_dict().items()}

    def load_actor_state(self, state: dict[str, np.ndarray]) -> None:
        """Load ``actor_state()`` output; the names and shapes must match exactly (one-line error)."""
        for m, mod in self._actor_modules().items():
            own = mod.state_dict()
            sub = {k[len(m) + 1:]: v for k, v in state.items() if k.startswith(m + ".")}
            if set(sub) != set(own):
                raise UserError(f"actor weights do not fit this agent ({m}: expected {len(own)} tensors, got {len(sub)})")
            for k, v in sub.items():
                if tuple(np.shape(v)) != tuple(own[k].shape):
                    raise UserError(f"actor weights do not fit this agent ({m}.{k}: shape {tuple(np.shape(v))}, "
                                    f"expected {tuple(own[k].shape)})")
            mod.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in sub.items()})
        extra = [k for k in state if k.split(".", 1)[0] not in self._actor_modules()]
        if extra:
            raise UserError(f"actor weights do not fit this agent (unexpected {extra[0]!r})")

    # -- checkpoints ----------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        mods = {"actor": self.actor, "critic": self.critic, "target": self.target, "encoder": self.encoder,
                "target_encoder": self.target_encoder, "gripper": self.gripper, "gripper_target": self.gripper_target}
        return {k: v for k, v in mods.items() if v is not None}

    def save(self, path: str | Path) -> Path:
        """Write the full learner state to the folder ``path`` (safetensors + JSON, each file atomic)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"{m}.{k}": v.detach().cpu().contiguous() for m, mod in self._modules().items()
                   for k, v in mod.state_dict().items()}
        tensors["log_alpha"] = self.log_alpha.detach().cpu().clone()
        for name, opt in self.optimizers.items():
            for idx, slots in opt.state_dict()["state"].items():
                for slot, value in slots.items():
                    tensors[f"optim.{name}.{idx}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tmp = folder / (WEIGHTS + ".partial")
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        tmp.replace(folder / WEIGHTS)
        meta = {"format": FORMAT, "version": VERSION, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "state_dim": self.state_dim, "steps": self.steps, "config": to_dict(self.config),
                "sha256": sha256_file(folder / WEIGHTS)}
        tmp = folder / (META + ".partial")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(folder / META)
        return folder

    @staticmethod
    def read_meta(path: str | Path) -> dict:
        return read_meta(Path(path) / META, "RL agent", FORMAT, VERSION)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> SACAgent:
        """The agent saved in ``path`` on ``device`` (the CPU unless asked; checkpoints hold CPU tensors)."""
        meta = cls.read_meta(path)
        config = from_dict(AgentConfig, meta["config"], f"{path}: config")
        agent = cls(config, meta["obs_dim"], meta["act_dim"], meta.get("state_dim"), device=device)
        agent.load(path)
        return agent

    def load(self, path: str | Path) -> None:
        """Load a checkpoint written by ``save`` into this agent (sizes must match)."""
        folder = Path(path)
        meta = self.read_meta(folder)
        if (meta["obs_dim"], meta["act_dim"]) != (self.obs_dim, self.act_dim):
            raise UserError(f"{folder}: checkpoint is for obs_dim {meta['obs_dim']}, act_dim {meta['act_dim']}; "
                            f"this agent has {self.obs_dim}, {self.act_dim}")
        weights = folder / WEIGHTS
        if not weights.is_file() or sha256_file(weights) != meta.get("sha256"):
            raise UserError(f"{weights}: missing or does not match {META} (corrupt or modified); use another checkpoint")
        try:
            tensors = load_file(str(weights), device="cpu")  # copied onto this agent's device below
        except SafetensorError as err:
            raise UserError(f"{weights}: unreadable safetensors ({err})") from None
        for m, mod in self._modules().items():
            sub = {k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".")}
            try:
                mod.load_state_dict(sub)
            except RuntimeError as err:
                raise UserError(f"{weights}: {m} does not fit this agent ({str(err).splitlines()[0]})") from None
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        for name, opt in self.optimizers.items():
            state: dict[int, dict[str, torch.Tensor]] = {}
            prefix = f"optim.{name}."
            for key, value in tensors.items():
                if key.startswith(prefix):
                    idx, slot = key[len(prefix):].split(".", 1)
                    state.setdefault(int(idx), {})[slot] = value
            if state:
                opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        self.steps = int(meta.get("steps", 0))

