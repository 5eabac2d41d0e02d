"""Replay a recorded episode's commands in the twin, in-process, and measure the tracking gap.

The twin (``TwinEnv``: the same ``SimRobot`` physics behind the same ``ArmCore`` as ``twin_node``,
without domain randomisation) starts from the episode's first recorded state (arm joints, velocities and,
when ``object_state`` was recorded, the task's objects) and executes the recorded ``action`` at
the control rate:

* ``step`` (default): each action is held until the next one, as ``<controller>/commands``
  (forward command) executes — the recorder stores the latest command at each tick;
* ``linear``: from one action to the next over a period, as ``TwinEnv.step`` and a
  ``joint_trajectory`` of the actions execute.

Every control tick's target goes through the arm core as a streamed command (limits, per-tick
velocity bound, watchdog) as on the robot. The twin's
joint positions are read at the recorded tick times and compared with the recorded ``joint_pos``:
RMS and max error per joint. ``compare`` also replays with the commands shifted by up to 1.5
recording periods either way and reports the shift that fits best: a latency estimate (positive: the
recorded robot responded earlier than the twin's replay, negative: later). Commands streamed at the
recording rate land on the grid up to one period after they arrived, so a shift of up to one period
is timing of the recording itself, not of the robot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.data.store import EpisodeStore
from robot_stack.errors import UserError

INTERPOLATIONS = ("step", "linear")


@dataclass
class TwinReplay:
    """One replay: recorded vs twin joint positions at the recorded ticks."""

    names: list[str]
    angular: np.ndarray
    """Per joint: True for a revolute joint (rad), False for a prismatic one (m)."""
    t: np.ndarray
    """Seconds since the episode's first tick."""
    recorded: np.ndarray
    twin: np.ndarray
    action: np.ndarray
    interpolation: str
    shift_ticks: int
    control_period: float
    success: bool | None
    recorded_success: bool | None

    @property
    def error(self) -> np.ndarray:
        return self.twin - self.recorded

    @property
    def rms(self) -> np.ndarray:
        return np.sqrt(np.mean(self.error**2, axis=0))

    @property
    def max_abs(self) -> np.ndarray:
        return np.abs(self.error).max(axis=0)

    @property
    def shift_s(self) -> float:
        return self.shift_ticks * self.control_period

    def score(self) -> float:
        """Mean RMS over the revolute joints (rad): the number the shift search minimises."""
        return float(np.mean(self.rms[self.angular])) if self.angular.any() else float(np.mean(self.rms))


@dataclass
class Comparison:
    raw: TwinReplay
    best: TwinReplay
    scores: dict[int, float] = field(default_factory=dict)
    """Shift (control ticks) -> score of that replay."""


def episode_profile(store: EpisodeStore, episode: int):
    from robot_stack.data.export import _profile

    profile = _profile(store, episode)
    if profile.sim is None:
        raise UserError(f"robot profile {profile.name!r} of episode {episode} has no 'sim' section: no twin to replay in")
    return profile


def nominal_task(task: str):
    """The episode's task config without domain randomisation (None when the task is unknown)."""
    from robot_stack.data.align import task_kind
    from robot_stack.tasks import load_task_config

    if not task_kind(task):
        return None
    cfg = load_task_config(task)
    r = dataclasses.replace(cfg.randomization, friction_scale=(1.0, 1.0), mass_scale=(1.0, 1.0), camera_pos_jitter=0.0,
                            camera_rot_jitter=0.0, light_scale=(1.0, 1.0), action_latency=(0, 0), joint_noise=0.0)
    return dataclasses.replace(cfg, randomization=r)


def _ticks_per_step(profile: Any, t: np.ndarray) -> int:
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / profile.control.policy_rate_hz
    ratio = period / profile.control_period
    ticks = int(round(ratio))
    if ticks < 1 or abs(ratio - ticks) > 0.01:
        raise UserError(f"the recording period {period * 1000:.1f} ms is not a whole number of control periods "
                        f"({profile.control_period * 1000:g} ms): cannot replay tick by tick")
    return ticks


def tick_targets(action: np.ndarray, start: np.ndarray, ticks: int, interpolation: str) -> np.ndarray:
    """Per control tick joint targets (n * ticks, J) for the recorded actions."""
    if interpolation == "step":
        return np.repeat(action.astype(float), ticks, axis=0)
    previous = np.vstack([start[None], action[:-1]]).astype(float)
    frac = (np.arange(ticks) / ticks)[None, :, None]
    return (previous[:, None] + (action[:, None] - previous[:, None]) * frac).reshape(-1, action.shape[1])


class TwinReplayer:
    """Replays one episode in a fresh twin (reused across shifts)."""

    def __init__(self, store: EpisodeStore, episode: int, cameras: list[str] | None = None):
        from robot_stack.sim.gym_env import TwinEnv

        self.episode = episode
        self.profile = episode_profile(store, episode)
        info = store.episodes[episode]
        self.task = nominal_task(info.task)
        self.recorded_success = info.success
        keys = [k for k in ("timestamp", "joint_pos", "joint_vel", "action", "object_state") if k in store.keys]
        missing = {"timestamp", "joint_pos", "action"} - set(keys)
        if missing:
            raise UserError(f"{store.path}: cannot replay without keys {sorted(missing)}")
        self.data = store.episode(episode, keys)
        if len(self.data["timestamp"]) < 2:
            raise UserError(f"episode {episode} has fewer than 2 steps: nothing to replay")
        self.env = TwinEnv(self.profile, self.task if self.task is not None else _no_task(), cameras=cameras or [])
        self.ticks = _ticks_per_step(self.profile, self.data["timestamp"])
        model = self.env.sim.model
        import mujoco

        ids = self.env.sim.actuation.joint_ids
        self.angular = np.array([model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE for j in ids])

    def _restore(self) -> np.ndarray:
        import mujoco

        sim, d = self.env.sim, self.env.sim.data
        self.env.reset(seed=0)
        q0 = self.data["joint_pos"][0].astype(float)
        d.qpos[sim.qpos_index] = q0
        d.qvel[sim.dof_index] = self.data["joint_vel"][0] if "joint_vel" in self.data else 0.0
        if "object_state" in self.data and self.task is not None and np.all(np.isfinite(self.data["object_state"][0])):
            from robot_stack.tasks import object_poses_from_state

            sim.task.set_object_poses(d, object_poses_from_state(self.task, self.data["object_state"][0]))
        sim.actuation.set_target(d, q0)
        mujoco.mj_forward(sim.model, d)
        if sim.task is not None:
            sim.task.start(d)
        core = self.env.core
        core.read(sim.now())
        core.hold_measured()  # the arm core starts from the restored state
        return q0

    def run(self, interpolation: str = "step", shift_ticks: int = 0,
            on_step: Callable[[int, Any], None] | None = None) -> TwinReplay:
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"unknown interpolation {interpolation!r} (use {' or '.join(INTERPOLATIONS)})")
        env, sim = self.env, self.env.sim
        q0 = self._restore()
        action = self.data["action"]
        targets = tick_targets(action, q0, self.ticks, interpolation)
        idx = np.clip(np.arange(len(targets)) + shift_ticks, 0, len(targets) - 1)
        targets = targets[idx]
        n = len(action)
        twin = np.zeros((n, len(q0)))
        core, n_arm = env.core, len(self.profile.joints)
        for k in range(n):
            twin[k] = sim.read().position
            if on_step is not None:
                on_step(k, env)
            for j in range(self.ticks):  # each tick's target as a streamed command through the arm core
                target = targets[k * self.ticks + j]
                core.positions(target[:n_arm], sim.now())
                if core.gripper_index is not None:
                    core.gripper(target[core.gripper_index])
                env.runtime.advance()
        t = self.data["timestamp"] - self.data["timestamp"][0]
        return TwinReplay(
            names=list(self.profile.all_joint_names), angular=self.angular, t=t,
            recorded=self.data["joint_pos"].astype(float), twin=twin, action=action.astype(float),
            interpolation=interpolation, shift_ticks=shift_ticks, control_period=self.profile.control_period,
            success=sim.success() if self.task is not None else None, recorded_success=self.recorded_success,
        )

    def close(self) -> None:
        self.env.close()


def _no_task():
    from robot_stack.tasks import TaskConfig

    return TaskConfig(kind="reach", name="")  # a target marker only; it touches nothing


def compare(store: EpisodeStore, episode: int, interpolation: str = "step", max_shift_ticks: int | None = None) -> Comparison:
    """Replay with the recorded timing, then with shifts up to 1.5 recording periods (a coarse grid, then
    every shift around its best); the best fit."""
    replayer = TwinReplayer(store, episode)
    try:
        raw = replayer.run(interpolation)
        limit = (3 * replayer.ticks) // 2 if max_shift_ticks is None else max_shift_ticks
        runs = {0: raw}

        def score(shift: int) -> float:
            if shift not in runs:
                runs[shift] = replayer.run(interpolation, shift)
            return runs[shift].score()

        stride = max(1, replayer.ticks // 3)  # coarse grid, then every shift around its best
        coarse = min(range(-limit, limit + 1, stride), key=score)
        for shift in range(max(-limit, coarse - stride + 1), min(limit, coarse + stride - 1) + 1):
            score(shift)
        scores = {s: r.score() for s, r in sorted(runs.items())}
        best = runs[min(scores, key=lambda s: (scores[s], abs(s)))]
        return Comparison(raw=raw, best=best, scores=scores)
    finally:
        replayer.close()


def _units(angular: bool) -> tuple[str, float, str, float]:
    return ("rad", 1.0, "deg", float(np.degrees(1.0))) if angular else ("m", 1.0, "mm", 1000.0)


def comparison_table(result: Comparison, title: str) -> Any:
    from rich.table import Table

    raw, best = result.raw, result.best
    table = Table(title=title, caption=(
        f"twin commands held as recorded ({raw.interpolation}); best fit: commands shifted "
        f"{best.shift_s * 1000:+.0f} ms ({'robot earlier than twin' if best.shift_ticks > 0 else 'robot later than twin' if best.shift_ticks < 0 else 'no shift'})"))
    for col in ("joint", "RMS rad|m", "RMS deg|mm", "max rad|m", "max deg|mm", f"RMS @{best.shift_s * 1000:+.0f}ms"):
        table.add_column(col, justify="left" if col == "joint" else "right", no_wrap=col == "joint")
    for j, name in enumerate(raw.names):
        _, _, _, f2 = _units(bool(raw.angular[j]))
        table.add_row(name, f"{raw.rms[j]:.4f}", f"{raw.rms[j] * f2:.2f}", f"{raw.max_abs[j]:.4f}",
                      f"{raw.max_abs[j] * f2:.2f}", f"{best.rms[j] * f2:.2f}")
    arm = raw.angular
    if arm.any():
        table.add_section()
        table.add_row("mean (revolute)", f"{raw.rms[arm].mean():.4f}", f"{np.degrees(raw.rms[arm].mean()):.2f}",
                      f"{raw.max_abs[arm].max():.4f}", f"{np.degrees(raw.max_abs[arm].max()):.2f}",
                      f"{np.degrees(best.rms[arm].mean()):.2f}")
    return table


def plot_comparison(result: Comparison, out: Path, title: str) -> Path:
    """PNG: per joint, recorded vs twin position (and the twin at the best shift), error shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw, best = result.raw, result.best
    n = len(raw.names)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.8), sharex=True, squeeze=False)
    for j, ax in enumerate(axes[:, 0]):
        _, _, unit, factor = _units(bool(raw.angular[j]))
        ax.plot(raw.t, raw.recorded[:, j] * factor, label="recorded", lw=1.4, color="C0")
        ax.plot(raw.t, raw.twin[:, j] * factor, label="twin replay", lw=1.2, ls="--", color="C3")
        if best.shift_ticks:
            ax.plot(best.t, best.twin[:, j] * factor, label=f"twin, commands {best.shift_s * 1000:+.0f} ms",
                    lw=0.9, ls=":", color="C2")
        ax.step(raw.t, raw.action[:, j] * factor, where="post", label="action", lw=0.7, color="0.6")
        ax.fill_between(raw.t, raw.recorded[:, j] * factor, raw.twin[:, j] * factor, color="C3", alpha=0.15)
        ax.set_ylabel(f"{raw.names[j]}\n({unit})", fontsize=8)
        ax.set_title(f"RMS {raw.rms[j] * factor:.2f} {unit}, max {raw.max_abs[j] * factor:.2f} {unit}", fontsize=8, loc="right")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncols=4)
    axes[-1, 0].set_xlabel("time since the episode's first tick (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def replay_video(store: EpisodeStore, episode: int, out: Path, cameras: list[str], interpolation: str = "step") -> TwinReplay:
    """Replay in the twin and write an MP4: each recorded camera frame beside the twin's render."""
    import imageio.v2 as imageio

    from robot_stack.data.ops import camera_names

    recorded = [c for c in cameras if c in camera_names(store)]
    replayer = TwinReplayer(store, episode, cameras=cameras)
    s = store.episode_slice(episode)
    fps = 1.0 / float(np.median(np.diff(replayer.data["timestamp"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(out, fps=fps, codec="libx264", quality=8, macro_block_size=2, pixelformat="yuv420p")

    def frame(k: int, env: Any) -> None:
        tiles = []
        for cam in cameras:
            twin = env.rig.render_rgb(cam, env.sim.data)
            tiles.append(np.concatenate([store.array(f"{cam}_image")[s.start + k], twin], axis=0) if cam in recorded else twin)
        height = max(t.shape[0] for t in tiles)
        writer.append_data(np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles], axis=1))

    try:
        return replayer.run(interpolation, on_step=frame)
    finally:
        writer.close()
        replayer.close()
