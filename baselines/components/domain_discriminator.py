"""The domain discriminator head of SAR's static adversarial regularisation
(``baselines/sar_source_free.py``), trained once in the source phase and shipped in the source
checkpoint (a source head, ``benchmark.source.SOURCE_HEADS``: the checkpoint cache trains every
registered head on the finished source detector and never names one).

The head (``DomainDiscriminator``): per-level global average pooling of the FPN maps ->
standardisation with the clean source features' mean and std -> Linear(D, 64) -> ReLU ->
Linear(64, 1); logit > 0 = "shifted / target-like", < 0 = "source". It is trained on the finished
source detector's features, which stay fixed. Only source data exists at that point, so the
"target" side is a **reconstruction [I]**: source images under a random synthetic appearance shift
(``appearance_shift``: haze with the optical model ``I = J t + A (1 - t)`` and a vertical
transmittance gradient standing in for depth, a slight airlight tint, reduced contrast and sensor
noise). Label 0 = clean source, 1 = shifted. Features are computed the way a student computes them
while it adapts: BatchNorm in training mode (batch statistics, running statistics left alone) on
batches that are all clean or all shifted. 24 + 24 batches of ``min(8, batch_size)`` images, then
300 full-batch Adam steps (lr 1e-3, weight decay 1e-4); its training accuracy goes to the
checkpoint's ``meta.json``. The head is frozen from then on (SAR's "static adversarial
regularisation"). Without a source checkpoint SAR trains the same head on its labelled pool images
(``train_discriminator``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from baselines.teacher_student import frozen_bn_statistics
from benchmark.detectors.base import make_batch
from benchmark.source import register_source_head
from benchmark.training import flip_batch

DISC_HIDDEN = 64
DISC_BATCHES = 24  # batches of clean and of shifted images the discriminator sees
DISC_STEPS = 300
DISC_LR = 1e-3


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


@register_source_head("discriminator")
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

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        images: list[torch.Tensor],
        gen: torch.Generator,
        device: str = "cpu",
        batch_size: int = 8,
    ) -> tuple[DomainDiscriminator, dict[str, float]]:
        """The source-head protocol (``benchmark.source.SourceHead``): ``train_discriminator``."""
        return train_discriminator(model, images, gen, device, batch_size)


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
