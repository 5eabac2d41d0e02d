"""Few-step sampling: give a checkpoint a few-step DDIM sampler, and check it against 10-step DDIM on the twin.

A policy trained to predict the clean action chunk (``scheduler.prediction_type: sample``, the CPU
configs' choice) needs no distillation to sample in 1-3 steps: DDIM with ``trailing`` spacing starts
at the last training step, where the network has learnt to predict the chunk from pure noise, so one
step is that prediction and each further step refines it. Measured on the demo's task: inside the
10-step policy's 95% interval at 1, 2 and 3 steps (docs/diffusion.md). Epsilon-prediction policies
degrade at so few steps; check them with ``compare_samplers`` before deploying.

The sampler is part of the checkpoint's config (``scheduler.inference_steps``,
``scheduler.timestep_spacing``), so ``policy_server`` and ``robot-stack eval`` use it without a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robot_stack.errors import UserError
from robot_stack.policies.diffusion import checkpoint as ckpt

REFERENCE_STEPS = 10
"""The reference sampler: DDIM 10 with ``leading`` spacing (the paper's deployment setting)."""


def write_sampler_checkpoint(source: str | Path, out: str | Path, steps: int, spacing: str = "trailing") -> Path:
    """Copy ``source`` to ``out`` with DDIM ``steps``/``spacing`` as its sampler (same weights; no training
    state and no sim sign-off: evaluate the new checkpoint to sign it off)."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise UserError(f"--out {out}: give a new folder (the source keeps its sampler and sign-off)")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} already exists and is not empty; choose another folder")
    if spacing not in ("leading", "trailing"):
        raise UserError(f"--spacing {spacing!r}: use leading or trailing")
    cfg, _, meta = ckpt.read_config(source)
    if not 1 <= steps <= cfg.scheduler.train_steps:
        raise UserError(f"--steps {steps}: use 1 to {cfg.scheduler.train_steps}")
    policy = ckpt.load_policy(source)
    policy.set_sampler(steps, spacing)
    return ckpt.save_checkpoint(out, policy, step=meta.get("step", 0))


@dataclass
class SamplerComparison:
    reference: object
    """EvalReport of the reference sampler (DDIM ``REFERENCE_STEPS``, leading)."""
    candidate: object
    """EvalReport of the checkpoint's own sampler, on the same episode seeds."""
    reference_label: str
    candidate_label: str

    @property
    def within(self) -> bool:
        """Equal success: the candidate's rate is not below the reference's 95% Wilson interval."""
        return self.candidate.success_rate >= self.reference.ci95[0]

    def summary(self) -> str:
        lo, hi = self.reference.ci95
        return (f"{self.candidate_label}: {self.candidate.successes}/{len(self.candidate.episodes)}; "
                f"{self.reference_label}: {self.reference.successes}/{len(self.reference.episodes)} "
                f"(95% interval {lo:.0%}-{hi:.0%}): {'PASS' if self.within else 'FAIL'} (equal success)")


def _label(policy) -> str:
    s = policy.cfg.scheduler
    return f"DDIM {policy.inference_steps} {s.timestep_spacing}"


def compare_samplers(checkpoint: str | Path, task: str, robot: str, episodes: int = 50, seed: int = 1000,
                     progress: bool = True) -> SamplerComparison:
    """Roll the checkpoint out with its own sampler and with DDIM 10 (leading) on the same ``episodes`` seeds."""
    from robot_stack.policies.diffusion.checkpoint import load_policy
    from robot_stack.policies.evaluate import evaluate_policy
    from robot_stack.profile import load_profile

    profile = load_profile(robot)
    candidate = load_policy(checkpoint, profile)
    reference = load_policy(checkpoint, profile)
    reference.set_sampler(REFERENCE_STEPS, "leading")
    reports = {}
    for name, policy in (("reference", reference), ("candidate", candidate)):
        reports[name] = evaluate_policy(policy, profile, task, episodes, seed=seed, videos=0, name=_label(policy),
                                        progress=progress)
    return SamplerComparison(reports["reference"], reports["candidate"], _label(reference), _label(candidate))
