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

from benchmark.augment import apply_view, weak_view
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
    """Training targets of a sample: boxes, labels and ignore flags (ignore regions stay ignored),
    and the objects' ``polygons`` (N, 8) where the sample has them (oriented domains)."""
    out = {
        "boxes": torch.from_numpy(s.boxes.copy()),
        "labels": torch.from_numpy(s.labels.copy()),
        "ignore": torch.from_numpy(np.asarray(s.ignore).copy()),
    }
    if s.polygons is not None:
        out["polygons"] = torch.from_numpy(np.asarray(s.polygons, np.float32).copy())
    return out


def rotate90(
    image: torch.Tensor, boxes: torch.Tensor, polygons: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rotate a uint8 (3, H, W) image by ``k`` x 90 degrees (counter-clockwise on screen) with its
    xyxy boxes and (N, 8) polygons: one step maps a point (x, y) to (y, W - x)."""
    for _ in range(k % 4):
        w = image.shape[2]
        image = torch.rot90(image, 1, dims=(1, 2))
        boxes = torch.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], 1)
        if polygons is not None:
            p = polygons.reshape(-1, 4, 2)
            polygons = torch.stack([p[..., 1], w - p[..., 0]], -1).reshape(-1, 8)
    return image, boxes, polygons


def flip_batch(
    images: list[torch.Tensor],
    targets: list[dict],
    gen: torch.Generator,
    vertical: bool = True,
    rotate: bool = False,
) -> tuple[list[torch.Tensor], list[dict]]:
    """Random horizontal (and vertical) flips of uint8 (3, H, W) images with their boxes (and
    ``polygons`` where the targets have them); with ``rotate`` also a random rotation by a multiple
    of 90 degrees (drawn after the flips, so ``rotate=False`` draws exactly what it always drew)."""
    out_i, out_t = [], []
    flips = torch.rand((len(images), 2), generator=gen) < 0.5
    turns = torch.randint(4, (len(images),), generator=gen).tolist() if rotate else [0] * len(images)
    for im, t, (fh, fv), k in zip(images, targets, flips.tolist(), turns, strict=True):
        h, w = im.shape[1], im.shape[2]
        b = t["boxes"].clone()
        poly = t.get("polygons")
        poly = poly.clone().reshape(-1, 8) if poly is not None else None
        if fh:
            im = im.flip(2)
            b[:, [0, 2]] = w - b[:, [2, 0]]
            if poly is not None:
                poly[:, 0::2] = w - poly[:, 0::2]
        if vertical and fv:
            im = im.flip(1)
            b[:, [1, 3]] = h - b[:, [3, 1]]
            if poly is not None:
                poly[:, 1::2] = h - poly[:, 1::2]
        if k:
            im, b, poly = rotate90(im, b, poly, k)
        out_i.append(im)
        out_t.append({**t, "boxes": b} if poly is None else {**t, "boxes": b, "polygons": poly})
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
    scale_jitter: tuple[float, float] = (1.0, 1.0),
) -> torch.nn.Module:
    """Train ``model`` on labelled images for ``schedule.iterations`` steps (batches drawn with
    replacement by ``gen``). ``progress(it, total, losses)`` is called every 10 iterations. Each
    image is flipped at random (and rotated by a multiple of 90 degrees on an oriented detector);
    with a ``scale_jitter`` other than (1, 1) it gets the teacher-student methods' weak view
    instead (``benchmark.augment.weak_view``: the same flips plus that zoom jitter)."""
    if not images:
        raise ValueError("no labelled images to train on")
    model.to(device).train()
    opt = make_optimizer(model, schedule)
    ema = ModelEMA(model, schedule.ema_decay) if schedule.ema_decay > 0 else None
    n = len(images)
    rotate = bool(getattr(model, "oriented", False)) and bool(
        getattr(getattr(model, "cfg", None), "rotate90", True)
    )
    view = None
    if tuple(scale_jitter) != (1.0, 1.0):
        view = weak_view(gen, vertical_flip, tuple(scale_jitter), rotate90=rotate)
    for it in range(schedule.iterations):
        for g in opt.param_groups:
            g["lr"] = schedule.lr_at(it)
        idx = torch.randint(n, (schedule.batch_size,), generator=gen).tolist()
        if view is None:
            ims, tg = flip_batch(
                [images[i] for i in idx], [targets[i] for i in idx], gen, vertical_flip, rotate
            )
        else:
            ims, tg = (
                list(x) for x in zip(*(apply_view(view, images[i], targets[i]) for i in idx), strict=True)
            )
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


@torch.no_grad()
def ema_update(average: dict[str, torch.Tensor], current: dict[str, torch.Tensor], keep: float) -> None:
    """The one exponential moving average of the suite, in place: ``average = keep * average +
    (1 - keep) * current`` on floating-point tensors (parameters and BatchNorm statistics); other
    tensors (``num_batches_tracked``) are copied. ``average`` and ``current`` are state dicts with the
    same keys (a model's ``state_dict()`` shares its storage, so a teacher is updated in place). One
    fused ``torch._foreach_*`` call per operation; bit-identical to the per-tensor
    ``mul_(keep).add_(x, alpha=1 - keep)``."""
    avg, cur = [], []
    for k, v in current.items():
        a = average[k]
        if v.dtype.is_floating_point:
            avg.append(a)
            cur.append(v.detach())
        else:
            a.copy_(v)
    if avg:
        torch._foreach_mul_(avg, keep)
        torch._foreach_add_(avg, cur, alpha=1.0 - keep)


class ModelEMA:
    """Exponential moving average of a model's parameters and buffers (BatchNorm statistics
    included), with the usual warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early
    averages are not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        ema_update(self.shadow, model.state_dict(), min(self.decay, (1 + self.steps) / (10 + self.steps)))

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
