"""Shared training pieces: the fixed schedule, the optimiser, box-aware flips and the supervised loop.

Every method of a matrix trains with the same ``Schedule`` (iterations, batch size, learning rate):
iteration-based, never wall-clock, so results do not depend on machine speed. All randomness comes
from the ``torch.Generator`` the protocol passes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from benchmark.detectors.base import Batch, make_batch
from domains.base import Sample, SpecError


@dataclass(frozen=True)
class Schedule:
    """The fixed training schedule of a matrix (same for every method)."""

    iterations: int = 300
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    grad_clip: float = 10.0
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.0  # > 0: evaluate an exponential moving average of the weights

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or not self.lr > 0:
            raise SpecError(
                f"invalid schedule {asdict(self)}: iterations, batch_size and lr must be positive"
            )

    def lr_at(self, it: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
        if it < self.warmup:
            return self.lr * (it + 1) / self.warmup
        t = (it - self.warmup) / max(1, self.iterations - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": schedule.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=schedule.lr,
    )


def sample_targets(s: Sample) -> dict[str, torch.Tensor]:
    """Training targets of a sample: boxes, labels and ignore flags (ignore regions stay ignored)."""
    return {
        "boxes": torch.from_numpy(s.boxes.copy()),
        "labels": torch.from_numpy(s.labels.copy()),
        "ignore": torch.from_numpy(np.asarray(s.ignore).copy()),
    }


def flip_batch(
    images: list[torch.Tensor], targets: list[dict], gen: torch.Generator, vertical: bool = True
) -> tuple[list[torch.Tensor], list[dict]]:
    """Random horizontal (and vertical) flips of uint8 (3, H, W) images with their boxes."""
    out_i, out_t = [], []
    flips = torch.rand((len(images), 2), generator=gen) < 0.5
    for im, t, (fh, fv) in zip(images, targets, flips.tolist(), strict=True):
        h, w = im.shape[1], im.shape[2]
        b = t["boxes"].clone()
        if fh:
            im = im.flip(2)
            b[:, [0, 2]] = w - b[:, [2, 0]]
        if vertical and fv:
            im = im.flip(1)
            b[:, [1, 3]] = h - b[:, [3, 1]]
        out_i.append(im)
        out_t.append({**t, "boxes": b})
    return out_i, out_t


ProgressFn = Callable[[int, int, dict[str, float]], None]


def train_supervised(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    schedule: Schedule,
    gen: torch.Generator,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    vertical_flip: bool = True,
) -> torch.nn.Module:
    """Train ``model`` on labelled images for ``schedule.iterations`` steps (batches drawn with
    replacement by ``gen``). ``progress(it, total, losses)`` is called every 10 iterations."""
    if not images:
        raise ValueError("no labelled images to train on")
    model.to(device).train()
    opt = make_optimizer(model, schedule)
    ema = ModelEMA(model, schedule.ema_decay) if schedule.ema_decay > 0 else None
    n = len(images)
    for it in range(schedule.iterations):
        for g in opt.param_groups:
            g["lr"] = schedule.lr_at(it)
        idx = torch.randint(n, (schedule.batch_size,), generator=gen).tolist()
        ims, tg = flip_batch([images[i] for i in idx], [targets[i] for i in idx], gen, vertical_flip)
        batch: Batch = make_batch(ims).to(device)
        losses = model.losses(batch, tg)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        if progress is not None and (it % 10 == 9 or it == schedule.iterations - 1):
            progress(it + 1, schedule.iterations, {k: float(v) for k, v in losses.items()})
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return model


class ModelEMA:
    """Exponential moving average of a model's parameters and buffers (BatchNorm statistics
    included), with the usual warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early
    averages are not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


@torch.no_grad()
def predict_all(
    model, images: list[torch.Tensor], batch_size: int = 32, device: str = "cpu", dense: bool = False
):
    """Predictions for a list of uint8 (3, H, W) images, in order. Images are batched by size."""
    model.eval()
    order = sorted(range(len(images)), key=lambda i: (images[i].shape[1], images[i].shape[2]))
    out = [None] * len(images)
    for k in range(0, len(order), batch_size):
        chunk = order[k : k + batch_size]
        preds = model.predict(make_batch([images[i] for i in chunk]).to(device), dense=dense)
        for i, p in zip(chunk, preds, strict=True):
            out[i] = p
    return out
