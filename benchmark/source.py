"""Source checkpoints: the source-pretrained starting weights every method of a shifted domain uses.

DESIGN §4/§5 ("Starting weights"): on a domain whose data has a ``source`` split (foggy_cityscapes:
clear train; sonar: the source survey; DOTA with ``source_sensor``), a source model is trained once
per (domain setup, dataset version, source-split version, seed, detector, schedule, threads, code)
and cached; every method's rounds start from it (``new_detector()`` returns the source weights), the
supervised baseline included, so a comparison measures what a method adds on top of the same start.
Source-free methods (paradigm ``sfda``) get the weights and the frozen discriminator below, never
source samples: ``TrainContext`` holds only the pool's labelled and unlabelled samples.

The source phase (``train_source``)
    1. the detector is built with the run's initial weights (``seed_hash(seed, "weights")``) and
       trained supervised on the whole source split with the matrix's schedule (``train_supervised``:
       random flips, the same loss, optimiser, learning-rate schedule and weight EMA as the
       supervised baseline), batches drawn by ``seed_hash(seed, "source")``;
    2. a small **domain discriminator head** (``DomainDiscriminator``: per-level global average
       pooling of the FPN maps -> standardisation with the clean source features' mean and std ->
       Linear(D, 64) -> ReLU -> Linear(64, 1)) is trained on the finished source detector's
       features, which stay fixed. Only source data exists at this point, so the "target" side is
       a **reconstruction [I]**: source images under a random synthetic appearance shift
       (``appearance_shift``: haze with the optical model ``I = J t + A (1 - t)`` and a vertical
       transmittance gradient standing in for depth, a slight airlight tint, reduced contrast and
       sensor noise). Label 0 = clean source, 1 = shifted. Features are computed the way a student
       computes them while it adapts: BatchNorm in training mode (batch statistics, running
       statistics left alone) on batches that are all clean or all shifted. 24 + 24 batches of
       ``min(8, batch_size)`` images, then 300 full-batch Adam steps (lr 1e-3, weight decay 1e-4);
       its training accuracy is kept in ``meta.json``. The head is frozen from then on (SAR's
       "static adversarial regularisation", see ``baselines/sar_source_free.py``).

The cache (``<out>/_cache/source/<key>/``: ``model.pt`` with ``{"detector", "discriminator",
"discriminator_config"}``, ``meta.json``, ``DONE``) is made safe for parallel workers on any number
of hosts: a worker holds the lease ``<key>.lease`` (``benchmark.runstate``: created atomically,
heart-beaten, taken over when its holder dies) while it checks, trains and publishes, so the others
wait and then re-use the result; the result is written into a private temporary folder and
published by one atomic ``rename`` (should two workers ever build, the identical model is trained
deterministically, the first rename wins and the other copy is discarded). The record
of every round keeps ``init`` ("source" | "scratch") and ``source_checkpoint`` (sha256 of
``model.pt``, null for scratch); the source phase's cost ``timing.source_train_s`` (seconds,
measured once, when it was trained) and ``timing.source_reused`` go with the other (volatile)
timings, since a resumed run re-uses a checkpoint that an uninterrupted one trained. The round-0
cache key includes the checkpoint hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.codehash import ALWAYS, closure, code_hash
from benchmark.data import DomainData, ImageStore, source_dataset
from benchmark.detectors.base import make_batch
from benchmark.results import atomic_write_json, atomic_write_text
from benchmark.runstate import exclusive
from benchmark.spec import Cell, canonical_hash, seed_hash
from benchmark.training import ProgressFn, flip_batch, frozen_bn_statistics, sample_targets, train_supervised
from domains.base import DomainDataset

CHECKPOINT_FORMAT = 1
DISC_HIDDEN = 64
DISC_BATCHES = 24  # batches of clean and of shifted source images the discriminator sees
DISC_STEPS = 300
DISC_LR = 1e-3


def code_version() -> str:
    """Hash of the code a source checkpoint runs (``benchmark.codehash``: this module, the detector, the
    augmentations, the training loop and what they import): a change makes old checkpoints stale."""
    return code_hash(closure([__name__, *ALWAYS]))


# ------------------------------------------------------------------------------ discriminator


def pooled_features(fpn: list[torch.Tensor], sizes: list[tuple[int, int]], strides) -> torch.Tensor:
    """Global average pool of each FPN level over each image's true (unpadded) area, concatenated:
    (B, levels * channels). Differentiable (the adversarial loss flows through it)."""
    out = []
    for b, (h, w) in enumerate(sizes):
        per_level = []
        for p, s in zip(fpn, strides, strict=True):
            hh, ww = max(1, math.ceil(h / s)), max(1, math.ceil(w / s))
            per_level.append(p[b, :, :hh, :ww].float().mean((1, 2)))
        out.append(torch.cat(per_level))
    return torch.stack(out)


def batch_features(model: nn.Module, images: list[torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """Pooled FPN features of uint8 images through ``model`` in its current mode (graph attached)."""
    batch = make_batch(images).to(device)
    _, fpn = model.features(batch.images)
    return pooled_features(fpn, batch.sizes, model.cfg.strides)


class DomainDiscriminator(nn.Module):
    """A two-layer MLP on pooled FPN features: logit > 0 = "shifted / target-like", < 0 = "source".
    ``mean``/``std`` (buffers) standardise its input with the clean source features' statistics."""

    def __init__(self, in_dim: int, hidden: int = DISC_HIDDEN) -> None:
        super().__init__()
        self.in_dim, self.hidden = in_dim, hidden
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp((feats - self.mean) / self.std)[:, 0]

    def config(self) -> dict[str, int]:
        return {"in_dim": self.in_dim, "hidden": self.hidden}

    def freeze(self) -> DomainDiscriminator:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
            p.grad = None
        return self


def appearance_shift(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random synthetic appearance shift of a uint8 (3, H, W) image (our reconstruction [I] of a
    "target-like" view when only source data exists): haze ``I = J t + A (1 - t)`` with the
    transmittance ``t`` falling towards the top of the image (a depth proxy), a slightly tinted
    airlight ``A``, a contrast reduction and Gaussian sensor noise."""
    x = image.float() / 255.0
    _, h, _ = x.shape
    r = torch.rand(5, generator=gen)
    t_near = 0.35 + 0.45 * float(r[0])
    ramp = torch.linspace(1.0, 0.0, h)[None, :, None]  # 1 at the top (far), 0 at the bottom
    t = t_near ** (1.0 + 2.0 * float(r[1]) * ramp)
    tint = 1.0 + 0.08 * (torch.rand((3, 1, 1), generator=gen) - 0.5)
    airlight = ((0.65 + 0.3 * float(r[2])) * tint).clamp(0.0, 1.0)
    x = x * t + airlight * (1.0 - t)
    contrast = 0.75 + 0.25 * float(r[3])
    m = x.mean()
    x = (x - m) * contrast + m
    x = x + 0.03 * float(r[4]) * torch.randn(x.shape, generator=gen)
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def train_discriminator(
    model: nn.Module,
    images: list[torch.Tensor],
    gen: torch.Generator,
    device: str = "cpu",
    batch_size: int = 8,
    n_batches: int = DISC_BATCHES,
    steps: int = DISC_STEPS,
) -> tuple[DomainDiscriminator, dict[str, float]]:
    """Fit a ``DomainDiscriminator`` on ``model``'s features (the model is not changed): clean
    batches of ``images`` (label 0) against batches of their ``appearance_shift`` (label 1), both
    with random flips; returns the frozen head and its training accuracy."""
    if not images:
        raise ValueError("no images to train the domain discriminator on")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()
    feats, labels = [], []
    n = len(images)
    bs = max(2, min(batch_size, n)) if n > 1 else 1
    no_boxes = {"boxes": torch.zeros((0, 4))}
    with torch.no_grad(), frozen_bn_statistics(model):
        for _ in range(n_batches):
            for lab in (0.0, 1.0):
                idx = torch.randint(n, (bs,), generator=gen).tolist()
                ims, _ = flip_batch([images[i] for i in idx], [no_boxes] * bs, gen)
                if lab:
                    ims = [appearance_shift(im, gen) for im in ims]
                feats.append(batch_features(model, ims, device).cpu())
                labels.append(torch.full((bs,), lab))
    model.load_state_dict(saved)
    model.train(was_training)
    x, y = torch.cat(feats), torch.cat(labels)
    with torch.random.fork_rng(devices=[]):  # the layers' default init must not touch the global RNG
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        disc = DomainDiscriminator(x.shape[1])
    clean = x[y == 0]
    disc.mean.copy_(clean.mean(0))
    disc.std.copy_(clean.std(0).clamp(min=1e-4) if len(clean) > 1 else torch.ones(x.shape[1]))
    opt = torch.optim.Adam(disc.parameters(), lr=DISC_LR, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(disc(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float(((disc(x) > 0).float() == y).float().mean())
        final = float(nn.functional.binary_cross_entropy_with_logits(disc(x), y))
    return disc.freeze(), {"disc_train_accuracy": round(acc, 4), "disc_train_loss": round(final, 4)}


# ------------------------------------------------------------------------------ checkpoints


@dataclass
class SourceCheckpoint:
    """A published source checkpoint: where it is, its hash and what it cost."""

    path: Path  # model.pt
    sha256: str
    key: str
    train_s: float
    reused: bool
    meta: dict[str, Any] = field(default_factory=dict)
    _ckpt: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._ckpt is None:
            self._ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        return self._ckpt

    def detector_state(self) -> dict[str, torch.Tensor]:
        return self._load()["detector"]

    def discriminator(self) -> DomainDiscriminator:
        """A fresh, frozen copy of the checkpoint's domain discriminator head."""
        ck = self._load()
        with torch.random.fork_rng(devices=[]):
            disc = DomainDiscriminator(**ck["discriminator_config"])
        disc.load_state_dict(ck["discriminator"])
        return disc.freeze()

    def record_fields(self) -> dict[str, Any]:
        return {
            "init": "source",
            "source_checkpoint": self.sha256,
            "source_train_s": round(self.train_s, 3),
            "source_reused": self.reused,
        }


SCRATCH_RECORD = {"init": "scratch", "source_checkpoint": None, "source_train_s": 0.0, "source_reused": False}


def source_key(cell: Cell, data: DomainData, source: DomainDataset) -> str:
    return canonical_hash(
        {
            "domain": cell.domain.name,
            "options": cell.domain.options,
            "data": cell.domain.data_label(),
            "dataset": cell.dataset_version or data.version,
            "source_split": source.version,
            "seed": cell.seed,
            "detector": cell.detector,
            "detector_options": cell.detector_options,
            "schedule": asdict(cell.schedule),
            "threads": cell.threads,
            "code": code_version(),
        },
        24,
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _exclusive(lock_path: Path) -> contextlib.AbstractContextManager:
    """Hold the build lease on ``lock_path`` (``benchmark.runstate.exclusive``): one worker on any
    host that shares the folder builds, the others wait; a crashed builder's lease goes stale and a
    waiter takes over. The atomic rename below keeps the cache correct even without it."""
    return exclusive(lock_path, what="source checkpoint")


def _published(final: Path, key: str, reused: bool) -> SourceCheckpoint:
    meta = json.loads((final / "meta.json").read_text())
    return SourceCheckpoint(
        final / "model.pt", file_sha256(final / "model.pt"), key, float(meta["train_s"]), reused, meta
    )


def train_source(
    cell: Cell,
    source: DomainDataset,
    new_scratch: Callable[[], nn.Module],
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The source phase (module docstring): returns the checkpoint dict and its statistics."""
    store = ImageStore(source.image)
    images = store.many(source.ids)
    targets = [sample_targets(s) for s in source]
    gen = torch.Generator().manual_seed(seed_hash(cell.seed, "source"))
    model = new_scratch()
    train_supervised(model, images, targets, cell.schedule, gen, device, progress)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    disc, stats = train_discriminator(model, images, gen, device, batch_size=min(8, cell.schedule.batch_size))
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "detector": state,
        "discriminator": {k: v.detach().cpu().clone() for k, v in disc.state_dict().items()},
        "discriminator_config": disc.config(),
    }
    stats.update({"n_source": len(source), "source_version": source.version})
    return ckpt, stats


def ensure_source_checkpoint(
    cell: Cell,
    out: Path,
    data: DomainData,
    new_scratch: Callable[[], nn.Module],
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> SourceCheckpoint | None:
    """Train (once) and return the cell's source checkpoint; None when the domain has no source
    split (every method then starts from the same scratch initialisation)."""
    source = source_dataset(data)
    if source is None:
        return None
    key = source_key(cell, data, source)
    root = Path(out) / "_cache" / "source"
    final = root / key
    if (final / "DONE").is_file():
        return _published(final, key, reused=True)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f"{key}.lease"):
        if (final / "DONE").is_file():  # another worker published it while we waited
            return _published(final, key, reused=True)
        tmp = root / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir(parents=True)
        try:
            t0 = time.perf_counter()
            ckpt, stats = train_source(cell, source, new_scratch, device, progress)
            train_s = time.perf_counter() - t0
            torch.save(ckpt, tmp / "model.pt")
            meta = {
                "key": key,
                "domain": cell.domain.name,
                "seed": cell.seed,
                "detector": cell.detector,
                "train_s": round(train_s, 3),
                "sha256": file_sha256(tmp / "model.pt"),
                "code": code_version(),
                **stats,
            }
            atomic_write_json(tmp / "meta.json", meta)
            atomic_write_text(tmp / "DONE", "ok\n")
            try:
                os.rename(tmp, final)
                reused = False
            except OSError:  # published by a worker that could not take the lock: theirs wins
                if not (final / "DONE").is_file():
                    raise
                reused = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return _published(final, key, reused=reused)


def source_record(ckpt: SourceCheckpoint | None) -> dict[str, Any]:
    """The record fields of the starting weights."""
    return dict(SCRATCH_RECORD) if ckpt is None else ckpt.record_fields()
