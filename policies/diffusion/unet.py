"""1-D temporal conditional U-Net with FiLM conditioning (Chi et al. 2023, ``ConditionalUnet1D``).

The noisy action sequence (B, Tp, Da) is convolved over time; every residual block is modulated
(FiLM: per-channel scale and bias) by the diffusion step embedding concatenated with the
observation features. Levels halve the time axis going down and double it coming back up, with
skip connections between matching levels.

At inference the observation features are fixed and the DDIM steps known in advance, so
``films`` computes every block's FiLM parameters for all steps in one batched pass per block
(instead of a small Mish + Linear per block per step); ``forward(..., films=...)`` then uses them.
``FilmStep`` is that call as a module of its own, which the policy traces with TorchScript for inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robot_stack.policies.diffusion.config import UNetConfig


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
        emb = t.float()[:, None] * freqs[None]
        return torch.cat([emb.sin(), emb.cos()], -1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, c_in: int, c_out: int, kernel: int, n_groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(n_groups, c_out), nn.Mish())


class ConditionalResidualBlock1D(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, n_groups: int, predict_scale: bool):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel, n_groups)
        self.predict_scale = predict_scale
        self.cond = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, c_out * (2 if predict_scale else 1)))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """``film`` (B, C or 2C, 1): ``self.cond`` of the conditioning vector."""
        out = self.block1(x)
        if self.predict_scale:
            scale, bias = film.chunk(2, dim=1)
            out = scale * out + bias
        else:
            out = out + film
        return self.block2(out) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(self, action_dim: int, global_cond_dim: int, cfg: UNetConfig):
        super().__init__()
        dsed = cfg.step_embed_dim
        self.step_encoder = nn.Sequential(SinusoidalPosEmb(dsed), nn.Linear(dsed, dsed * 4), nn.Mish(),
                                          nn.Linear(dsed * 4, dsed))
        cond_dim = dsed + global_cond_dim
        dims = [action_dim, *cfg.down_dims]
        in_out = list(zip(dims[:-1], dims[1:]))

        def res(c_in: int, c_out: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(c_in, c_out, cond_dim, cfg.kernel_size, cfg.n_groups,
                                              cfg.cond_predict_scale)

        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.down.append(nn.ModuleList([res(c_in, c_out), res(c_out, c_out),
                                            nn.Conv1d(c_out, c_out, 3, 2, 1) if not last else nn.Identity()]))
        mid = cfg.down_dims[-1]
        self.mid = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            self.up.append(nn.ModuleList([res(c_out * 2, c_in), res(c_in, c_in), nn.ConvTranspose1d(c_in, c_in, 4, 2, 1)]))
        start = cfg.down_dims[0]
        self.final = nn.Sequential(Conv1dBlock(start, start, cfg.kernel_size, cfg.n_groups),
                                   nn.Conv1d(start, action_dim, 1))

    def res_blocks(self) -> list[ConditionalResidualBlock1D]:
        """The FiLM-conditioned blocks in the order ``forward`` runs them."""
        down = [b for res1, res2, _ in self.down for b in (res1, res2)]
        up = [b for res1, res2, _ in self.up for b in (res1, res2)]
        return [*down, *self.mid, *up]

    def films(self, timesteps: torch.Tensor, global_cond: torch.Tensor) -> list[list[torch.Tensor]]:
        """FiLM parameters of every block for each diffusion step: ``[step][block]`` (B, C or 2C, 1)."""
        k, b = timesteps.shape[0], global_cond.shape[0]
        steps = self.step_encoder(timesteps)[:, None].expand(k, b, -1)
        cond = torch.cat([steps, global_cond[None].expand(k, b, -1)], -1).reshape(k * b, -1)
        per_block = [block.cond(cond).reshape(k, b, -1, 1) for block in self.res_blocks()]
        return [[f[i] for f in per_block] for i in range(k)]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor,
                films: list[torch.Tensor] | None = None) -> torch.Tensor:
        """sample (B, Tp, Da), timestep (B,), global_cond (B, G) -> (B, Tp, Da); or one step of ``films(...)``."""
        x = sample.transpose(1, 2)
        if films is None:
            cond = torch.cat([self.step_encoder(timestep.expand(x.shape[0])), global_cond], -1)
            films = [block.cond(cond)[:, :, None] for block in self.res_blocks()]
        film = iter(films)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, next(film)), next(film))
            skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, next(film))
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], 1)
            x = up(res2(res1(x, next(film)), next(film)))
        return self.final(x).transpose(1, 2)


class FilmStep(nn.Module):
    """``unet(sample, films=films)``: one denoising step with precomputed FiLM parameters.

    A module of its own so that ``torch.jit.trace`` of it shares the U-Net's parameters (a trace of a
    function would copy them in as constants): training or loading weights later needs no new trace.
    """

    def __init__(self, unet: ConditionalUnet1D):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, films: list[torch.Tensor]) -> torch.Tensor:
        return self.unet(sample, None, None, films=films)
