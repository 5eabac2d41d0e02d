"""Diffusion policy on the CPU: inference latency and training throughput, before/after, and against LeRobot.

Policies use the shipped presets (``lowdim``: joint_pos + object_state; ``image``: joint_pos + two
96x96 cameras, crop 84x84) and the CPU configs in ``config/policies`` on top of them
(``lowdim_small``: the ``robot-stack demo`` policy; ``image_small``: narrower encoder and U-Net, here
with the same two cameras), with random weights (latency does not depend on training). One run,
torch threads fixed (default 2). Per policy it prints median and p99 latency per action chunk:

* ``DDIM 10 torchscript``: before (the U-Net step as a TorchScript trace, the previous default);
* ``DDIM 10 onnxruntime``: after (the step on ONNX Runtime, the default when installed);
* ``DDIM 2 trailing``: the few-step sampler (``--few-step``), on the default runtime;
* ``train b=32 fp32``: ``robot-stack train``'s step (forward, backward, fused AdamW, EMA); ``bf16``: with
  bf16 autocast, on a GPU (``--bf16`` on the CPU).

``--peer lerobot`` also runs LeRobot 0.6.1's DiffusionPolicy (``scripts/lerobot_venv.sh`` makes its
venv) in its own interpreter at the identical configuration: ResNet-18 encoder (GroupNorm, spatial
softmax, crop 84) per camera, 2 cameras 96x96 + joint_pos, Tp=16, To=2, DDIM 10, epsilon prediction,
at each ``--peer-dims`` U-Net width. Our weights are copied into LeRobot's model (parameter names
mapped, nothing pickled: safetensors and JSON through a temporary folder) and both start from the
same noise, so the two must return the same actions (the max difference is printed); then it prints
both latencies, their ratio, and both training throughputs (batch 32).

    .venv/bin/python benchmarks/diffusion_inference.py [--threads 2] [--repeats 50] [--policies image_small]
    .venv/bin/python benchmarks/diffusion_inference.py --peer lerobot --policies   # only the peer table
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the robot-stack CLI and nodes run torch (docs/diffusion.md)

import numpy as np
import torch

from robot_stack.policies.diffusion.cli import merge_config
from robot_stack.policies.diffusion.config import DiffusionConfig, ShapeMeta, preset, replace
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.policies.diffusion.runtime import onnxruntime_available
from robot_stack.policies.diffusion.train import EMA, LossWrapper, make_optimizer, train_step
from robot_stack.resources import share_dir
from robot_stack.typed_config import load_yaml

REPO = Path(__file__).resolve().parent.parent
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
POLICIES = {"lowdim": ("lowdim", None), "lowdim_small": ("lowdim", "lowdim_small"), "image": ("image", None),
            "image_small": ("image", "image_small"), "visuomotor": ("image", "visuomotor")}
DIMS = {"joint_pos": 6, "ee_pose": 7, "object_state": 7}


def config(kind: str) -> DiffusionConfig:
    """A preset, with a ``config/policies/<name>.yaml`` on top (merged as ``robot-stack train --config``)."""
    base, override = POLICIES[kind]
    if not override:
        return preset(base)
    path = share_dir() / "config" / "policies" / f"{override}.yaml"
    return merge_config(preset(base), load_yaml(path), str(path))


def peer_config(down_dims: tuple[int, ...]) -> DiffusionConfig:
    """LeRobot's DiffusionPolicy defaults in our terms (ResNet-18 widths, 2 blocks per stage, 32 keypoints)."""
    return replace(preset("image"), vision={"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "group_size": 16,
                                            "num_keypoints": 32, "feature_dim": 64, "pool": "spatial_softmax"},
                   unet={"down_dims": down_dims, "kernel_size": 5, "n_groups": 8, "step_embed_dim": 128},
                   scheduler={"inference_steps": 10, "prediction_type": "epsilon"})


def make(cfg: DiffusionConfig, device: torch.device, batch: int = 1, seed: int = 0
         ) -> tuple[DiffusionPolicy, dict[str, torch.Tensor]]:
    shape = ShapeMeta(robot="so101", joint_names=JOINTS, lowdim_dims={k: DIMS[k] for k in cfg.obs.lowdim_keys},
                      action_dim=6, image_keys=cfg.obs.image_keys)
    torch.manual_seed(seed)
    policy = DiffusionPolicy(cfg, shape).to(device).eval()
    g = torch.Generator().manual_seed(seed)
    to = cfg.horizon.n_obs_steps
    obs = {k: (torch.rand(batch, to, DIMS[k], generator=g) * 2 - 1).to(device) for k in cfg.obs.lowdim_keys}
    obs.update({k: torch.randint(0, 256, (batch, to, 96, 96, 3), dtype=torch.uint8, generator=g).to(device)
                for k in cfg.obs.image_keys})
    return policy, obs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency(policy: DiffusionPolicy, obs: dict, steps: int, repeats: int, device: torch.device,
            warmup: int = 3, samples: bool = False):
    """(median, p99) ms per chunk over ``repeats`` calls after ``warmup``; ``samples``: the lists of wall-clock
    and process CPU times (all threads: the work done, which the machine's other load does not inflate)."""
    times, cpu = [], []
    for i in range(repeats + warmup):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        policy.predict_action(obs, num_steps=steps)
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
    return (times, cpu) if samples else (statistics.median(times), float(np.percentile(times, 99)))


def training_batch(policy: DiffusionPolicy, batch_size: int, device: torch.device, seed: int = 1) -> dict:
    _, batch = make(policy.cfg, device, batch_size, seed)
    g = torch.Generator().manual_seed(seed)
    batch["action"] = (torch.rand(batch_size, policy.cfg.horizon.horizon, 6, generator=g) * 2 - 1).to(device)
    return batch


def throughput(policy: DiffusionPolicy, batch: dict, iters: int, device: torch.device, precision: str) -> float:
    """Samples/s of ``train.train_step`` (forward, backward, AdamW, EMA) as ``robot-stack train`` runs it;
    precision ``fp32-before``: with the per-parameter AdamW loop the training used before (torch's CPU default)."""
    policy = copy.deepcopy(policy)  # train a copy: the caller's weights stay those the peer was given
    cfg = replace(policy.cfg, train={"precision": precision.removesuffix("-before")})
    policy.cfg = cfg
    optimizer = make_optimizer(policy, cfg, device, fused=not precision.endswith("-before"))
    ema = EMA(policy, cfg.ema.power, cfg.ema.inv_gamma, cfg.ema.min_decay, cfg.ema.max_decay)
    policy.train()
    times = []
    for i in range(iters + 2):
        _sync(device)
        t = time.perf_counter()
        train_step(LossWrapper(policy), policy, optimizer, ema, batch, torch.Generator().manual_seed(i), (0, 1), cfg, i, device)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return len(batch["action"]) / statistics.median(times)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def precisions(args: argparse.Namespace, device: torch.device) -> list[str]:
    """fp32, and bf16 autocast on a GPU that has it (on this AVX512-BF16 CPU it was 30-80x slower: ``--bf16``)."""
    bf16 = bf16_supported(device) and (device.type == "cuda" or args.bf16)
    return ["fp32-before", "fp32"] + (["bf16"] if bf16 else [])


# -- the table of our policies ---------------------------------------------------------------------------
def _row(kind: str, params: float, case: str, med: str, p99: str, cpu: str, sps: str) -> None:
    print(f"{kind:<12} {params:>7.1f}M {case:<30} {med:>10} {p99:>8} {cpu:>8} {sps:>10}", flush=True)


def _timed(policy: DiffusionPolicy, obs: dict, steps: int, repeats: int, device: torch.device) -> tuple[str, str, str]:
    wall, work = latency(policy, obs, steps, repeats, device, samples=True)
    return f"{statistics.median(wall):.1f}", f"{np.percentile(wall, 99):.1f}", f"{statistics.median(work):.1f}"


def ours(args: argparse.Namespace, device: torch.device) -> None:
    after = "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torchscript"
    print(f"{'policy':<12} {'params':>8} {'case':<30} {'median ms':>10} {'p99 ms':>8} {'CPU ms':>8} {'samples/s':>10}",
          flush=True)
    for kind in args.policies:
        policy, obs = make(config(kind), device)
        params = sum(p.numel() for p in policy.parameters()) / 1e6
        for steps in args.ddim:
            for runtime in dict.fromkeys(["torchscript", after]):
                policy.runtime = runtime
                label = f"DDIM {steps} {runtime}" + (" (before)" if runtime == "torchscript" else "")
                _row(kind, params, label, *_timed(policy, obs, steps, args.repeats, device), "")
        policy.runtime = "auto"
        policy.set_sampler(args.few_step, "trailing")
        _row(kind, params, f"DDIM {args.few_step} trailing {after}", *_timed(policy, obs, args.few_step, args.repeats,
                                                                             device), "")
        batch = training_batch(policy, args.batch_size, device)
        for precision in precisions(args, device) if args.train_iters else []:
            sps = throughput(policy, batch, args.train_iters, device, precision)
            _row(kind, params, f"train b={args.batch_size} {precision.replace('-before', ' (before)')}", "", "", "",
                 f"{sps:.0f}")


# -- the peer --------------------------------------------------------------------------------------------
_RES = [(r"\.block1\.", ".conv1.block."), (r"\.block2\.", ".conv2.block."), (r"\.cond\.", ".cond_encoder."),
        (r"\.residual\.", ".residual_conv.")]


def lerobot_name(name: str, cfg: DiffusionConfig) -> str | None:
    """Our parameter name -> LeRobot 0.6.1's (``diffusion.`` + ``rgb_encoder.<i>`` / ``unet``); None: not in it."""
    if name.startswith("normalizer."):
        return None  # LeRobot normalises in its processor pipeline, outside the model
    m = re.match(r"encoders\.(\w+)\.(.*)", name)
    if m:
        cam, rest = cfg.obs.image_keys.index(m.group(1)), m.group(2)
        rest = re.sub(r"^stem\.", "backbone.", rest)
        stage = re.match(r"stages\.(\d+)\.(.*)", rest)
        if stage:  # stages are flattened blocks; torchvision nests them as layer<i>.<block>
            j, tail = int(stage.group(1)), stage.group(2)
            layer = int(np.searchsorted(np.cumsum(cfg.vision.blocks), j, side="right"))
            block = j - int(sum(cfg.vision.blocks[:layer]))
            for a, b in (("norm1", "bn1"), ("norm2", "bn2"), ("shortcut", "downsample")):
                tail = re.sub(rf"^{a}\.", f"{b}.", tail)
            rest = f"backbone.{4 + layer}.{block}.{tail}"
        rest = re.sub(r"^pool\.keypoints\.", "pool.nets.", rest)
        return f"diffusion.rgb_encoder.{cam}.{rest}"
    rest = name.removeprefix("unet.")
    for a, b in (("step_encoder.", "diffusion_step_encoder."), ("down.", "down_modules."), ("mid.", "mid_modules."),
                 ("up.", "up_modules.")):
        if rest.startswith(a):
            rest = b + rest[len(a):]
    rest = re.sub(r"^final\.0\.", "final_conv.0.block.", rest)
    rest = re.sub(r"^final\.1\.", "final_conv.1.", rest)
    for a, b in _RES:
        rest = re.sub(a, b, rest)
    return f"diffusion.unet.{rest}"


def lerobot_inputs(obs: dict, cfg: DiffusionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Our raw observations -> LeRobot's normalised state and images (B, To, cams, 3, H, W) in [-1, 1]
    (our encoder maps uint8 x to x / 127.5 - 1 itself; our normaliser is the identity here)."""
    images = torch.stack([obs[k] for k in cfg.obs.image_keys], 2).permute(0, 1, 2, 5, 3, 4).float() / 127.5 - 1
    return obs["joint_pos"].float(), images.contiguous()


def run_peer(args: argparse.Namespace, down_dims: tuple[int, ...], device: torch.device) -> None:
    """LeRobot and ours at one U-Net width, in ``--rounds`` alternating rounds (the machine's load hits both)."""
    from safetensors.torch import load_file, save_file

    python = Path(os.environ.get("LEROBOT_PYTHON", REPO / ".venv-lerobot" / "bin" / "python"))
    if not python.is_file():
        raise SystemExit(f"--peer lerobot: no {python} (run scripts/lerobot_venv.sh, or set LEROBOT_PYTHON)")
    cfg = peer_config(down_dims)
    policy, obs = make(cfg, device)
    batch = training_batch(policy, args.batch_size, device)
    noise = torch.randn(1, cfg.horizon.horizon, 6, generator=torch.Generator().manual_seed(7))
    start, n_act = cfg.horizon.n_obs_steps - 1, cfg.horizon.n_action_steps
    runtimes = ["torchscript"] + (["onnxruntime"] if device.type == "cpu" and onnxruntime_available() else [])
    peer_ms, peer_cpu, peer_sps, ms, cpu, sps, diff = [], [], [], {}, {}, {}, {}
    few = make(replace(cfg, scheduler={"inference_steps": args.few_step, "timestep_spacing": "trailing"}), device)[0]
    few.load_state_dict(policy.state_dict())
    with tempfile.TemporaryDirectory(prefix="lerobot_peer_") as tmp:
        folder = Path(tmp)
        weights = {lerobot_name(k, cfg): v.contiguous() for k, v in policy.state_dict().items()}
        save_file({k: v for k, v in weights.items() if k}, str(folder / "weights.safetensors"))
        state, images = lerobot_inputs(obs, cfg)
        train_state, train_images = lerobot_inputs(batch, cfg)
        save_file({"state": state, "images": images, "noise": noise, "train_state": train_state,
                   "train_images": train_images, "train_action": batch["action"]}, str(folder / "inputs.safetensors"))
        spec = {"threads": args.threads, "repeats": args.peer_repeats, "warmup": 2, "train_iters": args.train_iters,
                "state_dim": 6, "action_dim": 6, "cameras": [k.removesuffix("_image") for k in cfg.obs.image_keys],
                "image_shape": [3, 96, 96],
                "config": {"n_obs_steps": 2, "horizon": 16, "n_action_steps": 8, "crop_shape": [84, 84],
                           "pretrained_backbone_weights": None, "use_group_norm": True,
                           "use_separate_rgb_encoder_per_camera": True, "spatial_softmax_num_keypoints": 32,
                           "down_dims": list(down_dims), "kernel_size": 5, "n_groups": 8,
                           "diffusion_step_embed_dim": 128, "noise_scheduler_type": "DDIM", "num_inference_steps": 10,
                           "prediction_type": "epsilon", "clip_sample": True}}
        (folder / "spec.json").write_text(json.dumps(spec))
        for _ in range(args.rounds):
            proc = subprocess.run([str(python), str(Path(__file__).with_name("lerobot_peer.py")), str(folder)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
            if proc.returncode:
                raise SystemExit(f"LeRobot peer failed:\n{proc.stderr[-3000:]}")
            peer = json.loads((folder / "result.json").read_text())
            peer_ms += peer["inference_ms"]
            peer_cpu += peer["inference_cpu_ms"]
            peer_sps.append(peer.get("train_samples_per_s", 0.0))
            peer_actions = load_file(str(folder / "actions.safetensors"))["actions"]
            for runtime in runtimes:
                policy.runtime = runtime
                actions = policy.predict_action(obs, noise=noise)[:, start:start + n_act]
                diff[runtime] = max(diff.get(runtime, 0.0), float((actions - peer_actions).abs().max()))
                wall, work = latency(policy, obs, 10, args.peer_repeats, device, warmup=2, samples=True)
                ms.setdefault(runtime, []).extend(wall)
                cpu.setdefault(runtime, []).extend(work)
            wall, work = latency(few, obs, args.few_step, args.peer_repeats, device, warmup=2, samples=True)
            ms.setdefault("few", []).extend(wall)
            cpu.setdefault("few", []).extend(work)
            for precision in precisions(args, device) if args.train_iters else []:
                sps.setdefault(precision, []).append(throughput(policy, batch, args.train_iters, device, precision))

    name = "-".join(map(str, down_dims))
    base_ms, base_cpu, base_sps = statistics.median(peer_ms), statistics.median(peer_cpu), statistics.median(peer_sps)

    def line(label: str, wall: list[float], work: list[float], da: str) -> None:
        w, c = statistics.median(wall), statistics.median(work)
        print(f"{name:<15} {label:<34} {w:>9.1f} {w / base_ms:>6.2f} {c:>8.1f} {c / base_cpu:>6.2f} {da:>9}", flush=True)

    line(f"LeRobot {peer['torch']} DDIM 10", peer_ms, peer_cpu, "-")
    for runtime in runtimes:
        line(f"ours DDIM 10 {runtime}" + (" (before)" if runtime == "torchscript" else ""), ms[runtime], cpu[runtime],
             f"{diff[runtime]:.1e}")
    line(f"ours DDIM {args.few_step} trailing {runtimes[-1]}", ms["few"], cpu["few"], "-")
    if not args.train_iters:
        return
    print(f"{name:<15} {f'LeRobot train b={args.batch_size}':<34} {'samples/s':>9} {base_sps:>6.1f}", flush=True)
    for precision in precisions(args, device):
        value = statistics.median(sps[precision])
        label = f"ours train {precision.replace('-before', ' (before)')}"
        print(f"{name:<15} {label:<34} {'samples/s':>9} {value:>6.1f}  ratio {value / base_sps:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-iters", type=int, default=3, help="timed training steps (0: no training rows)")
    parser.add_argument("--policies", nargs="*", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--ddim", nargs="+", type=int, default=[10], help="DDIM step counts to time")
    parser.add_argument("--few-step", type=int, default=2, help="steps of the few-step (trailing DDIM) rows")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (GPU rows: run it on a GPU machine)")
    parser.add_argument("--bf16", action="store_true", help="also time bf16-autocast training on the CPU")
    parser.add_argument("--peer", choices=["lerobot"], help="also time LeRobot's DiffusionPolicy at the same configuration")
    parser.add_argument("--peer-dims", nargs="+", default=["64,128,256", "512,1024,2048"],
                        help="U-Net down_dims of the peer comparison")
    parser.add_argument("--peer-repeats", type=int, default=10, help="timed chunks per side and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating LeRobot/ours rounds per width")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch (use --device cpu)")
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, onnxruntime "
          f"{'yes' if onnxruntime_available() else 'no'}, bf16 {'yes' if bf16_supported(device) else 'no'}, "
          f"load average before start {os.getloadavg()[0]:.2f}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""), flush=True)
    if args.policies:
        ours(args, device)
    if args.peer:
        print(f"\npeer: LeRobot DiffusionPolicy vs ours, identical configuration (ResNet-18 GroupNorm encoder per camera, "
              f"2 cameras 96x96 + joint_pos, DDIM 10), batch 1 latency per chunk, training batch {args.batch_size}")
        print(f"{'down_dims':<15} {'case':<34} {'wall ms':>9} {'ratio':>6} {'CPU ms':>8} {'ratio':>6} {'max |da|':>9}")
        for dims in args.peer_dims:
            run_peer(args, tuple(int(d) for d in dims.split(",")), device)
    print(f"load average after: {os.getloadavg()[0]:.2f} (the machine is shared; figures are from one run)")


if __name__ == "__main__":
    sys.exit(main())
