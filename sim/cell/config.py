"""Cell files (``config/cells/<name>.yaml``): which robot and task the cell emulates, and its reality gap.

The gap says how the cell differs from the twin, one plausible real-world magnitude per effect.
Every value has an identity (its default: the twin's behaviour) and an allowed range; ``gap: none``
(or leaving ``gap`` out) makes the cell equal to the twin, and ``gap_scale`` turns the whole dial
(0 = the twin, 1 = as written, 2 = twice as far). Random effects (calibration offsets, camera pose
errors, their directions) are drawn once from ``gap.seed``: a cell is one fixed lab, not a
distribution, like a real robot.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robot_stack import resources
from robot_stack.typed_config import from_dict, load_yaml


def ranged(default: Any, lo: float, hi: float, doc: str) -> Any:
    """A field with an allowed range [lo, hi] (checked per element for tuples) and a description."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "doc": doc})


class _Checked:
    """Range check of every ``ranged`` field, as one line naming the field."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "range" not in f.metadata:
                continue
            lo, hi = f.metadata["range"]
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if not lo <= v <= hi:
                    raise ValueError(f"{f.name}: {v:g} is outside [{lo:g}, {hi:g}] ({f.metadata['doc']})")


@dataclass(frozen=True)
class ArmGap(_Checked):
    zero_offset_deg: float = ranged(0.0, 0.0, 15.0, "calibration error: each joint's zero is off by up to this")
    gain: float = ranged(1.0, 0.2, 5.0, "servo position gain relative to the twin's")
    deadband_deg: float = ranged(0.0, 0.0, 5.0, "servo dead band: errors below it are not corrected")
    backlash_deg: float = ranged(0.0, 0.0, 5.0, "gear backlash: hysteresis of this width on the reached position")
    friction_nm: float = ranged(0.0, 0.0, 1.0, "added Coulomb friction per joint, N·m")
    damping_scale: float = ranged(1.0, 0.1, 10.0, "joint damping relative to the twin's")
    gravity_compensation: float = ranged(1.0, 0.0, 1.0, "fraction of the arm's weight the servos hold (twin: all)")
    encoder_ticks: int = ranged(0, 0, 65536, "effective encoder ticks per turn (0: the servo model's)")
    encoder_noise_deg: float = ranged(0.0, 0.0, 2.0, "position reading noise, standard deviation")
    bus_latency_ms: float = ranged(0.0, 0.0, 50.0, "delay before each status packet (USB adapter, servo)")
    actuation_latency_ms: float = ranged(0.0, 0.0, 200.0, "delay from a goal write to the servo acting on it")


@dataclass(frozen=True)
class ObjectGap(_Checked):
    mass_scale: float = ranged(1.0, 0.2, 5.0, "task objects' mass relative to the task file's")
    friction_scale: float = ranged(1.0, 0.2, 3.0, "task objects' sliding friction relative to the task file's")
    size_scale: float = ranged(1.0, 0.5, 2.0, "task objects' size relative to the task file's")


@dataclass(frozen=True)
class CameraGap(_Checked):
    position_cm: float = ranged(0.0, 0.0, 10.0, "camera mount position error (direction drawn per camera)")
    rotation_deg: float = ranged(0.0, 0.0, 10.0, "camera mount rotation error (axis drawn per camera)")
    focal_error: float = ranged(0.0, 0.0, 0.3, "relative focal length error of the lens")
    principal_point_px: float = ranged(0.0, 0.0, 50.0, "principal point offset from the image centre, px")
    distortion: tuple[float, float, float, float, float] = ranged(
        (0.0, 0.0, 0.0, 0.0, 0.0), -1.0, 1.0, "lens distortion k1, k2, p1, p2, k3 (plumb_bob)")
    exposure: float = ranged(1.0, 0.2, 5.0, "brightness gain")
    white_balance: tuple[float, float, float] = ranged((1.0, 1.0, 1.0), 0.5, 2.0, "R, G, B gains")
    saturation: float = ranged(1.0, 0.0, 3.0, "colour saturation")
    noise: float = ranged(0.0, 0.0, 50.0, "sensor noise, standard deviation in 8-bit levels at mid-grey")
    motion_blur: float = ranged(0.0, 0.0, 0.9, "weight of the previous exposure blended into each frame")
    jpeg_quality: int = ranged(95, 10, 100, "MJPEG quality (95: what the recorder stores)")
    latency_ms: float = ranged(0.0, 0.0, 1000.0, "exposure to delivery, ms (rendering counts towards it)")
    jitter_ms: float = ranged(0.0, 0.0, 200.0, "standard deviation of an added non-negative delay, ms")
    drop_rate: float = ranged(0.0, 0.0, 0.5, "fraction of frames never delivered")


@dataclass(frozen=True)
class SceneGap(_Checked):
    light_scale: float = ranged(1.0, 0.2, 3.0, "light intensity relative to the twin's")
    table_rgb: tuple[float, float, float] = ranged((0.62, 0.55, 0.45), 0.0, 1.0, "table colour (twin: 0.62 0.55 0.45)")
    table_texture: float = ranged(0.0, 0.0, 1.0, "strength of a speckled wood-grain-like table texture (0: plain)")


@dataclass(frozen=True)
class Gap:
    arm: ArmGap = ArmGap()
    object: ObjectGap = ObjectGap()
    camera: CameraGap = CameraGap()
    scene: SceneGap = SceneGap()
    seed: int = 0
    """Draws the cell's fixed realisation: joint offsets, camera pose errors, lens signs."""

    def scaled(self, k: float) -> Gap:
        """Every effect moved ``k`` times as far from the twin (its default) as written."""
        return _scale(self, Gap(), k)


@dataclass(frozen=True)
class Stream(_Checked):
    width: int = ranged(0, 0, 4096, "image width, px (0: the profile's)")
    height: int = ranged(0, 0, 4096, "image height, px (0: the profile's)")
    fps: float = ranged(0.0, 0.0, 120.0, "frame rate, Hz (0: the profile's)")


@dataclass(frozen=True)
class CellConfig(_Checked):
    robot: str = "so101"
    """Robot profile: arm MJCF, servo bus (IDs, models, calibration), cameras."""
    task: str = "pick_cube"
    """Task (config/tasks): the objects on the table and how the harness judges an episode."""
    leader: str = "so101_leader"
    """Robot profile of a leader arm served on a second bus ('' for none)."""
    streams: dict[str, Stream] = dataclasses.field(default_factory=dict)
    """Per camera: the stream's resolution and frame rate (default: the profile's)."""
    gap: Gap = Gap()
    gap_scale: float = ranged(1.0, 0.0, 3.0, "the whole gap dial: 0 = the twin, 1 = as written")
    name: str = ""

    @property
    def effective_gap(self) -> Gap:
        return self.gap.scaled(self.gap_scale)


def _scale(value: Any, identity: Any, k: float) -> Any:
    if dataclasses.is_dataclass(value):
        changes = {f.name: _scale(getattr(value, f.name), getattr(identity, f.name), k)
                   for f in dataclasses.fields(value) if f.name != "seed"}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_scale(v, i, k) for v, i in zip(value, identity))
    if isinstance(value, int):  # counts (encoder ticks, JPEG quality) are either the twin's or as written
        return identity if k == 0 else value
    return identity + k * (value - identity)


def load_cell(name_or_path: str) -> CellConfig:
    """``default``, another shipped cell, or a path to a cell YAML (one-line errors for bad values)."""
    path = resources.find_config("cells", str(name_or_path))
    data = load_yaml(path)
    if isinstance(data, dict) and data.get("gap") in ("none", None) and "gap" in data:
        data = {**data, "gap": {}}
    cfg = from_dict(CellConfig, data, str(path))
    try:  # scaling may push a value out of its range: check the result too
        cfg.effective_gap  # noqa: B018
    except ValueError as err:
        from robot_stack.errors import UserError

        raise UserError(f"{path}: gap_scale {cfg.gap_scale:g}: {err}") from None
    return dataclasses.replace(cfg, name=cfg.name or path.stem)
