"""EUCL uncertainty acquisition: query the images whose predicted foreground is least certain.

The default strategy of ``eucl`` (Yuan et al., IEEE Access 2025, IEEE document 11059963), which
builds an entropy uncertainty map from the model's dense predictions; using that map to choose what
to label is our addition (the paper is semi-supervised, not active). Per image, the detector's
dense foreground map ``f`` (``Prediction.dense["foreground"]``: max-class probability per location
of the finest level, the other levels folded in) gives the normalised entropy map
``U = H(f) / log 2`` (``entropy = "foreground"``) or, from ``dense["class_probs"]`` (C, h, w), the
mean over classes of the per-class binary entropies over ``log 2`` (``entropy = "classes"``). The
score is the mean of ``U`` over the predicted foreground (``f >= fg_threshold``); an image with no
predicted foreground scores the mean of ``U`` over all its locations (almost all certain
background, so it ranks below images with uncertain foreground). Ties are broken at random.

Hyper-parameters (defaults): ``fg_threshold = 0.5``, ``entropy = "foreground"``.
"""

from __future__ import annotations

import numpy as np

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from domains.base import SpecError


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-6, 1.0 - 1e-6)
    return -(p * np.log(p) + (1.0 - p) * np.log(1.0 - p)) / np.log(2.0)


def foreground_uncertainty(
    foreground: np.ndarray,
    class_probs: np.ndarray | None = None,
    fg_threshold: float = 0.5,
    entropy: str = "foreground",
) -> float:
    """Mean normalised entropy over the predicted foreground of one image's dense maps (over all
    locations when nothing is foreground; 0 for an empty map)."""
    fg = np.asarray(foreground, dtype=np.float64)
    if fg.size == 0:
        return 0.0
    if entropy == "classes" and class_probs is not None and class_probs.size:
        cp = np.asarray(class_probs)
        u = _binary_entropy(cp).mean(0)
        if u.shape != fg.shape:  # class_probs cover the finest level only; align with fg
            h, w = min(u.shape[0], fg.shape[0]), min(u.shape[1], fg.shape[1])
            u, fg = u[:h, :w], fg[:h, :w]
    else:
        u = _binary_entropy(fg)
    mask = fg >= fg_threshold
    return float(u[mask].mean()) if mask.any() else float(u.mean())


@register_strategy("eucl_uncertainty")
class EUCLUncertainty(ScoreStrategy):
    """Highest mean foreground uncertainty of the dense maps first (see the module docstring)."""

    hparams = {"fg_threshold": 0.5, "entropy": "foreground"}

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["entropy"] not in ("foreground", "classes"):
            raise SpecError(
                f"eucl_uncertainty: entropy must be 'foreground' or 'classes', got {self.hp['entropy']!r}"
            )

    def scores(self, ctx: QueryContext) -> np.ndarray:
        out = np.zeros(len(ctx.unlabelled))
        for i, p in enumerate(ctx.predictions(dense=True)):
            d = p.dense or {}
            if "foreground" not in d:
                continue
            out[i] = foreground_uncertainty(
                d["foreground"], d.get("class_probs"), self.hp["fg_threshold"], self.hp["entropy"]
            )
        return out
