"""Least-confidence and margin acquisition: per-detection classification uncertainty, per image.

Per detection (Brust et al., VISAPP 2019, "Active Learning for Deep Object Detection"; the usual
classification-uncertainty scores of AL for detection, ``docs/sources.md``):

* least confidence ``1 - max_c p_c``;
* margin ``1 - (p_1 - p_2)`` (one minus the gap between the two most likely classes; higher =
  more uncertain), computed on the per-class probabilities normalised to sum to one (FCOS scores
  classes with independent sigmoids).

Per image the detection scores are aggregated by ``max`` (default), ``mean`` or ``sum``; only
detections scoring at least ``min_score`` count, and an image without such detections scores 0.
Ties are broken at random by the query generator.

Hyper-parameters (defaults): ``aggregate = "max"``, ``min_score = 0.05``.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from domains.base import SpecError

AGGREGATES = {"max": np.max, "mean": np.mean, "sum": np.sum}


def normalised(class_probs: np.ndarray) -> np.ndarray:
    p = np.clip(class_probs.astype(np.float64), 1e-12, None)
    return p / p.sum(1, keepdims=True)


def least_confidence(class_probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p_c`` per row of (N, C) per-class probabilities (normalised)."""
    if len(class_probs) == 0:
        return np.zeros(0)
    return 1.0 - normalised(class_probs).max(1)


def margin_uncertainty(class_probs: np.ndarray) -> np.ndarray:
    """``1 - (p_1 - p_2)`` per row (p_1, p_2 the two largest normalised probabilities)."""
    if len(class_probs) == 0:
        return np.zeros(0)
    p = normalised(class_probs)
    if p.shape[1] < 2:
        return 1.0 - p[:, 0]
    top2 = np.sort(p, 1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


class _DetectionUncertainty(ScoreStrategy):
    hparams = {"aggregate": "max", "min_score": 0.05}

    @staticmethod
    @abstractmethod
    def per_detection(class_probs: np.ndarray) -> np.ndarray:
        """Uncertainty (higher = more uncertain) of each row of (N, C) class probabilities."""

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["aggregate"] not in AGGREGATES:
            raise SpecError(f"{self.name}: aggregate must be max, mean or sum, got {self.hp['aggregate']!r}")

    def scores(self, ctx: QueryContext) -> np.ndarray:
        agg = AGGREGATES[self.hp["aggregate"]]
        out = np.zeros(len(ctx.unlabelled))
        for i, p in enumerate(ctx.predictions()):
            keep = p.scores >= self.hp["min_score"]
            if keep.any():
                out[i] = float(agg(self.per_detection(p.class_probs[keep])))
        return out


@register_strategy("least_confidence")
class LeastConfidence(_DetectionUncertainty):
    """Highest aggregated ``1 - max_c p_c`` first (see the module docstring)."""

    per_detection = staticmethod(least_confidence)


@register_strategy("margin")
class Margin(_DetectionUncertainty):
    """Smallest top-1 / top-2 margin first (see the module docstring)."""

    per_detection = staticmethod(margin_uncertainty)
