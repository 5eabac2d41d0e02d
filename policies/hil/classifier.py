"""Binary reward classifier (HIL-SERL): is this frame a success? Trained from labelled recorded frames.

Labels come from a per-step key of the episode store (default ``data/success_label``, any number >
0.5 is a success) or, when the store has none, from the episodes' success flags: the final
``final_k`` frames of each successful episode are positives, every frame of a failed episode and
the frames of a successful one before ``final_k + margin`` from its end are negatives (the margin
is left out as ambiguous). Episodes are split into training and held-out sets; the report gives
accuracy, precision and recall on the held-out frames.

Inputs are low-dimensional contract keys (standardised with the training set's statistics, kept in
the checkpoint) and/or one camera image (a small conv net). Checkpoints: ``classifier.safetensors``
+ ``classifier.json``; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from robot_stack.checkpoint_meta import read_meta, sha256_file
from robot_stack.errors import UserError
from robot_stack.typed_config import from_dict, to_dict

FORMAT = "robot_stack.reward_classifier"
VERSION = 1
WEIGHTS, META = "classifier.safetensors", "classifier.json"


@dataclass(frozen=True)
class ClassifierConfig:
    keys: tuple[str, ...] = ("ee_pose", "object_state")
    """Low-dimensional observation keys (concatenated, standardised)."""
    image_key: str = ""
    """Optional ``<camera>_image`` key fed through a small conv net."""
    image_size: tuple[int, int] = (64, 64)
    hidden_dims: tuple[int, ...] = (64, 64)
    label_key: str = "success_label"
    final_k: int = 3
    """Without a label key: positives per successful episode (its last frames)."""
    margin: int = 3
    """Without a label key: frames before the positives left out as ambiguous."""
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    val_ratio: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.keys and not self.image_key:
            raise ValueError("give keys and/or image_key")
        if self.image_key and not self.image_key.endswith("_image"):
            raise ValueError(f"image_key {self.image_key!r} must be '<camera>_image'")
        if not 0.0 <= self.val_ratio < 1.0 or self.final_k < 1 or self.epochs < 1:
            raise ValueError("need 0 <= val_ratio < 1, final_k >= 1, epochs >= 1")


@dataclass
class ClassifierReport:
    train_frames: int
    heldout_frames: int
    positives: int
    negatives: int
    train_accuracy: float
    heldout_accuracy: float
    heldout_precision: float
    heldout_recall: float
    label_source: str
    checkpoint: str = ""

    def lines(self) -> list[str]:
        return [f"frames: {self.train_frames} train, {self.heldout_frames} held out "
                f"({self.positives} positive, {self.negatives} negative; labels from {self.label_source})",
                f"accuracy: train {100 * self.train_accuracy:.1f}%, held out {100 * self.heldout_accuracy:.1f}% "
                f"(precision {100 * self.heldout_precision:.1f}%, recall {100 * self.heldout_recall:.1f}%)"]


class ClassifierNet(nn.Module):
    def __init__(self, cfg: ClassifierConfig, lowdim_dim: int):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(lowdim_dim))
        self.register_buffer("std", torch.ones(lowdim_dim))
        d = lowdim_dim
        self.conv: nn.Module | None = None
        if cfg.image_key:
            self.conv = nn.Sequential(nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
            d += 32 * 16
        layers: list[nn.Module] = []
        for h in cfg.hidden_dims:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, lowdim: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """-> logits (B,). ``image`` uint8-valued (B, H, W, 3)."""
        parts = [(lowdim - self.mean) / self.std]
        if self.conv is not None:
            assert image is not None
            parts.append(self.conv(image.permute(0, 3, 1, 2).float() / 255.0))
        return self.head(torch.cat(parts, 1)).squeeze(-1)


class RewardClassifier:
    """A trained classifier: ``predict(obs_dict)`` -> success probability."""

    def __init__(self, cfg: ClassifierConfig, dims: dict[str, int]):
        self.cfg, self.dims = cfg, dict(dims)
        self.net = ClassifierNet(cfg, sum(dims[k] for k in cfg.keys))
        self.net.eval()

    def features(self, obs: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One observation dict or a dict of stacked arrays -> network inputs (batched)."""
        missing = [k for k in (*self.cfg.keys, *([self.cfg.image_key] if self.cfg.image_key else [])) if k not in obs]
        if missing:
            raise UserError(f"reward classifier needs observation keys {', '.join(missing)}")
        lowdim = [np.asarray(obs[k], dtype=np.float32) for k in self.cfg.keys]
        batched = bool(lowdim) and lowdim[0].ndim == 2
        lowdim = [x if batched else x[None] for x in lowdim]
        for k, x in zip(self.cfg.keys, lowdim):
            if x.shape[1] != self.dims[k]:
                raise UserError(f"reward classifier: {k} has {x.shape[1]} values, trained on {self.dims[k]}")
        low = torch.from_numpy(np.concatenate(lowdim, 1)) if lowdim else torch.zeros(1, 0)
        image = None
        if self.cfg.image_key:
            img = np.asarray(obs[self.cfg.image_key], dtype=np.uint8)
            img = img if img.ndim == 4 else img[None]
            image = torch.from_numpy(resize(img, self.cfg.image_size))
            if not lowdim:
                low = torch.zeros(len(img), 0)
        return low, image

    @torch.no_grad()
    def predict(self, obs: dict[str, np.ndarray]) -> float:
        """Success probability of one observation dict."""
        return float(torch.sigmoid(self.net(*self.features(obs)))[0])

    @torch.no_grad()
    def predict_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return torch.sigmoid(self.net(*self.features(obs))).numpy()

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path: str | Path, report: ClassifierReport | None = None) -> Path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS + ".partial")
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp), metadata={"format": FORMAT})
        tmp.replace(folder / WEIGHTS)
        meta = {"format": FORMAT, "version": VERSION, "config": to_dict(self.cfg), "dims": self.dims,
                "sha256": sha256_file(folder / WEIGHTS), "report": asdict(report) if report else None}
        tmp = folder / (META + ".partial")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(folder / META)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> RewardClassifier:
        folder = Path(path)
        meta = read_meta(folder / META, "reward classifier", FORMAT, VERSION)
        weights = folder / WEIGHTS
        if not weights.is_file() or sha256_file(weights) != meta.get("sha256"):
            raise UserError(f"{weights}: missing or does not match {META} (corrupt or modified)")
        clf = cls(from_dict(ClassifierConfig, meta["config"], str(folder / META)), meta["dims"])
        try:
            clf.net.load_state_dict(load_file(str(weights)))
        except (SafetensorError, RuntimeError) as err:
            raise UserError(f"{weights}: unreadable or does not fit ({str(err).splitlines()[0]})") from None
        return clf


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, h, w, 3), area-resampled."""
    h, w = size
    if images.shape[1:3] == (h, w):
        return np.ascontiguousarray(images)
    return np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])


# -- training ----------------------------------------------------------------------------------------
def frame_labels(store, cfg: ClassifierConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-step labels (1/0) and a mask of the frames to use, from a label key or the success flags."""
    n = store.n_steps
    if cfg.label_key in store.keys:
        labels = (np.asarray(store.array(cfg.label_key)[:n], dtype=np.float64).reshape(n, -1)[:, 0] > 0.5)
        return labels.astype(np.float32), np.ones(n, bool), f"data/{cfg.label_key}"
    labels, use = np.zeros(n, np.float32), np.ones(n, bool)
    flagged = 0
    for i, info in enumerate(store.episodes):
        s = store.episode_slice(i)
        if info.success is None:
            use[s] = False
            continue
        flagged += 1
        if info.success:
            pos = max(s.start, s.stop - cfg.final_k)
            labels[pos: s.stop] = 1
            use[max(s.start, pos - cfg.margin): pos] = False
    if flagged == 0:
        raise UserError(f"{store.path}: no {cfg.label_key!r} key and no episode success flags to label frames with")
    return labels, use, "episode success flags"


def train_classifier(store_path: str | Path, out: str | Path | None = None, cfg: ClassifierConfig | None = None,
                     progress: bool = True) -> ClassifierReport:
    """Train on a recorded store, evaluate on held-out episodes, save to ``out`` (if given)."""
    from robot_stack.data import EpisodeStore

    cfg = cfg or ClassifierConfig()
    store = EpisodeStore(store_path, "r")
    if store.n_episodes == 0:
        raise UserError(f"{store_path}: the store has no episodes")
    for key in (*cfg.keys, *([cfg.image_key] if cfg.image_key else [])):
        if key not in store.keys:
            raise UserError(f"{store_path}: no key {key!r} (keys: {', '.join(store.keys)})")
    labels, use, source = frame_labels(store, cfg)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    episode_of = np.repeat(np.arange(store.n_episodes), np.diff(np.concatenate([[0], store.episode_ends])))
    n_val_eps = int(round(store.n_episodes * cfg.val_ratio))
    if store.n_episodes >= 2 and cfg.val_ratio > 0:
        val_eps = rng.choice(store.n_episodes, max(1, n_val_eps), replace=False)
        val = np.isin(episode_of, val_eps)
    else:  # one episode: hold out frames at random
        val = rng.random(store.n_steps) < cfg.val_ratio
    n = store.n_steps
    dims = {k: int(np.prod(store.keys[k]["shape"])) for k in cfg.keys}
    data = {k: np.asarray(store.array(k)[:n], dtype=np.float32).reshape(n, -1) for k in cfg.keys}
    if cfg.image_key:
        data[cfg.image_key] = resize(np.asarray(store.array(cfg.image_key)[:n]), cfg.image_size)
    train_idx, val_idx = np.flatnonzero(use & ~val), np.flatnonzero(use & val)
    if len(train_idx) == 0 or labels[train_idx].min() == labels[train_idx].max():
        raise UserError(f"{store_path}: the training frames need both successes and failures "
                        f"({int(labels[use].sum())} positive of {int(use.sum())})")
    clf = RewardClassifier(cfg, dims)
    net = clf.net
    if cfg.keys:
        low = np.concatenate([data[k][train_idx] for k in cfg.keys], 1)
        net.mean.copy_(torch.from_numpy(low.mean(0)))
        net.std.copy_(torch.from_numpy(low.std(0) + 1e-3))

    def inputs(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        return clf.features({k: v[idx] for k, v in data.items()})

    y = torch.from_numpy(labels)
    pos = float(labels[train_idx].sum())
    pos_weight = torch.tensor((len(train_idx) - pos) / max(pos, 1.0))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()
    bar = tqdm(range(cfg.epochs), desc="reward classifier", disable=not progress, leave=False)
    for _ in bar:
        order = rng.permutation(train_idx)
        for a in range(0, len(order), cfg.batch_size):
            idx = order[a: a + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(net(*inputs(idx)), y[idx], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    net.eval()

    def scores(idx: np.ndarray) -> tuple[float, float, float]:
        if len(idx) == 0:
            return float("nan"), float("nan"), float("nan")
        with torch.no_grad():
            pred = np.concatenate([(net(*inputs(idx[a: a + 1024])) > 0).numpy() for a in range(0, len(idx), 1024)])
        truth = labels[idx] > 0.5
        tp = float((pred & truth).sum())
        return float((pred == truth).mean()), tp / max(pred.sum(), 1), tp / max(truth.sum(), 1)

    train_acc, _, _ = scores(train_idx)
    val_acc, precision, recall = scores(val_idx)
    report = ClassifierReport(train_frames=len(train_idx), heldout_frames=len(val_idx),
                              positives=int(labels[use].sum()), negatives=int(use.sum() - labels[use].sum()),
                              train_accuracy=train_acc, heldout_accuracy=val_acc, heldout_precision=precision,
                              heldout_recall=recall, label_source=source)
    if out is not None:
        report.checkpoint = str(out)
        clf.save(out, report)
    return report

