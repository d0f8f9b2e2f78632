"""COCO bounding-box AP (pycocotools' protocol), computed with faster-coco-eval.

Protocol: pycocotools ``COCOeval`` with ``iouType="bbox"``: IoU thresholds 0.50:0.05:0.95, 101
recall points, maxDets 100, ``iscrowd`` ground truth (our ignore regions) matched by IoA and never
counted, area ranges on the ground truth ``area`` (= w*h). Difficult objects are ordinary positives
here (DOTA's devkit protocol, which ignores them, lives in ``dota.py``).

Implementation: ``faster_coco_eval.COCOeval_faster`` (C++; bit-identical to pycocotools and ~5-7x
faster, measured in ``tests/perf``); ``backend="pycocotools"`` runs the reference implementation,
and the tests check that both agree to 1e-9.

Category ids are ``label + 1``; image ids are 1-based positions in the dataset, and the sample
ids travel in the image's ``file_name``/``sample_id`` fields.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from importlib.metadata import version as _pkg_version
from typing import Any

import numpy as np

from benchmark.detectors.base import Prediction
from benchmark.evaluation import register_protocol
from domains.base import Sample

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def implementation(backend: str = "faster") -> str:
    if backend == "faster":
        return f"faster-coco-eval=={_pkg_version('faster-coco-eval')}"
    return f"pycocotools=={_pkg_version('pycocotools')}"


def gt_to_coco(samples: Sequence[Sample], classes: Sequence[str]) -> dict[str, Any]:
    """COCO ground-truth dict: ``bbox`` xywh, ``area`` w*h, ``iscrowd`` 1 only for ignore regions,
    ``difficult`` kept as an extra field, oriented polygons in ``segmentation``."""
    images, anns = [], []
    aid = 1
    for i, s in enumerate(samples, start=1):
        images.append(
            {
                "id": i,
                "width": int(s.width),
                "height": int(s.height),
                "file_name": s.id,
                "sample_id": s.id,
                "group": s.group,
            }
        )
        if s.image_path is not None:  # where the pixels are (read back by the coco domain)
            images[-1]["path"] = str(s.image_path)
            if s.window is not None:
                images[-1]["window"] = [int(v) for v in s.window]
        for j in range(len(s.boxes)):
            x1, y1, x2, y2 = (float(v) for v in s.boxes[j])
            w, h = x2 - x1, y2 - y1
            ann = {
                "id": aid,
                "image_id": i,
                "category_id": int(s.labels[j]) + 1,
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": int(bool(s.ignore[j])),
                "difficult": int(s.difficult[j]),
            }
            if s.polygons is not None:
                ann["segmentation"] = [[float(v) for v in s.polygons[j]]]
            anns.append(ann)
            aid += 1
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def predictions_to_coco(preds: Sequence[Prediction], image_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """COCO results list (``bbox`` xywh) for predictions aligned with ``image_ids``."""
    out = []
    for iid, p in zip(image_ids, preds, strict=True):
        for b, s, lab in zip(p.boxes.tolist(), p.scores.tolist(), p.labels.tolist(), strict=True):
            out.append(
                {
                    "image_id": iid,
                    "category_id": int(lab) + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": float(s),
                }
            )
    return out


def evaluate(gt: dict[str, Any], dets: list[dict[str, Any]], backend: str = "faster") -> dict[str, Any]:
    """The 12 COCO stats plus per-class AP and AP50 (``per_class``: category name -> values; classes
    without ground truth are left out, as COCO leaves them out of the mean)."""
    has_gt = any(not a.get("iscrowd", 0) for a in gt["annotations"])
    if not dets or not has_gt:
        # pycocotools cannot load an empty result list; with no detections every AP is 0
        # (or undefined, -1, when there is no positive ground truth at all)
        v = 0.0 if has_gt else -1.0
        res: dict[str, Any] = dict.fromkeys(STAT_NAMES, v)
        res["per_class"] = {}
        return res
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    elif backend == "pycocotools":
        from pycocotools.coco import COCO as PCOCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = PCOCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    else:
        raise ValueError(f"unknown COCO backend {backend!r}")
    stats = [float(x) for x in ev.stats[:12]]
    res = dict(zip(STAT_NAMES, stats, strict=True))
    precision = np.asarray(ev.eval["precision"])  # (T, R, K, A, M)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        pr = precision[:, :, k, 0, -1]
        if (pr > -1).any():
            ap = float(np.mean(pr[pr > -1]))
            p50 = pr[0]
            ap50 = float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else -1.0
            per_class[names[cid]] = {"AP": ap, "AP50": ap50}
    res["per_class"] = per_class
    return res


@register_protocol("coco")
def coco_protocol(domain, test, preds) -> tuple[dict[str, Any], str]:
    """The ``coco`` metric protocol: COCO box AP of a domain's test split."""
    return evaluate_predictions(list(test), domain.classes, preds), f"coco-bbox ({implementation()})"


def evaluate_predictions(
    samples: Sequence[Sample], classes: Sequence[str], preds: Sequence[Prediction], backend: str = "faster"
) -> dict[str, Any]:
    """COCO stats of ``preds`` (aligned with ``samples``) against the samples' ground truth."""
    gt = gt_to_coco(samples, classes)
    dets = predictions_to_coco(preds, [im["id"] for im in gt["images"]])
    return evaluate(gt, dets, backend)
