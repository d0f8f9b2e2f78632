"""Class-balanced acquisition: favour images whose predictions contain classes rare in the labels.

Motivation: long-tailed detection sets (DOTA's head/mid/tail classes; the minority samples ASDL
sends to the oracle, ``docs/sources.md``) are learned badly from a random sample; querying the
images where the model sees rare classes balances the labelled set. Our formulation (no single
paper defines it): the rarity of class c is its smoothed inverse frequency among the labelled boxes,
``w_c = (n + C) / (C * (n_c + 1))`` (1 for a uniform label set, large for unseen classes); a
detection contributes ``score * w_label`` and an image scores the ``max`` (default) or ``sum`` of
its detections' contributions (detections below ``min_score`` are ignored; an image without
detections scores 0; ties at random).

Hyper-parameters (defaults): ``aggregate = "max"``, ``min_score = 0.3``.
"""

from __future__ import annotations

import numpy as np

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from domains.base import SpecError


def class_rarity(labelled_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Smoothed inverse frequency ``(n + C) / (C * (n_c + 1))`` of each class."""
    counts = np.bincount(labelled_labels.astype(np.int64), minlength=n_classes)[:n_classes]
    return (counts.sum() + n_classes) / (n_classes * (counts + 1.0))


@register_strategy("class_balanced")
class ClassBalanced(ScoreStrategy):
    """Confident detections of rare classes first (see the module docstring)."""

    hparams = {"aggregate": "max", "min_score": 0.3}

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["aggregate"] not in ("max", "sum"):
            raise SpecError(f"class_balanced: aggregate must be max or sum, got {self.hp['aggregate']!r}")

    def scores(self, ctx: QueryContext) -> np.ndarray:
        labels = [s.labels[~np.asarray(s.ignore, dtype=bool)] for s in ctx.labelled]
        all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        w = class_rarity(all_labels, len(ctx.classes))
        agg = np.max if self.hp["aggregate"] == "max" else np.sum
        out = np.zeros(len(ctx.unlabelled))
        for i, p in enumerate(ctx.predictions()):
            keep = p.scores >= self.hp["min_score"]
            if keep.any():
                out[i] = float(agg(p.scores[keep] * w[p.labels[keep]]))
        return out
