"""Latency calibration: how late the camera stamps and the joints are relative to the commands.

A step-like joint motion is commanded (smooth steps out and back, so the onset is sharp but the
arm can follow); three streams are recorded with their stamps: the commands (publish time), the
joint states (``header.stamp``) and camera images (``header.stamp``, downsampled to gray).

* **actuation latency**: the lag of the measured joint motion behind the command (bus, servo loop
  and tracking lag together) — what ``policy_server``'s ``execution_latency`` compensates.
* **camera latency**: the lag of the motion seen in the images behind the joint stream, by their
  stamps — positive when an image shows the world as it was *before* its stamp (a driver that
  stamps on arrival instead of at exposure). Subtract it from the camera's stamps.

Lags are found by scanning candidate delays in 1 ms steps and fitting the delayed reference to the
signal with a cubic polynomial (so any smooth, monotonic or not, mapping from joint angle to image
appearance fits exactly at the true delay), refined to sub-millisecond by a parabola through the best
three. The image signal is the first principal component of the frames over time (no markers needed:
it follows whatever moves). Results go to a YAML file, and a ROS parameter file for policy_server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from robot_stack.errors import UserError
from robot_stack.typed_config import from_dict, load_yaml, to_dict


def motion_signal(frames: np.ndarray) -> np.ndarray:
    """(T,) scalar that follows the dominant motion in (T, H, W) gray frames: first principal component."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or len(frames) < 5:
        raise UserError(f"need at least 5 frames of shape (T, H, W) to measure camera latency, got {frames.shape}")
    X = frames.reshape(len(frames), -1)
    X = X - X.mean(axis=0)
    if float(np.abs(X).max()) < 1.0:
        raise UserError("the images do not change while the arm moves: point the camera at the arm")
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    return u[:, 0] * s[0]


def downsample(image: np.ndarray, width: int = 80) -> np.ndarray:
    """Small gray copy of an RGB/gray image for ``motion_signal`` (area averaging)."""
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h = max(1, round(gray.shape[0] * width / gray.shape[1]))
    return cv2.resize(gray, (width, h), interpolation=cv2.INTER_AREA)


@dataclass
class LagFit:
    lag: float
    """Seconds the signal trails the reference."""
    r2: float
    """Fraction of the signal's variance explained at that lag (1 = perfect)."""


def estimate_lag(t_ref: np.ndarray, x_ref: np.ndarray, t_sig: np.ndarray, x_sig: np.ndarray, *,
                 max_lag: float = 0.5, min_lag: float | None = None, step: float = 0.001, degree: int = 3) -> LagFit:
    """Delay ``L`` such that ``x_sig(t) ~ f(x_ref(t - L))`` for a smooth ``f`` (polynomial of ``degree``)."""
    t_ref, x_ref = np.asarray(t_ref, float), np.asarray(x_ref, float)
    t_sig, x_sig = np.asarray(t_sig, float), np.asarray(x_sig, float)
    order = np.argsort(t_ref)
    t_ref, x_ref = t_ref[order], x_ref[order]
    lo = -max_lag if min_lag is None else min_lag
    lags = np.arange(lo, max_lag + step / 2, step)
    span = np.ptp(x_ref) or 1.0
    ref0 = (x_ref - x_ref.mean()) / span
    sig = x_sig - x_sig.mean()
    total = float(sig @ sig)
    if total <= 0 or np.ptp(x_ref) == 0:
        raise UserError("no motion recorded: the commanded step did not move the joint (is the arm enabled?)")
    scores = np.full(len(lags), -np.inf)
    for k, lag in enumerate(lags):
        t = t_sig - lag
        inside = (t >= t_ref[0]) & (t <= t_ref[-1])
        if inside.sum() < max(10, 0.8 * len(t_sig)):
            continue
        r = np.interp(t[inside], t_ref, ref0)
        A = np.vander(r, degree + 1)
        y = sig[inside]
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        res = y - A @ coef
        scores[k] = 1.0 - float(res @ res) / float(y @ y)
    best = int(np.argmax(scores))
    if not np.isfinite(scores[best]):
        raise UserError("the recordings do not overlap in time: record the streams together")
    lag = lags[best]
    if 0 < best < len(lags) - 1 and np.all(np.isfinite(scores[best - 1: best + 2])):
        a, b, c = scores[best - 1: best + 2]
        denom = a - 2 * b + c
        if denom < 0:
            lag += step * 0.5 * (a - c) / denom
    return LagFit(float(lag), float(scores[best]))


# -- recordings and results ----------------------------------------------------------------------------
@dataclass
class Recording:
    """What a latency run records (saved as .npz, no pickles)."""

    joint: int
    """Index (profile order) of the joint that was moved."""
    t_cmd: np.ndarray
    q_cmd: np.ndarray  # (N,) commanded position of that joint, rad
    t_joint: np.ndarray
    q_joint: np.ndarray  # (M,) measured position of that joint, rad
    cameras: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """camera name -> (stamps (K,), small gray frames (K, h, w) uint8)."""

    def save(self, path: str | Path) -> None:
        arrays = {"joint": np.array(self.joint), "t_cmd": self.t_cmd, "q_cmd": self.q_cmd, "t_joint": self.t_joint,
                  "q_joint": self.q_joint}
        for name, (t, frames) in self.cameras.items():
            arrays[f"cam_{name}_t"], arrays[f"cam_{name}_frames"] = t, frames
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise UserError(f"{path}: file not found") from None
        except (ValueError, OSError) as err:
            raise UserError(f"{path}: not a latency recording ({err})") from None
        missing = [k for k in ("joint", "t_cmd", "q_cmd", "t_joint", "q_joint") if k not in data]
        if missing:
            raise UserError(f"{path}: not a latency recording (missing {missing[0]!r})")
        cams = {k[4:-2]: (data[k], data[f"{k[:-2]}_frames"]) for k in data if k.startswith("cam_") and k.endswith("_t")}
        return cls(int(data["joint"]), data["t_cmd"], data["q_cmd"], data["t_joint"], data["q_joint"], cams)


@dataclass(frozen=True)
class LatencyCalibration:
    robot: str
    actuation_latency: float
    """s: measured joint motion behind the command (policy_server execution_latency)."""
    camera_latency: dict[str, float] = field(default_factory=dict)
    """s per camera: image content behind its stamp, relative to the joint stream."""
    fit: dict[str, float] = field(default_factory=dict)
    """R^2 of each lag fit (1 = perfect), for judging the measurement."""


def analyse(rec: Recording, robot: str, *, max_lag: float = 0.5, min_r2: float = 0.9) -> LatencyCalibration:
    """Actuation and camera latencies from a recording."""
    act = estimate_lag(rec.t_cmd, rec.q_cmd, rec.t_joint, rec.q_joint, max_lag=max_lag, min_lag=-0.05, degree=1)
    fits = {"actuation": round(act.r2, 5)}
    cams = {}
    for name, (t, frames) in rec.cameras.items():
        fit = estimate_lag(rec.t_joint, rec.q_joint, t, motion_signal(frames), max_lag=max_lag)
        cams[name] = round(fit.lag, 4)
        fits[name] = round(fit.r2, 5)
    poor = [k for k, v in fits.items() if v < min_r2]
    if poor:
        raise UserError(f"the {poor[0]} lag fit is poor (R^2 {fits[poor[0]]:.2f} < {min_r2}): keep the camera still, "
                        "the arm in view and the scene otherwise static, and record again")
    return LatencyCalibration(robot, round(act.lag, 4), cams, fits)


def save_latency(cal: LatencyCalibration, path: str | Path) -> Path:
    """Write the calibration YAML and, beside it, ``<stem>.params.yaml`` for policy_server; returns the latter."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ("# robot_stack latency calibration (s). actuation_latency -> policy_server execution_latency;\n"
            "# camera_latency: image content behind its stamp. See docs/calibration.md.\n")
    path.write_text(head + yaml.safe_dump(to_dict(cal), sort_keys=False))
    params = path.with_name(path.stem + ".params.yaml")
    params.write_text(yaml.safe_dump({"policy_server": {"ros__parameters": {"execution_latency": cal.actuation_latency}}}))
    return params


def load_latency(path: str | Path) -> LatencyCalibration:
    return from_dict(LatencyCalibration, load_yaml(path), str(path))


def step_profile(duration: float, amplitude: float, *, hold: float = 0.6, move: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(times, offsets) of smooth steps 0 -> +A -> 0 -> -A -> 0 ... sampled at 1 kHz (the commanded motion)."""
    t = np.arange(0.0, duration, 0.001)
    levels = [0.0, amplitude, 0.0, -amplitude]
    period = hold + move
    k = (t // period).astype(int)
    phase = np.clip((t - k * period - hold) / move, 0.0, 1.0)
    s = phase * phase * (3 - 2 * phase)  # smoothstep
    a = np.array([levels[i % 4] for i in k])
    b = np.array([levels[(i + 1) % 4] for i in k])
    return t, a + (b - a) * s
