"""LeRobot's side of ``benchmarks/diffusion_inference.py --peer lerobot`` (run by the lerobot venv's Python).

    .venv-lerobot/bin/python benchmarks/lerobot_peer.py <exchange folder>

Reads ``spec.json`` (LeRobot DiffusionConfig fields, threads, repeats), ``weights.safetensors`` (the
weights of our policy under LeRobot's parameter names) and ``inputs.safetensors`` (normalised
observations, the initial noise, a training batch); builds ``lerobot.policies.diffusion``'s
DiffusionPolicy, loads the weights, and writes ``actions.safetensors`` (the action chunk from that
noise) and ``result.json`` (inference ms per chunk, training samples/s). Only arrays and JSON cross
the process boundary; nothing is pickled. The encoder's final ReLU (LeRobot's, not in our encoder)
is replaced by the identity so that both compute the same function; it costs nothing to time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def build(spec: dict):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(spec["state_dim"],))}
    for cam in spec["cameras"]:
        inputs[f"observation.images.{cam}"] = PolicyFeature(type=FeatureType.VISUAL, shape=tuple(spec["image_shape"]))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(spec["action_dim"],))}
    cfg = DiffusionConfig(input_features=inputs, output_features=outputs, **spec["config"])
    policy = DiffusionPolicy(cfg)
    for encoder in policy.diffusion.rgb_encoder:
        encoder.relu = torch.nn.Identity()
    return policy


def main() -> None:
    folder = Path(sys.argv[1])
    spec = json.loads((folder / "spec.json").read_text())
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    policy = build(spec)
    missing, unexpected = policy.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
    missing = [k for k in missing if not k.endswith("pool.pos_grid")]  # a constant buffer LeRobot makes itself
    if missing or unexpected:
        raise SystemExit(f"weights do not fit LeRobot's DiffusionPolicy: missing {missing}, unexpected {unexpected}")
    data = load_file(str(folder / "inputs.safetensors"))
    obs = {"observation.state": data["state"], "observation.images": data["images"]}
    result: dict = {"torch": torch.__version__, "params": sum(p.numel() for p in policy.parameters())}

    policy.eval()
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(spec["repeats"] + spec["warmup"]):
            t, c = time.perf_counter(), time.process_time()
            actions = policy.diffusion.generate_actions(obs, noise=data["noise"].clone())
            if i >= spec["warmup"]:
                times.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.process_time() - c) * 1e3)
    result["inference_ms"], result["inference_cpu_ms"] = times, cpu
    save_file({"actions": actions.contiguous()}, str(folder / "actions.safetensors"))

    if spec["train_iters"]:
        # LeRobot's training step (lerobot-train's update_policy without AMP): forward, backward,
        # gradient clipping and the optimiser of the policy's own preset (Adam, as lerobot-train builds it).
        policy.train()
        preset = policy.config.get_optimizer_preset()
        optim = preset.build(policy.parameters())
        batch = {"observation.state": data["train_state"], "action": data["train_action"],
                 "action_is_pad": torch.zeros(data["train_action"].shape[:2], dtype=torch.bool)}
        for i, cam in enumerate(spec["cameras"]):
            batch[f"observation.images.{cam}"] = data["train_images"][:, :, i]
        step_times = []
        for i in range(spec["train_iters"] + 2):
            t = time.perf_counter()
            loss, _ = policy.forward(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), preset.grad_clip_norm)
            optim.step()
            optim.zero_grad()
            if i >= 2:
                step_times.append(time.perf_counter() - t)
        result["train_samples_per_s"] = batch["action"].shape[0] / statistics.median(step_times)
        result["train_loss"] = float(loss)
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
