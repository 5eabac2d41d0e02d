"""Sim before hardware: the signed-off evaluation record kept next to a checkpoint.

``robot-stack eval`` writes ``<checkpoint>/sim_validation.json`` (policy hash, task, robot,
episodes, success rate with its 95% interval, gate, pass/fail, date, and the runtime configuration
that produced it: rates, blending, latency settings, action space, observations, denoising steps,
runtime-core versions). Deploying on hardware (``sim:=false``) refuses a checkpoint whose record is
missing, failing, for another task, for other weights (the hash no longer matches) or made with
another runtime configuration, unless the user explicitly overrides.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from pathlib import Path

from robot_stack.checkpoint_meta import sha256_file
from robot_stack.errors import UserError

RECORD = "sim_validation.json"
WEIGHTS = "model.safetensors"


def policy_hash(checkpoint: str | Path) -> str:
    path = Path(checkpoint) / WEIGHTS
    if not path.is_file():
        raise UserError(f"{checkpoint}: not a policy checkpoint (no {WEIGHTS})")
    return sha256_file(path)


@dataclass
class ValidationRecord:
    policy_sha256: str
    task: str
    robot: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    gate: float
    passed: bool
    runtime: dict[str, Any] = field(default_factory=dict)
    date: str = ""

    def save(self, checkpoint: str | Path) -> Path:
        self.date = self.date or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path = Path(checkpoint) / RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)
        return path


def load_record(checkpoint: str | Path) -> ValidationRecord | None:
    path = Path(checkpoint) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        data["ci95"] = tuple(data["ci95"])
        return ValidationRecord(**data)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{path}: unreadable validation record ({err}); re-run robot-stack eval") from None


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def runtime_differences(validated: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    """'key validated -> deployed' for every setting that differs."""
    a, b = _flat(validated), _flat(deployed)
    return [f"{k} {a.get(k, 'unset')} -> {b.get(k, 'unset')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_validated(checkpoint: str | Path, task: str | None = None,
                    runtime: dict[str, Any] | None = None) -> ValidationRecord:
    """Raise a one-line UserError unless the checkpoint has a passing sim record for these weights (and ``runtime``)."""
    hint = (f"run 'robot-stack eval --policy {checkpoint} --task <task> --gate 0.8' on the twin first, "
            "or pass allow_unvalidated:=true to deploy anyway")
    record = load_record(checkpoint)
    if record is None:
        raise UserError(f"checkpoint {checkpoint} has no sim validation record: {hint}")
    if record.policy_sha256 != policy_hash(checkpoint):
        raise UserError(f"checkpoint {checkpoint}: weights changed since the sim validation: {hint}")
    if task and record.task != task:
        raise UserError(f"checkpoint {checkpoint} was validated on task {record.task!r}, not {task!r}: {hint}")
    if runtime is not None and (diff := runtime_differences(record.runtime, runtime)):
        raise UserError(f"checkpoint {checkpoint} was validated with another runtime configuration "
                        f"({'; '.join(diff)}): {hint}")
    if not record.passed:
        raise UserError(f"checkpoint {checkpoint} failed its sim validation ({record.success_rate:.0%} < gate "
                        f"{record.gate:.0%} on {record.task}): {hint}")
    return record


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
