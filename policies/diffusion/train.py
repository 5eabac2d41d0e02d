"""Training loop: AdamW + cosine schedule with warmup, EMA, validation, loss curves, resume, DDP.

One code path for CPU, one CUDA GPU and ``torchrun`` (DDP: gloo on CPU, NCCL on GPUs). Sampling
is a pure function of (seed, step): every process draws the same global batch indices, diffusion
noise and crop offsets and takes its slice, so N processes compute the same updates as one
process with the full batch, and a resumed run continues exactly where it stopped.

Run folder::

    run.json             config, shape meta, data paths, robot (what a resume needs)
    metrics.jsonl        one JSON object per logged step (train loss, val loss, lr; twin success rate)
    loss.png             loss curves
    success.png          twin success rate over training (with ``train.eval_every``)
    videos/              one rollout video per periodic evaluation (``step_<step>_00.mp4``)
    checkpoints/latest   EMA weights + training state (resume from here)
    checkpoints/best     EMA weights with the highest twin success rate (``train.eval_every`` > 0),
                         else with the lowest validation loss
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from robot_stack.errors import UserError
from robot_stack.policies.diffusion import checkpoint as ckpt
from robot_stack.policies.diffusion import dataset as ds
from robot_stack.policies.diffusion.config import DiffusionConfig
from robot_stack.policies.diffusion.ee_actions import EndEffectorActions
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.devices import resolve_device
from robot_stack.typed_config import from_dict, to_dict


@dataclass
class RunOptions:
    out: Path
    data: list[str] = field(default_factory=list)
    """Demo stores."""
    interventions: list[str] = field(default_factory=list)
    """Stores recorded with human interventions: only intervened samples are used (HG-DAgger)."""
    cfg: DiffusionConfig | None = None
    """None: taken from the run (resume) or the checkpoint (finetune)."""
    robot: str | None = None
    resume: bool = False
    finetune: str | None = None
    device: str = "auto"
    progress: bool = True
    skip_damaged: bool = False
    """Train on the undamaged episodes of a damaged store instead of refusing it."""
    train_overrides: dict = field(default_factory=dict)
    """Fields of the ``train`` section to override on resume/finetune (e.g. steps)."""


# -- pieces --------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup then cosine decay to zero (as diffusers' get_cosine_schedule_with_warmup)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class EMA:
    """Exponential moving average of a model's weights with diffusion_policy's warmup schedule."""

    def __init__(self, model: torch.nn.Module, power: float, inv_gamma: float, min_decay: float, max_decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.inv_gamma, self.min_decay, self.max_decay = power, inv_gamma, min_decay, max_decay

    def decay(self, step: int) -> float:
        value = 1 - (1 + step / self.inv_gamma) ** -self.power
        return 0.0 if step <= 0 else min(self.max_decay, max(self.min_decay, value))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = self.decay(step)
        ema, current = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema, d)  # one multi-tensor kernel instead of two small ops per parameter
        torch._foreach_add_(ema, current, alpha=1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


class GlobalBatches:
    """Global batch ``k`` = items [kB, (k+1)B) of a stream of seeded permutations; rank r takes r::world."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        if n == 0:
            raise UserError("no training samples: the dataset has no (intervention) windows; record more episodes")
        self.n, self.b, self.seed, self.rank, self.world, self.start = n, batch_size, seed, rank, world, start
        self._perm: tuple[int, np.ndarray] | None = None

    def _epoch(self, e: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != e:
            self._perm = (e, np.random.default_rng([self.seed, e]).permutation(self.n))
        return self._perm[1]

    def batch(self, k: int) -> list[int]:
        pos = np.arange(k * self.b, (k + 1) * self.b)
        idx = [int(self._epoch(int(p // self.n))[p % self.n]) for p in pos]
        return idx[self.rank::self.world]

    def __iter__(self):
        k = self.start
        while True:
            yield self.batch(k)
            k += 1


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def make_optimizer(policy: DiffusionPolicy, cfg: DiffusionConfig, device: torch.device,
                   fused: bool = True) -> torch.optim.Optimizer:
    """AdamW; its fused kernel (one vectorised pass over all parameters; the same update) where torch has it
    for the device: on this CPU 8x less CPU time per step than the default per-parameter loop."""
    fused = fused and device.type in ("cpu", "cuda")
    return torch.optim.AdamW(policy.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                             weight_decay=cfg.optim.weight_decay, fused=fused)


def autocast(cfg: DiffusionConfig, device: torch.device):
    """bf16 autocast for ``train.precision: bf16`` (matmuls and convolutions in bf16, the rest in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")


def train_step(model: torch.nn.Module, policy: DiffusionPolicy, optimizer: torch.optim.Optimizer, ema: EMA | None,
               batch: dict[str, torch.Tensor], generator: torch.Generator, shard: tuple[int, int],
               cfg: DiffusionConfig, step: int, device: torch.device) -> torch.Tensor:
    """One optimiser step at ``step`` (learning-rate schedule, loss, backward, clipping, AdamW, EMA);
    returns the detached loss. ``model`` is the policy's loss (``LossWrapper``, under DDP its wrapper)."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.optim.lr * lr_factor(step, cfg.optim.warmup_steps, cfg.train.steps)
    with autocast(cfg, device):
        loss = model(batch, generator, shard)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update(policy, step + 1)
    return loss.detach().float()


class LossWrapper(torch.nn.Module):
    """forward() = compute_loss, so DistributedDataParallel sees the call and syncs gradients."""

    def __init__(self, policy: DiffusionPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, batch, generator, shard):
        return self.policy.compute_loss(batch, generator, shard)


@torch.no_grad()
def validation_loss(policy: DiffusionPolicy, data: ds.SequenceDataset, batch_size: int, seed: int,
                    device: torch.device, max_batches: int = 8) -> float | None:
    if len(data) == 0:
        return None
    policy.eval()
    gen = torch.Generator().manual_seed(seed + 7)
    total, count = 0.0, 0
    order = np.random.default_rng(seed + 7).permutation(len(data))
    for start in range(0, min(len(data), batch_size * max_batches), batch_size):
        items = [data[int(i)] for i in order[start:start + batch_size]]
        batch = _to({k: torch.stack([it[k] for it in items]) for k in items[0]}, device)
        total += float(policy.compute_loss(batch, gen)) * len(items)
        count += len(items)
    return total / count


def plot_losses(metrics: list[dict], path: Path, prediction_type: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val = [(m["step"], m["val_loss"]) for m in metrics if m.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation (EMA)")
    target = "noise" if prediction_type == "epsilon" else "clean-action"
    ax.set(xlabel="step", ylabel=f"{target} prediction MSE", yscale="log", title=path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def plot_success(metrics: list[dict], path: Path) -> None:
    """Twin success rate of the periodic evaluations, with 95% Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [m for m in metrics if "eval_success_rate" in m]
    fig, ax = plt.subplots(figsize=(7, 4))
    if evals:
        steps = [m["step"] for m in evals]
        ax.fill_between(steps, [m["eval_ci95"][0] for m in evals], [m["eval_ci95"][1] for m in evals], alpha=0.2,
                        label="95% interval")
        ax.plot(steps, [m["eval_success_rate"] for m in evals], "o-",
                label=f"EMA policy, {evals[-1]['eval_episodes']} episodes")
    ax.set(xlabel="step", ylabel="twin success rate", ylim=(-0.02, 1.02),
           title=f"{path.parent.name}: {evals[-1]['eval_task'] if evals else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def twin_evaluation(policy: DiffusionPolicy, profile, task: str, tc, step: int, out: Path) -> dict:
    """Roll ``policy`` out on the in-process twin (``robot_stack.policies.evaluate``); a metrics entry."""
    from robot_stack.policies.evaluate import evaluate_policy

    start = time.perf_counter()
    report = evaluate_policy(policy, profile, task, tc.eval_episodes, seed=tc.eval_seed, videos=1,
                             out_dir=out / "videos", name=f"step {step}", video_prefix=f"step_{step:06d}_",
                             progress=False)
    return {"step": step, "eval_task": task, "eval_episodes": len(report.episodes), "eval_successes": report.successes,
            "eval_success_rate": report.success_rate, "eval_ci95": list(report.ci95),
            "eval_progress": float(np.mean([e.progress for e in report.episodes])),
            "eval_seconds": time.perf_counter() - start, "eval_videos": report.videos}


def _eval_task(tc, buffer: ds.Buffer) -> str | None:
    if not tc.eval_every:
        return None
    task = tc.eval_task or buffer.task
    if not task:
        raise UserError("--eval-every: the store does not name its task; give --eval-task (e.g. pick_cube)")
    from robot_stack.sim.tasks import load_task_config

    load_task_config(task)  # an unknown task fails now, not after the first eval_every steps
    return task


# -- the run -------------------------------------------------------------------------------------------
def _setup_distributed(device_name: str) -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _prepare(opts: RunOptions) -> tuple[DiffusionConfig, list[str], list[str], str | None, dict | None]:
    """Config, data, robot and initial weights for a new, resumed or fine-tuning run."""
    run_file = opts.out / "run.json"
    init = None
    if opts.resume:
        if not run_file.is_file():
            raise UserError(f"--resume: {opts.out} is not a training run (no run.json); drop --resume to start one")
        run = json.loads(run_file.read_text())
        cfg = from_dict(DiffusionConfig, run["config"], f"{run_file}: config")
        data, interventions = opts.data or run["data"], opts.interventions or run["interventions"]
        robot = opts.robot or run["robot"]  # a profile file given again (run.json keeps its name)
        finetune = run.get("finetune")
    else:
        if run_file.exists():
            raise UserError(f"{opts.out} already holds a run; add --resume to continue it or choose another --out")
        data, interventions, robot, finetune = opts.data, opts.interventions, opts.robot, opts.finetune
        cfg = opts.cfg or DiffusionConfig()
        if finetune:
            ck_cfg, ck_shape, meta = ckpt.read_config(finetune)
            # model and observation sections come from the checkpoint; the training section from the user
            cfg = dataclasses.replace(ck_cfg, optim=cfg.optim, ema=cfg.ema, train=cfg.train)
            robot = robot or ck_shape.robot
            init = {"shape": ck_shape, "weights": ckpt.load_weights(Path(finetune), meta)}
    if opts.train_overrides:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **opts.train_overrides))
    if not data and not interventions:
        raise UserError("no data: give --data <store.zarr> (and/or --interventions <store.zarr>)")
    return cfg, list(data), list(interventions), robot, (init if not opts.resume else {"finetune": finetune})


def _stores_robot(paths: list[str]) -> str | None:
    """The robot profile the stores name, if every readable one names the same (missing stores fail at load)."""
    import zarr

    names = set()
    for path in paths:
        try:
            names.add(ds.store_robot(zarr.open_group(str(path), mode="r")))
        except Exception:  # noqa: BLE001 - load_store reports a missing or corrupt store with one line
            continue
    names.discard(None)
    return names.pop() if len(names) == 1 else None


def with_profile_rois(cfg: DiffusionConfig, profile) -> DiffusionConfig:  # RobotProfile
    """``cfg`` with each observed camera's region of interest from the robot profile (``cameras[].roi``).

    A run that already has regions (resumed, fine-tuned) must agree with the profile: one line otherwise."""
    rois = {cam: tuple(profile.camera(cam).roi) for cam in cfg.obs.cameras if profile.camera(cam).roi is not None}
    if cfg.obs.rois and cfg.obs.rois != rois:
        raise UserError(f"regions of interest: this run/checkpoint crops {_rois(cfg.obs.rois)}, robot profile "
                        f"{profile.name!r} ({profile.source}) crops {_rois(rois)}; use the profile it was trained with")
    return dataclasses.replace(cfg, obs=dataclasses.replace(cfg.obs, rois=rois))


def _rois(rois: dict) -> str:
    return ", ".join(f"{cam} {list(box)}" for cam, box in rois.items()) or "nothing"


def train(opts: RunOptions) -> Path:
    """Train (or resume/fine-tune) a diffusion policy; returns the run folder."""
    from robot_stack.profile import load_profile

    opts.out = Path(opts.out)
    rank, world, local_rank = _setup_distributed(opts.device)
    device = resolve_device(opts.device, local_rank)
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    cfg, data, interventions, robot, init = _prepare(opts)
    tc = cfg.train
    if tc.batch_size % world:
        raise UserError(f"train.batch_size ({tc.batch_size}) must be divisible by the number of processes ({world})")
    torch.manual_seed(tc.seed)

    robot = robot or _stores_robot(data + interventions)
    if not robot:
        raise UserError("the store does not name its robot profile; give --robot (e.g. so101)")
    profile = load_profile(robot)
    cfg = with_profile_rois(cfg, profile)
    buffers = [ds.load_store(p, cfg, skip_damaged=opts.skip_damaged) for p in data]
    buffers += [ds.load_store(p, cfg, weight=tc.intervention_weight, skip_damaged=opts.skip_damaged) for p in interventions]
    buffer = ds.concat(buffers)
    shape = ds.shape_meta(buffer, cfg, profile.name, tuple(profile.all_joint_names))
    if cfg.obs.action_space == "ee":
        buffer, shape = ds.to_ee_actions(buffer, shape, cfg.obs.action_key, EndEffectorActions(profile))
    train_eps, val_eps = ds.split_episodes(len(buffer.episode_ends), tc.val_ratio, tc.seed)
    train_set, val_set = ds.SequenceDataset(buffer, train_eps, cfg), ds.SequenceDataset(buffer, val_eps, cfg)
    eval_task = _eval_task(tc, buffer)

    policy = DiffusionPolicy(cfg, shape)
    if init and "weights" in init:
        diff = ckpt.signature_diff(init["shape"].signature(), shape.signature())
        if diff:
            raise UserError(f"--finetune {opts.finetune} does not fit the data: differing keys: {diff}")
        policy.load_state_dict(init["weights"])  # weights and normaliser of the checkpoint
    else:
        stats = {k: buffer.data[k] for k in policy.normalizer.keys}
        if cfg.obs.relative_actions:  # actions are learnt relative to the current joint position
            stats[cfg.obs.action_key] = train_set.relative_actions()
        policy.normalizer.fit(stats)
    policy.to(device)
    ema = EMA(policy, cfg.ema.power, cfg.ema.inv_gamma, cfg.ema.min_decay, cfg.ema.max_decay) if cfg.ema.enabled else None
    optimizer = make_optimizer(policy, cfg, device)

    step, metrics = 0, []
    latest = opts.out / "checkpoints" / "latest"
    if opts.resume:
        state = ckpt.load_train_state(latest)
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            _, _, meta = ckpt.read_config(latest)
            ema.model.load_state_dict(ckpt.load_weights(latest, meta))
        step = state["step"]
        metrics = [m for m in _read_metrics(opts.out) if m["step"] <= step]
        if rank == 0:  # drop what was logged after the checkpoint we resume from
            (opts.out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    elif rank == 0:
        opts.out.mkdir(parents=True, exist_ok=True)
        run = {"config": to_dict(cfg), "shape_meta": to_dict(shape), "data": [str(p) for p in data],
               "interventions": [str(p) for p in interventions], "robot": profile.name, "finetune": opts.finetune,
               "world_size": world, "device": str(device)}
        (opts.out / "run.json").write_text(json.dumps(run, indent=1))
    best = min((m["val_loss"] for m in metrics if m.get("val_loss") is not None), default=math.inf)
    best_success = max((m["eval_success_rate"] for m in metrics if "eval_success_rate" in m), default=-1.0)

    model = LossWrapper(policy)
    if world > 1:
        # camera crops arrive channels-last, so a 1x1 convolution's weight gradient does too: DDP copies it into
        # its bucket (a few KB) and says so on every step
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = GlobalBatches(len(train_set), tc.batch_size, tc.seed, rank, world, start=step)
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=tc.num_workers,
                                         pin_memory=device.type == "cuda", persistent_workers=tc.num_workers > 0)
    eval_policy = ema.model if ema is not None else policy
    bar = tqdm(total=tc.steps, initial=step, desc=f"train {opts.out.name}", unit="step",
               disable=rank != 0 or not opts.progress, dynamic_ncols=True)
    policy.train()
    t_start, samples, window = time.perf_counter(), 0, []
    batches = iter(loader)
    while step < tc.steps:
        batch = _to(next(batches), device)
        value = train_step(model, policy, optimizer, ema, batch, step_generator(tc.seed, step), (rank, world), cfg,
                           step, device)
        step += 1
        if world > 1:
            dist.all_reduce(value)
            value /= world
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"training diverged at step {step} (loss {value}); lower optim.lr or check the data")
        window.append(value)
        samples += tc.batch_size
        bar.update(1)
        last = step == tc.steps
        if step % tc.log_every == 0 or last or step % tc.val_every == 0:
            entry = {"step": step, "loss": float(np.mean(window)), "lr": optimizer.param_groups[0]["lr"],
                     "samples_per_s": samples / (time.perf_counter() - t_start)}
            window = []
            if rank == 0 and (step % tc.val_every == 0 or last):
                entry["val_loss"] = validation_loss(eval_policy, val_set, tc.batch_size, tc.seed, device)
                policy.train()
            metrics.append(entry)
            if rank == 0:
                _append_metric(opts.out, entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}", **({"val": f"{entry['val_loss']:.4f}"}
                                                                if entry.get("val_loss") is not None else {}))
                if "val_loss" in entry:
                    plot_losses(metrics, opts.out / "loss.png", cfg.scheduler.prediction_type)
                    if eval_task is None and entry["val_loss"] is not None and entry["val_loss"] < best:
                        best = entry["val_loss"]
                        ckpt.save_checkpoint(opts.out / "checkpoints" / "best", eval_policy, step)
        if rank == 0 and eval_task is not None and (step % tc.eval_every == 0 or last):
            result = twin_evaluation(eval_policy, profile, eval_task, tc, step, opts.out)
            t_start += result["eval_seconds"]  # samples/s counts training only
            metrics.append(result)
            _append_metric(opts.out, result)
            plot_success(metrics, opts.out / "success.png")
            bar.write(f"step {step}: twin {eval_task} {result['eval_successes']}/{result['eval_episodes']} successes "
                      f"({result['eval_seconds']:.0f} s, video {result['eval_videos'][0] if result['eval_videos'] else '-'})")
            if result["eval_success_rate"] >= best_success:  # ties: the later, longer-trained weights
                best_success = result["eval_success_rate"]
                ckpt.save_checkpoint(opts.out / "checkpoints" / "best", eval_policy, step)
        if rank == 0 and (step % tc.ckpt_every == 0 or last):
            ckpt.save_checkpoint(latest, eval_policy, step, train_state={
                "model": policy.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
    bar.close()
    if world > 1:
        dist.barrier()
    return opts.out


def _append_metric(out: Path, entry: dict) -> None:
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def _read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
