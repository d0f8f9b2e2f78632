"""COCO bounding-box AP (pycocotools' protocol), computed with faster-coco-eval.

Protocol: pycocotools ``COCOeval`` with ``iouType="bbox"``: IoU thresholds 0.50:0.05:0.95, 101
recall points, maxDets 100, ``iscrowd`` ground truth (our ignore regions) matched by IoA and never
counted, area ranges on the ground truth ``area`` (= w*h). Difficult objects are ordinary positives
here (DOTA's devkit protocol, which ignores them, lives in ``dota.py``).

Implementation: ``faster_coco_eval.COCOeval_faster`` (C++; bit-identical to pycocotools and ~5-7x
faster, measured in ``tests/perf``); ``backend="pycocotools"`` runs the reference implementation,
and the tests check that both agree to 1e-9.

Ids (``coco_image_ids``, ``coco_category_ids``): a dataset read from a COCO file keeps that file's
image and category ids (so a results file written for it is matched by id, and the numbers equal
``COCOeval`` on the original file); every other dataset numbers its images 1..N in split order and its
categories ``label + 1``. ``labelbudget data export-coco`` writes the same ids, so export -> any detector
-> ``labelbudget evaluate`` is a round trip. The sample ids travel in ``file_name``/``sample_id``.

Only the 100 highest-scoring detections per image and category take part (COCO's ``maxDets`` 100, kept
in the results' order on score ties, as ``COCOeval`` does), so a huge results file costs no more memory
than the detections that can count.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from importlib.metadata import version as _pkg_version
from typing import Any

import numpy as np

from benchmark.detectors.base import Prediction
from benchmark.metrics import register_protocol
from domains.base import Sample

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def implementation(backend: str = "faster") -> str:
    if backend == "faster":
        return f"faster-coco-eval=={_pkg_version('faster-coco-eval')}"
    return f"pycocotools=={_pkg_version('pycocotools')}"


MAX_DETS = 100


def coco_image_ids(samples: Sequence[Sample]) -> list[Any]:
    """COCO image ids of ``samples``: the source file's integer ids when every sample has a distinct
    one (``meta["coco_id"]``, the ``coco`` domain), else 1..N in order."""
    ids = [s.meta.get("coco_id") for s in samples]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
        return ids
    return list(range(1, len(samples) + 1))


def coco_category_ids(domain: Any, n_classes: int) -> list[int]:
    """COCO category id of each class index: the source file's ids (``domain.coco_category_ids``, the
    ``coco`` domain) or ``label + 1``."""
    ids = getattr(domain, "coco_category_ids", None)
    if ids is not None and len(ids) == n_classes:
        return [int(i) for i in ids]
    return list(range(1, n_classes + 1))


def gt_to_coco(
    samples: Sequence[Sample],
    classes: Sequence[str],
    image_ids: Sequence[Any] | None = None,
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """COCO ground-truth dict: ``bbox`` xywh, ``area`` w*h, ``iscrowd`` 1 only for ignore regions,
    ``difficult`` kept as an extra field, oriented polygons in ``segmentation``. Image ids default to
    ``coco_image_ids(samples)``, category ids to ``label + 1``."""
    images, anns = [], []
    aid = 1
    image_ids = coco_image_ids(samples) if image_ids is None else list(image_ids)
    cat_ids = list(range(1, len(classes) + 1)) if category_ids is None else list(category_ids)
    for i, s in zip(image_ids, samples, strict=True):
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
                "category_id": cat_ids[int(s.labels[j])],
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": int(bool(s.ignore[j])),
                "difficult": int(s.difficult[j]),
            }
            if s.polygons is not None:
                ann["segmentation"] = [[float(v) for v in s.polygons[j]]]
            anns.append(ann)
            aid += 1
    cats = [{"id": c, "name": n} for c, n in zip(cat_ids, classes, strict=True)]
    return {"images": images, "annotations": anns, "categories": cats}


def top_k_per_class(p: Prediction, k: int = MAX_DETS) -> np.ndarray:
    """Indices of the ``k`` highest-scoring detections of each class of ``p`` (stable on ties), in their
    original order."""
    if len(p) <= k:
        return np.arange(len(p))
    keep = []
    labels = np.asarray(p.labels)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(idx[np.argsort(-np.asarray(p.scores)[idx], kind="stable")[:k]])
    return np.sort(np.concatenate(keep))


def predictions_to_coco(
    preds: Sequence[Prediction],
    image_ids: Sequence[Any],
    category_ids: Sequence[int] | None = None,
    max_dets: int | None = None,
) -> list[dict[str, Any]]:
    """COCO results list (``bbox`` xywh) for predictions aligned with ``image_ids``; with ``max_dets``
    only the top ``max_dets`` per image and class."""
    out = []
    for iid, p in zip(image_ids, preds, strict=True):
        sel = top_k_per_class(p, max_dets) if max_dets is not None else slice(None)
        boxes, scores, labels = p.boxes[sel], p.scores[sel], p.labels[sel]
        for b, s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            out.append(
                {
                    "image_id": iid,
                    "category_id": int(lab) + 1 if category_ids is None else int(category_ids[int(lab)]),
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
    cats = coco_category_ids(domain, len(domain.classes))
    res = evaluate_predictions(list(test), domain.classes, preds, category_ids=cats)
    return res, f"coco-bbox ({implementation()})"


def evaluate_predictions(
    samples: Sequence[Sample],
    classes: Sequence[str],
    preds: Sequence[Prediction],
    backend: str = "faster",
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """COCO stats of ``preds`` (aligned with ``samples``) against the samples' ground truth."""
    gt = gt_to_coco(samples, classes, category_ids=category_ids)
    dets = predictions_to_coco(preds, [im["id"] for im in gt["images"]], category_ids, max_dets=MAX_DETS)
    return evaluate(gt, dets, backend)
