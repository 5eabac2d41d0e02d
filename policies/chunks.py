"""Timestamped action chunks: latency compensation and blending between consecutive chunks.

A policy predicts actions for instants ``t_obs + k * dt``. By the time inference finishes some of
them are in the past: those are dropped. A new chunk is cross-faded into the chunk still running
over its first ``blend_steps`` overlapping steps, so re-planning never makes the command jump.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
"""Time tolerance (s): a step due exactly when the chunk becomes available counts as past, whatever the
rounding of the clock it was computed on."""


class ActionChunks:
    def __init__(self, blend_steps: int = 3):
        self.blend_steps = blend_steps
        self.times: np.ndarray | None = None
        self.actions: np.ndarray | None = None
        self.dropped = 0

    def reset(self) -> None:
        self.times = self.actions = None

    def add(self, times: np.ndarray, actions: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Register a new chunk; return the (times, actions) still to execute, blended with the last chunk."""
        future = times > now + EPS
        self.dropped += int((~future).sum())
        times, actions = times[future], actions[future].copy()
        if not len(times):
            return times, actions  # all late: keep the chunk that is running
        if self.times is not None and self.blend_steps > 0:
            overlap = (times >= self.times[0] - EPS) & (times <= self.times[-1] + EPS)
            idx = np.flatnonzero(overlap)[: self.blend_steps]
            for j, i in enumerate(idx):
                w = (j + 1) / (len(idx) + 1)
                previous = np.array([np.interp(times[i], self.times, self.actions[:, d]) for d in range(actions.shape[1])])
                actions[i] = (1 - w) * previous + w * actions[i]
        self.times, self.actions = times, actions
        return times, actions
