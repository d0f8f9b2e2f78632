"""Entropy acquisition: query the images whose detections the model is least sure of.

Per detection, the class distribution is the detector's per-class probabilities normalised to
sum to one (FCOS scores classes with independent sigmoids); its Shannon entropy is divided by
log(C) so it lies in [0, 1]. Per image the detection entropies are aggregated by ``max``
(default), ``mean`` or ``sum`` (the usual choices in AL for detection, e.g. Roy et al. BMVC 2018;
Haussmann et al. IV 2020). Only detections scoring at least ``min_score`` count; an image without
such detections scores 0 (nothing uncertain was found), and ties are broken at random.

Hyper-parameters (defaults): ``aggregate = "max"``, ``min_score = 0.05``.
"""

from __future__ import annotations

import numpy as np

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from domains.base import SpecError


def detection_entropy(class_probs: np.ndarray) -> np.ndarray:
    """Normalised entropy (in [0, 1]) of each row of (N, C) per-class probabilities."""
    if len(class_probs) == 0:
        return np.zeros(0)
    p = np.clip(class_probs.astype(np.float64), 1e-12, None)
    if p.shape[1] == 1:  # one class (pedestrians): the binary entropy of object vs background
        p = np.concatenate([p, np.clip(1.0 - p, 1e-12, None)], axis=1)
    p = p / p.sum(1, keepdims=True)
    return -(p * np.log(p)).sum(1) / np.log(p.shape[1])


@register_strategy("entropy")
class Entropy(ScoreStrategy):
    """Highest aggregated detection entropy first (see the module docstring)."""

    hparams = {"aggregate": "max", "min_score": 0.05}

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["aggregate"] not in ("max", "mean", "sum"):
            raise SpecError(f"entropy: aggregate must be max, mean or sum, got {self.hp['aggregate']!r}")

    def scores(self, ctx: QueryContext) -> np.ndarray:
        agg = {"max": np.max, "mean": np.mean, "sum": np.sum}[self.hp["aggregate"]]
        out = np.zeros(len(ctx.unlabelled))
        for i, p in enumerate(ctx.predictions()):
            keep = p.scores >= self.hp["min_score"]
            if keep.any():
                out[i] = float(agg(detection_entropy(p.class_probs[keep])))
        return out
