"""The one detector interface every method trains and queries (``docs/protocol.md#detector-interface``).

``Detector`` is a ``torch.nn.Module`` with:

* ``losses(batch, targets, weights=None) -> dict[str, Tensor]`` (summed by the caller);
* ``predict(batch) -> list[Prediction]``: per image boxes (xyxy, image pixels), scores, labels and
  per-detection class probabilities ``class_probs`` (N x C, per-class sigmoid probabilities);
  with ``dense=True`` also the dense per-location class probabilities and a foreground map;
* ``embed(batch) -> Tensor (B, D)``: pooled features for diversity sampling.

Images enter as a ``Batch``: a padded float tensor plus each image's true size, made by
``make_batch`` from uint8 ``(H, W, 3)`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, H, W) normalised, zero-padded at the bottom/right
    sizes: list[tuple[int, int]]  # (h, w) of each image before padding

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.images.to(device), self.sizes)


@dataclass
class Prediction:
    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64
    class_probs: np.ndarray  # (N, C) float32
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # optional dense maps
    polygons: np.ndarray | None = None  # (N, 8) float32 oriented corners (x1 y1 ... x4 y4), or None

    def __len__(self) -> int:
        return len(self.boxes)


def pad_to(x: int, multiple: int = 32) -> int:
    return (x + multiple - 1) // multiple * multiple


def images_to_tensors(images: list[np.ndarray]) -> list[torch.Tensor]:
    """uint8 (H, W, 3) arrays -> uint8 (3, H, W) tensors (kept compact in memory)."""
    return [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in images]


def make_batch(images: list[torch.Tensor]) -> Batch:
    """Stack uint8 (3, H, W) tensors into a normalised batch padded to a multiple of 32: each pixel
    ``(x / 255 - MEAN) / STD``, the padding (bottom/right) the normalised zero, 0."""
    sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images]
    H = pad_to(max(h for h, _ in sizes))
    W = pad_to(max(w for _, w in sizes))
    padded = any(s != (H, W) for s in sizes)
    if not padded:
        raw = torch.stack(images)
    else:  # the images on one raw (uint8) canvas, normalised together below
        raw = images[0].new_zeros((len(images), 3, H, W))
        for i, (im, (h, w)) in enumerate(zip(images, sizes, strict=True)):
            raw[i, :, :h, :w] = im
    out = raw.float().div_(255.0).sub_(MEAN).div_(STD)  # in place: one float tensor in all
    if padded:  # padding is "black" after normalisation: set it back to the normalised zero
        for i, (h, w) in enumerate(sizes):
            if h < H:
                out[i, :, h:, :] = 0.0
            if w < W:
                out[i, :, :, w:] = 0.0
    return Batch(out, sizes)
