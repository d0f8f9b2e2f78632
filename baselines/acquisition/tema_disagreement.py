"""Triple-EMA disagreement: query images on which the three EMA teachers disagree, tail classes first.

The acquisition strategy paired with ``triple_ema`` (Chen et al., EAAI 2026; the paper's own
acquisition, if any, is not known: ``docs/sources.md#triple-ema``; this is our reconstruction). A
``triple_ema`` model carries the three averages of its student (E1, E2, E3, or the three teachers
of ``mode = "ensemble"``) in ``committee_states``; the three look at the student's trajectory over
three time scales, so where they disagree the model is still moving.

Score of an image: each reference detection of the evaluated model (score >= ``min_score``) gets
the committee disagreement of ``baselines.acquisition.committee`` (``1 − IoU`` with its best match
in a member's detections plus the KL divergence of their class distributions, ``1 + log C`` when
a member has no overlapping box), averaged over the members; it is multiplied by
``1 + tail_boost · rarity(c)`` for its predicted class c, with ``rarity(c) = 1 − n_c / n_max`` from
the labelled set's box counts (the most frequent class 0, a class never labelled 1); the image
scores the ``max`` (or ``mean``) over its detections. An image without detections scores 0 (ties
are broken at random by ``ScoreStrategy``).

Without ``committee_states`` (a model from another trainer, or restored from the round-0 cache)
the committee is the model under test-time flips, exactly as ``committee`` builds it.

Hyper-parameters (defaults): ``aggregate = "max"``, ``min_score = 0.05``, ``tail_boost = 1.0``.
"""

from __future__ import annotations

import numpy as np

from baselines.acquisition.committee import Committee, disagreement, selected
from baselines.base import QueryContext, ScoreStrategy, register_strategy
from domains.base import SpecError


def class_rarity(ctx: QueryContext) -> np.ndarray:
    """``1 − n_c / n_max`` per class from the labelled set's (non-ignored) boxes."""
    n = len(ctx.classes)
    counts = np.zeros(n, np.float64)
    for s in ctx.labelled:
        lab = np.asarray(s.labels, np.int64)[~np.asarray(s.ignore, bool)]
        counts += np.bincount(lab, minlength=n)[:n]
    return 1.0 - counts / max(1.0, float(counts.max()))


@register_strategy("tema_disagreement")
class TEMADisagreement(ScoreStrategy):
    """Largest tail-boosted triple-EMA committee disagreement first (see the module docstring)."""

    hparams = {"aggregate": "max", "min_score": 0.05, "tail_boost": 1.0}

    def __init__(self, **hp) -> None:
        super().__init__(**hp)
        if self.hp["aggregate"] not in ("max", "mean") or self.hp["tail_boost"] < 0:
            raise SpecError(
                f"tema_disagreement: aggregate must be max or mean and tail_boost >= 0, got {self.hp}"
            )

    def scores(self, ctx: QueryContext) -> np.ndarray:
        refs = ctx.predictions()
        members = Committee(
            aggregate=self.hp["aggregate"], min_score=self.hp["min_score"]
        )._member_predictions(ctx)
        boost = 1.0 + self.hp["tail_boost"] * class_rarity(ctx)
        n_classes = len(ctx.classes)
        out = np.zeros(len(ctx.unlabelled))
        for i, ref in enumerate(refs):
            keep = ref.scores >= self.hp["min_score"]
            if not keep.any():
                continue
            r = selected(ref, keep)
            d = np.mean([disagreement(r, m[i], n_classes) for m in members], axis=0) * boost[r.labels]
            out[i] = float(d.max() if self.hp["aggregate"] == "max" else d.mean())
        return out
