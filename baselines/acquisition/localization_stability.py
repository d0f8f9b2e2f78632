"""Localization stability: query images whose boxes move when the input is perturbed.

Paper: C.-C. Kao, T.-Y. Lee, P. Sen, M.-Y. Liu, "Localization-Aware Active Learning for Object
Detection", ACCV 2018 (``docs/sources.md#active-learning-strategies``; re-implemented in we1pingyu/CALD
``ls_c_train.py``). Confirmed procedure:

1. reference detections on the clean image (the top ``top_k`` = 30 by score ``P_max``);
2. Gaussian pixel noise at 6 levels, sigma = 8, 16, ..., 48 (on 0-255 pixel values);
3. per reference box, the best IoU with the detections on each noisy image, averaged over the
   levels: ``S_B``;
4. image stability ``S = sum(P_max * S_B) / sum(P_max)``;
5. combined with the classification uncertainty ``U = max(1 - P_max)`` the paper selects the
   lowest ``S - U``; we return ``U - S`` as the score (higher = more wanted).

Oriented detectors (DOTA Task1): the IoU is the polygon IoU of the detections' polygons.

The noise comes from the query's ``torch.Generator``. An image without reference detections has
``S = 1`` and ``U = 0`` (nothing to localise: least wanted; ties broken at random).

Hyper-parameters (defaults): ``levels = [8, 16, 24, 32, 40, 48]``, ``top_k = 30``,
``min_score = 0.05``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from baselines.base import QueryContext, ScoreStrategy, register_strategy
from benchmark.training import predict_all
from domains.geometry import poly_iou


@register_strategy("localization_stability")
class LocalizationStability(ScoreStrategy):
    """Lowest stability minus uncertainty first (see the module docstring)."""

    hparams = {"levels": [8, 16, 24, 32, 40, 48], "top_k": 30, "min_score": 0.05}

    def scores(self, ctx: QueryContext) -> np.ndarray:
        refs = []
        for p in ctx.predictions():
            keep = np.nonzero(p.scores >= self.hp["min_score"])[0]
            keep = keep[np.argsort(-p.scores[keep], kind="stable")][: self.hp["top_k"]]
            refs.append((p.boxes[keep], p.scores[keep], None if p.polygons is None else p.polygons[keep]))
        n = len(ctx.unlabelled)
        iou_sum = [np.zeros(len(r[0])) for r in refs]
        todo = [i for i in range(n) if len(refs[i][0])]
        images = ctx.images.many([ctx.unlabelled[i].id for i in todo])
        for sigma in self.hp["levels"]:
            noisy = []
            for im in images:
                noise = torch.randn(im.shape, generator=ctx.gen) * float(sigma)
                noisy.append((im.float() + noise).clamp_(0, 255).round_().to(torch.uint8))
            preds = predict_all(ctx.model, noisy, device=ctx.device)
            for i, p in zip(todo, preds, strict=True):
                if len(p.boxes) and refs[i][2] is not None and p.polygons is not None:
                    # oriented detections: polygon IoU
                    iou_sum[i] += poly_iou(refs[i][2], p.polygons).max(1)
                elif len(p.boxes):
                    m = box_iou(torch.from_numpy(refs[i][0]), torch.from_numpy(p.boxes)).max(1).values
                    iou_sum[i] += m.numpy()
        out = np.full(n, -1.0)
        for i in todo:
            s_b = iou_sum[i] / len(self.hp["levels"])
            pm = refs[i][1].astype(np.float64)
            stability = float((pm * s_b).sum() / max(pm.sum(), 1e-12))
            out[i] = float((1.0 - pm).max()) - stability
        return out
