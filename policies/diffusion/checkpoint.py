"""Checkpoints without pickle: safetensors weights + a JSON config with the normaliser and a hash.

A checkpoint is a folder::

    model.safetensors        policy weights (EMA when enabled) incl. normaliser buffers
    config.json              DiffusionConfig, ShapeMeta, normaliser stats, sha256 of the weights, step
    train_state.safetensors  (training runs only) raw weights, optimiser moments
    train_state.json         (training runs only) optimiser hyper-parameters, step

Loading checks the hash (corrupt/modified weights are refused) and, given a robot profile or the
observation keys of an environment, that the checkpoint fits it; a mismatch is one line listing
every differing key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robot_stack.checkpoint_meta import read_meta, sha256_file
from robot_stack.errors import UserError
from robot_stack.policies.diffusion.config import DiffusionConfig, ShapeMeta
from robot_stack.policies.diffusion.policy import DiffusionPolicy
from robot_stack.devices import resolve_device
from robot_stack.typed_config import from_dict, to_dict

FORMAT = "robot_stack.diffusion_policy"
VERSION = 1
MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"


def _tensors(module_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module_state.items()}


def save_checkpoint(folder: str | Path, policy: DiffusionPolicy, step: int = 0,
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write ``policy`` (and optionally the training state) to ``folder`` atomically per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / MODEL_FILE, lambda p: save_file(_tensors(policy.state_dict()), str(p), metadata={"format": FORMAT}))
    meta = {
        "format": FORMAT, "version": VERSION, "step": step, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": sha256_file(folder / MODEL_FILE), "config": to_dict(policy.cfg), "shape_meta": to_dict(policy.shape),
        "normalizer": policy.normalizer.stats(),
    }
    if train_state is not None:
        tensors, plain = _flatten_train_state(train_state)
        _atomic(folder / STATE_FILE, lambda p: save_file(tensors, str(p)))
        _atomic(folder / STATE_JSON, lambda p: p.write_text(json.dumps(plain, indent=1)))
    _atomic(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=1)))
    return folder


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    tmp.replace(path)


def read_config(folder: str | Path) -> tuple[DiffusionConfig, ShapeMeta, dict[str, Any]]:
    folder = Path(folder)
    path = folder / CONFIG_FILE
    meta = read_meta(path, "diffusion policy", FORMAT, VERSION, "; give a run's checkpoints/<name> folder")
    cfg = from_dict(DiffusionConfig, meta["config"], f"{path}: config")
    shape = from_dict(ShapeMeta, meta["shape_meta"], f"{path}: shape_meta")
    return cfg, shape, meta


def expected_signature(shape: ShapeMeta, profile: Any = None, obs_keys: Iterable[str] | None = None) -> dict[str, object]:
    """The checkpoint's signature as the given robot profile / environment would have it."""
    sig = dict(shape.signature())
    if profile is not None:
        joints = list(profile.all_joint_names)
        sig.update(robot=profile.name, joint_names=joints, action_dim=len(joints))
        for key in ("joint_pos", "joint_vel"):
            if f"obs.{key}" in sig:
                sig[f"obs.{key}"] = len(joints)
        for key in shape.image_keys:
            cam = key.removesuffix("_image")
            sig[f"obs.{key}"] = "image" if cam in profile.camera_names else "no such camera"
    if obs_keys is not None:
        present = set(obs_keys)
        for key in [*shape.lowdim_dims, *shape.image_keys]:
            if key not in present:
                sig[f"obs.{key}"] = "missing"
    return sig


def roi_signature(shape: ShapeMeta, rois: dict[str, Any], profile: Any = None) -> dict[str, object]:
    """``obs.<camera>_image.roi`` per observed camera: the checkpoint's region of interest (``rois``), or with
    ``profile`` the profile's (``cameras[].roi``); 'none' for the whole image."""
    sig: dict[str, object] = {}
    for key in shape.image_keys:
        cam = key.removesuffix("_image")
        if profile is not None:
            roi = next((c.roi for c in profile.cameras if c.name == cam), None)
        else:
            roi = rois.get(cam)
        sig[f"obs.{key}.roi"] = list(roi) if roi is not None else "none"
    return sig


def check_compatible(shape: ShapeMeta, where: str, profile: Any = None, obs_keys: Iterable[str] | None = None,
                     rois: dict[str, Any] | None = None) -> None:
    """Raise a one-line UserError listing every key on which the checkpoint and the target differ.

    ``rois``: the checkpoint's regions of interest (``obs.rois``), compared with the profile's cameras."""
    have, want = shape.signature(), expected_signature(shape, profile, obs_keys)
    if profile is not None:
        have, want = {**have, **roi_signature(shape, rois or {})}, {**want, **roi_signature(shape, {}, profile)}
    diff = signature_diff(have, want)
    if diff:
        target = f"robot {profile.name!r}" if profile is not None else "this environment"
        raise UserError(f"{where} does not fit {target}: differing keys: {diff}")


def signature_diff(have: dict[str, object], want: dict[str, object]) -> str:
    """'' when equal, else one line: ``key (checkpoint A, here B); ...`` over the keys of both."""
    missing = object()
    keys = list(have) + [k for k in want if k not in have]
    parts = [f"{k} (checkpoint {_short(have.get(k, 'absent'))}, here {_short(want.get(k, 'absent'))})"
             for k in keys if have.get(k, missing) != want.get(k, missing)]
    return "; ".join(parts)


def _short(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def load_policy(folder: str | Path, profile: Any = None, obs_keys: Iterable[str] | None = None,
                device: str | torch.device = "cpu") -> DiffusionPolicy:
    """Load a checkpoint for inference (eval mode), validated against ``profile`` / ``obs_keys``.

    ``device``: ``cpu``, ``cuda[:n]`` or ``auto`` (CUDA when torch sees a GPU)."""
    folder = Path(folder)
    device = resolve_device(device)
    cfg, shape, meta = read_config(folder)
    check_compatible(shape, f"checkpoint {folder}", profile, obs_keys, cfg.obs.rois)
    policy = DiffusionPolicy(cfg, shape)
    policy.load_state_dict(load_weights(folder, meta))
    if cfg.obs.action_space == "ee" and profile is not None:  # the deployment's own kinematic model
        from robot_stack.policies.diffusion.ee_actions import EndEffectorActions

        policy.ee_actions = EndEffectorActions(profile)
    return policy.to(device).eval()


def load_weights(folder: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = folder / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{folder}: missing {MODEL_FILE}")
    if sha256_file(path) != meta.get("sha256"):
        raise UserError(f"{path}: hash does not match {CONFIG_FILE} (file corrupt or modified); use another checkpoint")
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise UserError(f"{path}: unreadable safetensors ({err})") from None


# -- training state ----------------------------------------------------------------------------------
def _flatten_train_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """{model, optimizer, step, extra} -> (flat tensor dict, JSON-able rest)."""
    tensors = {f"model.{k}": v for k, v in _tensors(state["model"]).items()}
    opt = state["optimizer"]
    for idx, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    plain = {"step": state["step"], "param_groups": opt["param_groups"], "extra": state.get("extra", {})}
    return tensors, plain


def load_train_state(folder: str | Path) -> dict[str, Any]:
    """Inverse of the training-state part of ``save_checkpoint``."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file() or not (folder / STATE_JSON).is_file():
        raise UserError(f"{folder}: no training state to resume from ({STATE_FILE}); start a new run instead")
    flat = load_file(str(folder / STATE_FILE))
    plain = json.loads((folder / STATE_JSON).read_text())
    model = {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")}
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    return {"model": model, "optimizer": {"state": opt_state, "param_groups": plain["param_groups"]},
            "step": plain["step"], "extra": plain.get("extra", {})}
