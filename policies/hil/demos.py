"""Demo transitions from a recorded episode store (the recorder's zarr: teleop or scripted demos).

Each step ``t`` of an episode becomes ``(obs_t, action_t, reward, obs_{t+1}, done)`` in the policy's
spaces: the observation through ``RLSpace.observation`` and the recorded command (``action``: the
absolute joint target) through ``RLSpace.from_target`` relative to the measured ``joint_pos_t``, so
demos live in the same action space and frame as the policy's own steps and the human's
interventions. Reward: a reward classifier's verdict on ``obs_{t+1}`` when one is given, else the
episode's success flag on its last step (terminal). Failed episodes (success false) are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.errors import UserError
from robot_stack.policies.hil.buffer import ReplayBuffer
from robot_stack.policies.hil.spaces import RLSpace


def load_demos(path: str | Path, space: RLSpace, buffer: ReplayBuffer, classifier: Any = None,
               threshold: float = 0.5, toggle_penalty: float = 0.0) -> tuple[int, int]:
    """Add the successful (or unlabelled) episodes of the store at ``path`` to ``buffer``.

    Returns (episodes added, transitions added)."""
    from robot_stack.data import EpisodeStore

    if not Path(path).exists():
        raise UserError(f"{path}: demo dataset not found (record one with robot-stack launch teleop.launch.xml)")
    store = EpisodeStore(path, "r")
    keys = [*space.obs_keys, "action", "joint_pos"]
    missing = [k for k in dict.fromkeys(keys) if k not in store.keys]
    if missing:
        raise UserError(f"{path}: the demos lack {', '.join(missing)} (keys: {', '.join(store.keys)}); "
                        "record them with the task set so object_state is stored")
    episodes = transitions = 0
    for i, info in enumerate(store.episodes):
        if info.success is False or info.length < 2:
            continue
        data = store.episode(i, list(dict.fromkeys(keys)))
        n = info.length
        obs = {k: data[k] for k in space.obs_keys}
        vecs = np.stack([space.observation({k: v[t] for k, v in obs.items()}) for t in range(n)])
        for t in range(n - 1):
            previous = data["action"][t - 1] if t else None
            action = space.from_target(data["action"][t], data["joint_pos"][t], previous)
            if classifier is not None:
                success = classifier.predict({k: v[t + 1] for k, v in obs.items()}) >= threshold
            else:
                success = bool(info.success) and t == n - 2
            penalty = toggle_penalty if space.gripper_toggles(action, data["joint_pos"][t], previous) else 0.0
            buffer.add(vecs[t], action, float(success), vecs[t + 1], success, True, penalty)
            transitions += 1
            if success:
                break
        episodes += 1
    if episodes == 0:
        raise UserError(f"{path}: no successful demo episodes ({store.n_episodes} episodes in the store)")
    return episodes, transitions
