"""Min-max normaliser to [-1, 1] per key and per dimension, kept as module buffers.

The statistics are buffers of the policy, so they travel with its weights in the safetensors
checkpoint (and a JSON copy goes into the checkpoint config for people to read). Dimensions that
never vary (range below ``eps``) map to 0 instead of dividing by ~0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Normalizer(nn.Module):
    def __init__(self, dims: dict[str, int], eps: float = 1e-4):
        super().__init__()
        self.keys = list(dims)
        self.eps = eps
        for key, dim in dims.items():
            self.register_buffer(f"{key}__min", torch.full((dim,), -1.0))
            self.register_buffer(f"{key}__max", torch.full((dim,), 1.0))

    def fit(self, data: dict[str, np.ndarray | torch.Tensor]) -> Normalizer:
        """Set min/max of every key from arrays shaped (..., dim)."""
        for key in self.keys:
            x = torch.as_tensor(np.asarray(data[key]), dtype=torch.float32).reshape(-1, self._min(key).numel())
            if not torch.isfinite(x).all():
                raise ValueError(f"normaliser: data/{key} contains NaN or Inf")
            self._min(key).copy_(x.min(0).values)
            self._max(key).copy_(x.max(0).values)
        return self

    def _min(self, key: str) -> torch.Tensor:
        return getattr(self, f"{key}__min")

    def _max(self, key: str) -> torch.Tensor:
        return getattr(self, f"{key}__max")

    def _scale_offset(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self._min(key), self._max(key)
        span = hi - lo
        flat = span < self.eps
        scale = torch.where(flat, torch.ones_like(span), 2.0 / span.clamp_min(self.eps))
        offset = torch.where(flat, -(hi + lo) / 2, -1.0 - lo * scale)
        return scale, offset

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset(key)
        return x * scale + offset

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        scale, offset = self._scale_offset(key)
        return (y - offset) / scale

    def stats(self) -> dict[str, dict[str, list[float]]]:
        """Plain-data copy of the statistics (for the JSON side of a checkpoint)."""
        return {k: {"min": self._min(k).tolist(), "max": self._max(k).tolist()} for k in self.keys}
