"""Committee disagreement: query images on which a committee of detectors disagrees.

Query-by-committee (Seung et al., COLT 1992) for detection: members predict on the same image; the
reference member's detections are matched to each other member's best-overlapping detection, and
a detection's disagreement is the box-IoU divergence ``1 - IoU`` plus the KL divergence of their
class distributions, ``KL(p_ref || p_member)`` (per-class probabilities normalised to sum to one);
a detection no member reproduces (IoU 0) counts ``1 + log C``. The image scores the ``max``
(default) or ``mean`` of its detections' mean disagreement over members; no reference detection
scores 0.

Members: the model's ``committee_states`` (state dicts of training snapshots, e.g. the mean
teacher's student next to its teacher) when the trainer left them on the model; otherwise the
committee is the model under test-time views (identity, horizontal flip, vertical flip: boxes are
mapped back), a cheap stand-in when no snapshots exist (for example a round-0 model restored from
the cache). Snapshot members are built on deep copies: the queried model is not modified.
Oriented detectors (DOTA Task1): polygons are mapped back too and matched by polygon IoU.

Hyper-parameters (defaults): ``aggregate = "max"``, ``min_score = 0.05``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torchvision.ops import box_iou

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from benchmark.training import predict_all
from domains.base import SpecError
from domains.geometry import poly_iou


def _flip_back(boxes: np.ndarray, w: int, h: int, axis: str) -> np.ndarray:
    b = boxes.copy()
    if axis == "h":
        b[:, [0, 2]] = w - boxes[:, [2, 0]]
    else:
        b[:, [1, 3]] = h - boxes[:, [3, 1]]
    return b


def _flip_back_polygons(polys: np.ndarray, w: int, h: int, axis: str) -> np.ndarray:
    q = np.asarray(polys, np.float32).reshape(-1, 8).copy()
    if axis == "h":
        q[:, 0::2] = w - q[:, 0::2]
    else:
        q[:, 1::2] = h - q[:, 1::2]
    return q


def selected(pred, keep: np.ndarray):
    """The detections ``keep`` of a prediction (its polygons too, for oriented detectors)."""
    polys = None if pred.polygons is None else pred.polygons[keep]
    return type(pred)(
        pred.boxes[keep], pred.scores[keep], pred.labels[keep], pred.class_probs[keep], polygons=polys
    )


def disagreement(ref, other, n_classes: int) -> np.ndarray:
    """Per reference detection: ``1 - IoU`` + KL of class distributions with its best match (polygon
    IoU when both carry polygons: oriented detectors)."""
    if len(ref.boxes) == 0:
        return np.zeros(0)
    if len(other.boxes) == 0:
        return np.full(len(ref.boxes), 1.0 + np.log(n_classes))
    if getattr(ref, "polygons", None) is not None and getattr(other, "polygons", None) is not None:
        iou = poly_iou(ref.polygons, other.polygons)
    else:
        iou = box_iou(torch.from_numpy(ref.boxes), torch.from_numpy(other.boxes)).numpy()
    j = iou.argmax(1)
    best = iou[np.arange(len(j)), j]
    p = np.clip(ref.class_probs.astype(np.float64), 1e-12, None)
    q = np.clip(other.class_probs[j].astype(np.float64), 1e-12, None)
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    kl = (p * np.log(p / q)).sum(1)
    return np.where(best > 0, (1.0 - best) + kl, 1.0 + np.log(n_classes))


@register_strategy("committee")
class Committee(ScoreStrategy):
    """Largest committee disagreement first (see the module docstring)."""

    hparams = {"aggregate": "max", "min_score": 0.05}

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["aggregate"] not in ("max", "mean"):
            raise SpecError(f"committee: aggregate must be max or mean, got {self.hp['aggregate']!r}")

    def _member_predictions(self, ctx: QueryContext) -> list[list]:
        images = ctx.images.many([s.id for s in ctx.unlabelled])
        states = getattr(ctx.model, "committee_states", None)
        if states:
            out = []
            for st in states:
                member = copy.deepcopy(ctx.model)
                member.load_state_dict(st)
                out.append(predict_all(member, images, device=ctx.device))
            return out
        out = []
        for axis in ("h", "v"):
            flipped = [im.flip(2 if axis == "h" else 1) for im in images]
            preds = predict_all(ctx.model, flipped, device=ctx.device)
            for p, im in zip(preds, images, strict=True):
                p.boxes = _flip_back(p.boxes, int(im.shape[2]), int(im.shape[1]), axis)
                if p.polygons is not None:
                    p.polygons = _flip_back_polygons(p.polygons, int(im.shape[2]), int(im.shape[1]), axis)
            out.append(preds)
        return out

    def scores(self, ctx: QueryContext) -> np.ndarray:
        refs = ctx.predictions()
        members = self._member_predictions(ctx)
        n_classes = len(ctx.classes)
        out = np.zeros(len(ctx.unlabelled))
        for i, ref in enumerate(refs):
            keep = ref.scores >= self.hp["min_score"]
            if not keep.any():
                continue
            r = selected(ref, keep)
            d = np.mean([disagreement(r, m[i], n_classes) for m in members], axis=0)
            out[i] = float(d.max() if self.hp["aggregate"] == "max" else d.mean())
        return out
