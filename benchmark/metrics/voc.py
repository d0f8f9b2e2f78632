"""PASCAL VOC07 mAP50 (11-point), the protocol of the DA detection papers on Foggy Cityscapes.

Protocol: py-faster-rcnn's ``voc_eval`` as DA-Faster R-CNN and Strong-Weak ``DA_Detection`` run it on
Foggy Cityscapes (imdb year 2007, so ``use_07_metric=True``; ``docs/sources.md#voc07-on-foggy-cityscapes``):
per class, detections of all images sorted by score; each takes the ground truth of its class
with the largest IoU and matches when that IoU is **strictly** above 0.5; a match with a
``difficult`` ground truth is neither TP nor FP and difficult objects are not counted in ``npos``; a
second match with the same object is an FP; AP is the 11-point interpolated precision; mAP is the
mean over the classes that have ground truth.

The matching and AP are ``benchmark.metrics.dota.evaluate_dota``'s Task2 (HBB) code path, which
follows the same devkit rules (``version="1.0"`` honours difficult flags). Our ground truth has
ignore regions (Cityscapes ``*group`` polygons) besides difficult flags: both are passed as
``difficult`` (a detection on a group is neither TP nor FP; a group is not counted as an object).
Boxes are continuous coordinates, so IoU has no ``+1`` pixel term (py-faster-rcnn adds 1 to widths
and heights of integer pixel boxes; the difference is below 1 px per side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmark.detectors.base import Prediction
from benchmark.metrics import register_protocol
from benchmark.metrics.dota import evaluate_dota
from domains.base import Sample

IMPLEMENTATION = "voc07 11-point mAP50 (py-faster-rcnn voc_eval rules; ignore regions as difficult)"


def evaluate_voc07(
    samples: Sequence[Sample], classes: Sequence[str], preds: Sequence[Prediction], iou_thresh: float = 0.5
) -> dict[str, Any]:
    """VOC07 11-point AP per class and its mean for ``preds`` aligned with ``samples``.

    Returns ``{"mAP50": m, "per_class": {name: {"AP50": ap}}, "npos": {name: n}}`` (classes without
    ground truth are left out of ``per_class`` and of the mean)."""
    if len(preds) != len(samples):
        raise ValueError(f"{len(preds)} predictions for {len(samples)} samples")
    gt: dict[Any, dict[str, Any]] = {}
    dets: dict[int, list[tuple[Any, float, Any]]] = {}
    for i, (s, p) in enumerate(zip(samples, preds, strict=True)):
        assert s.difficult is not None and s.ignore is not None
        gt[i] = {
            "boxes": s.boxes,
            "labels": s.labels,
            "difficult": (s.difficult > 0) | s.ignore,
        }
        for b, sc, lab in zip(p.boxes, p.scores, p.labels, strict=True):
            dets.setdefault(int(lab), []).append((i, float(sc), np.asarray(b, np.float64)))
    res = evaluate_dota(
        gt, dets, classes, task="task2", version="1.0", iou_thresh=iou_thresh, use_07_metric=True
    )
    key = "mAP50" if iou_thresh == 0.5 else "mAP"
    per_class = {k: {"AP50": float(v)} for k, v in res["per_class"].items() if not np.isnan(v)}
    return {"mAP50": float(res[key]), "per_class": per_class, "npos": res["npos"]}


@register_protocol("voc07")
def voc07_protocol(domain, test, preds) -> tuple[dict[str, Any], str]:
    """The ``voc07`` metric protocol: VOC07 11-point mAP50 of a domain's test split."""
    return evaluate_voc07(list(test), domain.classes, preds), IMPLEMENTATION
