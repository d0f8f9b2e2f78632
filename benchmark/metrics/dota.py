"""DOTA mean AP, the DOTA devkit protocol (Task1 oriented boxes, Task2 horizontal boxes).

Protocol: ``CAPTAIN-WHU/DOTA_devkit`` ``dota_evaluation_task1.py`` / ``dota_evaluation_task2.py`` and
``dota-v1.5_evaluation_task1.py`` (the facts used are listed in ``docs/sources.md#dota-devkit``; the code
here is a fresh implementation, not a copy):

* per class, detections of all images are sorted by descending score (we use a *stable* sort, so ties
  keep the order in which they were given; the devkit's ``np.argsort(-confidence)`` leaves tie order
  unspecified);
* each detection takes the ground truth of its class and image with the largest IoU (first one on ties,
  already matched ones included, exactly like the devkit's ``argmax``); it is a match only when that IoU
  is **strictly greater** than the threshold (``ovmax > 0.5``);
* a match with a ``difficult`` ground truth is neither TP nor FP; a match with an unmatched one is a TP;
  a second match with the same one (a duplicate) is an FP; no match is an FP;
* ``npos`` counts the non-difficult ground truth. v1.0 uses the difficult flag; the v1.5 script (and we
  apply the same to v2.0) sets every ``difficult`` to 0, so all ground truth counts;
* ``rec = tp / npos``, ``prec = tp / max(tp + fp, eps)``, AP = VOC07 11-point (``use_07_metric=True`` as in
  the devkit's ``main()``); mAP is the mean over classes that have ground truth (``npos > 0``).

IoU: Task1 uses exact polygon IoU (the devkit's ``polyiou.iou_poly``, no +1; its +1 HBB prefilter only
skips pairs whose IoU is 0 anyway). Task2 uses axis-aligned IoU. The devkit's Task2 works on integer
pixel coordinates with ``+1`` areas (``(x2 - x1 + 1) * (y2 - y1 + 1)``) and takes the GT box from vertices
0 and 2 of the (axis-aligned) GT polygon; we treat boxes as continuous coordinates (no +1) and use the
+1 pixel convention only when ``plus_one=True``; the GT box is ``gt["boxes"]`` (or the polygon's enclosing
box when that key is missing).

The devkit scores full images after merging patch detections; these functions score whatever images
``gt`` describes (full images or patches), so say which when reporting.

The IoU (``poly_iou``, ``hbb_iou``) is ``domains.geometry``'s; the head / middle / tail grouping
(``class_groups``, ``group_ap``) is ``benchmark.metrics.long_tail``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmark.metrics import register_protocol
from benchmark.metrics.long_tail import class_groups, group_ap
from domains.geometry import as_quads, hbb_iou, poly_iou, poly_iou_matrix, poly_iou_pairs
from domains.patching import merge_patch_predictions

__all__ = [
    "poly_iou",
    "poly_iou_pairs",
    "hbb_iou",
    "voc_ap",
    "evaluate_dota",
    "map_over_thresholds",
    "class_groups",
    "group_ap",
    "tail_recall",
    "ClassDetections",
    "scene_detections",
]

_EPS = np.finfo(np.float64).eps
_TASKS = ("task1", "task2")
_VERSIONS = ("1.0", "1.5", "2.0")

# ----------------------------------------------------------------------------------------------------
# AP
# ----------------------------------------------------------------------------------------------------


def voc_ap(rec: Any, prec: Any, use_07_metric: bool = True) -> float:
    """VOC average precision of a PR curve, as the VOC / DOTA devkit ``voc_ap`` computes it.

    ``use_07_metric=True``: 11-point, ``sum_t max(prec[rec >= t]) / 11`` (0 where no point reaches t),
    with the devkit's thresholds ``np.arange(0.0, 1.1, 0.1)``. Note that these are not exact decimals
    (e.g. the fourth one is 0.30000000000000004), so a recall of exactly 3/10 does *not* reach t = 0.3;
    we keep that devkit behaviour, as well as its summation ``ap += p / 11`` (a perfect curve gives
    ``1.0000000000000002``, exactly as the devkit prints it).
    ``use_07_metric=False``: VOC2010+ all-point area under the monotone precision envelope.
    """
    rec = np.asarray(rec, dtype=np.float64).ravel()
    prec = np.asarray(prec, dtype=np.float64).ravel()
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reach = rec >= t
            ap += (float(np.max(prec[reach])) if reach.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


def _check(task: str, version: str) -> None:
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    if version not in _VERSIONS:
        raise ValueError(f"version must be one of {_VERSIONS}, got {version!r}")


def _box_to_poly(b: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1)


def _poly_to_box(p: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            p[:, 0::2].min(axis=1, keepdims=True),
            p[:, 1::2].min(axis=1, keepdims=True),
            p[:, 0::2].max(axis=1, keepdims=True),
            p[:, 1::2].max(axis=1, keepdims=True),
        ],
        axis=1,
    )


def _geometry(arr: Any, task: str) -> np.ndarray:
    """Geometry rows for the task: (K, 8) polygons for task1, (K, 4) boxes for task2."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.size == 0:
        return np.zeros((0, 8 if task == "task1" else 4))
    width = arr.shape[1]
    if width not in (4, 8):
        raise ValueError(f"expected boxes (K, 4) or polygons (K, 8), got {arr.shape}")
    if task == "task1":
        return arr if width == 8 else _box_to_poly(arr)
    return arr if width == 4 else _poly_to_box(arr)


def _gt_geometry(rec: Mapping[str, Any], task: str) -> np.ndarray:
    key, other = ("polygons", "boxes") if task == "task1" else ("boxes", "polygons")
    if rec.get(key) is not None:
        return _geometry(rec[key], task)
    if rec.get(other) is not None:
        return _geometry(rec[other], task)
    return _geometry(np.zeros((0, 8)), task)


class _ClassMatches:
    """Per-class, threshold-independent match data: detections in stable score order, each with its
    best-IoU ground truth (global id, -1 if none) and that IoU; plus the difficult flags and npos."""

    def __init__(self, ovmax: np.ndarray, jmax: np.ndarray, difficult: np.ndarray, npos: int):
        self.ovmax, self.jmax, self.difficult, self.npos = ovmax, jmax, difficult, npos

    def tp_fp(self, thresh: float) -> tuple[np.ndarray, np.ndarray]:
        matched = self.ovmax > thresh
        if self.difficult.size:
            diff = matched & self.difficult[np.maximum(self.jmax, 0)]
        else:
            diff = np.zeros_like(matched)
        regular = matched & ~diff
        first = np.zeros_like(matched)
        if regular.any():
            idx = np.nonzero(regular)[0]
            _, first_pos = np.unique(self.jmax[idx], return_index=True)
            first[idx[first_pos]] = True
        tp = first
        fp = ~matched | (regular & ~first)
        return tp, fp

    def curve(self, thresh: float) -> tuple[np.ndarray, np.ndarray, int]:
        tp, fp = self.tp_fp(thresh)
        ctp = np.cumsum(tp, dtype=np.float64)
        cfp = np.cumsum(fp, dtype=np.float64)
        rec = ctp / self.npos if self.npos > 0 else np.full_like(ctp, np.nan)
        prec = ctp / np.maximum(ctp + cfp, _EPS)
        return rec, prec, int(tp.sum())


def _class_index(key: Any, classes: Sequence[str]) -> int:
    if isinstance(key, str):
        return list(classes).index(key)
    return int(key)


class ClassDetections:
    """Detections of one class as arrays (the memory-lean form of ``dets`` values): ``images``,
    positions (K,) into ``list(gt)``; ``scores`` (K,); ``geometry`` (K, 4) xyxy boxes or (K, 8) polygons."""

    __slots__ = ("images", "scores", "geometry")

    def __init__(self, images: Any, scores: Any, geometry: Any):
        self.images = np.asarray(images, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.geometry = np.asarray(geometry, dtype=np.float64).reshape(len(self.images), -1)
        if len(self.scores) != len(self.images):
            raise ValueError(f"{len(self.scores)} scores for {len(self.images)} detections")

    def __len__(self) -> int:
        return len(self.images)


def _as_class_arrays(lst: Any, image_pos: Mapping[Any, int], task: str) -> ClassDetections:
    """Tuples ``(image_id, score, geometry)`` (or a ``ClassDetections``) -> arrays in the task's form."""
    if isinstance(lst, ClassDetections):
        if lst.images.size and (lst.images.min() < 0 or lst.images.max() >= len(image_pos)):
            raise ValueError("detections on an image index outside the ground truth")
        return ClassDetections(lst.images, lst.scores, _geometry(lst.geometry, task))
    lst = list(lst)
    images = np.empty(len(lst), dtype=np.int64)
    for k, d in enumerate(lst):
        if d[0] not in image_pos:
            raise ValueError(f"detection on image {d[0]!r}, which is not in the ground truth")
        images[k] = image_pos[d[0]]
    scores = np.array([float(d[1]) for d in lst], dtype=np.float64)
    rows = [np.asarray(d[2], dtype=np.float64).ravel() for d in lst]
    if not rows:
        geo = np.zeros((0, 8 if task == "task1" else 4))
    elif len({r.size for r in rows}) == 1:
        geo = _geometry(np.stack(rows), task)
    else:  # boxes and polygons mixed
        geo = np.concatenate([_geometry(r, task) for r in rows])
    return ClassDetections(images, scores, geo)


_PAIRS_AT_ONCE = 1 << 20  # IoU entries computed at once: bounds memory whatever the submission's size


def _match_data(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, Any],
    classes: Sequence[str],
    task: str,
    version: str,
    plus_one: bool,
) -> list[_ClassMatches]:
    """Each detection's best-IoU ground truth of its class and image (the devkit's per-detection loop,
    done per (class, image) in bounded chunks: memory O(detections + ground truth))."""
    _check(task, version)
    n_cls = len(classes)
    use_difficult = version == "1.0"
    image_pos = {image_id: k for k, image_id in enumerate(gt)}
    # ground truth per (image, class): geometry and the objects' ids within their class
    gt_cls: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    diff_flags: list[list[np.ndarray]] = [[] for _ in range(n_cls)]
    offsets = np.zeros(n_cls, dtype=np.int64)
    for pos, (image_id, rec) in enumerate(gt.items()):
        geo = _gt_geometry(rec, task)
        labels = np.asarray(rec.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
        if labels.shape[0] != geo.shape[0]:
            raise ValueError(f"image {image_id!r}: {labels.shape[0]} labels for {geo.shape[0]} objects")
        if labels.size and (labels.min() < 0 or labels.max() >= n_cls):
            raise ValueError(f"image {image_id!r}: labels outside the {n_cls} classes")
        diff = rec.get("difficult")
        if diff is None or not use_difficult:
            diff = np.zeros(labels.shape[0], dtype=bool)
        diff = np.asarray(diff).astype(bool).reshape(-1)
        for c in np.unique(labels):
            sel = labels == c
            k = int(sel.sum())
            gt_cls[(pos, int(c))] = (geo[sel], np.arange(offsets[c], offsets[c] + k))
            diff_flags[c].append(diff[sel])
            offsets[c] += k
    per_cls: dict[int, list[Any]] = {}
    for key, lst in dets.items():
        c = _class_index(key, classes)
        if not 0 <= c < n_cls:
            raise ValueError(f"detections for class {key!r} outside the {n_cls} classes")
        per_cls.setdefault(c, []).append(lst)
    out = []
    for c in range(n_cls):
        parts = [_as_class_arrays(lst, image_pos, task) for lst in per_cls.get(c, [])]
        width = 8 if task == "task1" else 4
        images = np.concatenate([p.images for p in parts]) if parts else np.zeros(0, np.int64)
        scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
        geo = np.concatenate([p.geometry for p in parts]) if parts else np.zeros((0, width))
        # detections in stable descending score order (ties keep the order they were given in)
        order = np.argsort(-scores, kind="stable")
        images, geo = images[order], geo[order]
        ovmax = np.full(len(order), -np.inf)
        jmax = np.full(len(order), -1, dtype=np.int64)
        by_image = np.argsort(images, kind="stable")
        starts = (
            np.flatnonzero(np.r_[True, images[by_image][1:] != images[by_image][:-1]]) if len(images) else []
        )
        bounds = list(starts) + [len(images)]
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            rows = by_image[s:e]
            g = gt_cls.get((int(images[rows[0]]), c))
            if g is None:
                continue
            g_geo, g_ids = g
            step = max(1, _PAIRS_AT_ONCE // len(g_geo))
            for k in range(0, len(rows), step):
                r = rows[k : k + step]
                if task == "task1":
                    iou = poly_iou_matrix(as_quads(geo[r]), as_quads(g_geo))
                else:
                    iou = hbb_iou(geo[r], g_geo, plus_one=plus_one)
                best = np.argmax(iou, axis=1)  # the first ground truth on ties, as the devkit's argmax
                ovmax[r] = iou[np.arange(len(r)), best]
                jmax[r] = g_ids[best]
        difficult = np.concatenate(diff_flags[c]) if diff_flags[c] else np.zeros(0, dtype=bool)
        out.append(_ClassMatches(ovmax, jmax, difficult, int((~difficult).sum())))
    return out


def _protocol(task: str, version: str, use_07_metric: bool, plus_one: bool) -> str:
    iou = "polygon IoU" if task == "task1" else ("HBB IoU +1 px" if plus_one else "HBB IoU")
    diff = "difficult ignored" if version == "1.0" else "all GT counted"
    ap = "VOC07 11-point" if use_07_metric else "VOC all-point"
    return f"DOTA devkit {task} v{version} ({iou}, IoU > thr strict, {diff}, {ap} AP)"


def evaluate_dota(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, Sequence[tuple[Any, float, Any]]],
    classes: Sequence[str],
    task: str = "task2",
    version: str = "1.0",
    iou_thresh: float = 0.5,
    use_07_metric: bool = True,
    plus_one: bool = False,
) -> dict[str, Any]:
    """DOTA devkit mAP.

    ``gt``: image_id -> {"polygons": (N, 8), "boxes": (N, 4) xyxy, "labels": (N,) int,
    "difficult": (N,) int}; Task1 needs "polygons" (or falls back to "boxes"), Task2 "boxes" (or the
    polygons' enclosing boxes). ``dets``: class index (or name) -> list of ``(image_id, score, geometry)``,
    geometry an 8-vector polygon or a 4-vector xyxy box (converted to the task's form). Every image that
    carries detections must be a key of ``gt`` (as in the devkit, whose image set file lists them).

    Returns ``{"mAP50": ..., "per_class": {name: AP}, "per_class_recall": {name: final recall},
    "npos": {name: n}, "protocol": str}``; ``"mAP50"`` is named ``"mAP"`` when ``iou_thresh != 0.5``.
    A class without (counted) ground truth gets AP NaN and is left out of the mean; a class with ground
    truth and no detection gets AP 0.
    """
    data = _match_data(gt, dets, classes, task, version, plus_one)
    per_class, per_rec, npos = {}, {}, {}
    for name, m in zip(classes, data, strict=True):
        npos[name] = m.npos
        if m.npos == 0:
            per_class[name], per_rec[name] = float("nan"), float("nan")
            continue
        rec, prec, ntp = m.curve(iou_thresh)
        per_class[name] = voc_ap(rec, prec, use_07_metric)
        per_rec[name] = ntp / m.npos
    valid = [v for v in per_class.values() if not np.isnan(v)]
    key = "mAP50" if iou_thresh == 0.5 else "mAP"
    return {
        key: float(np.mean(valid)) if valid else float("nan"),
        "per_class": per_class,
        "per_class_recall": per_rec,
        "npos": npos,
        "protocol": _protocol(task, version, use_07_metric, plus_one) + f", IoU threshold {iou_thresh:g}",
    }


def map_over_thresholds(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, Sequence[tuple[Any, float, Any]]],
    classes: Sequence[str],
    task: str = "task2",
    version: str = "1.0",
    thresholds: Any = None,
    use_07_metric: bool = True,
    plus_one: bool = False,
) -> dict[str, Any]:
    """Mean of the devkit's VOC AP over IoU thresholds (default ``np.arange(0.5, 0.96, 0.05)``).

    This is the COCO-style threshold range 0.50:0.05:0.95 with the devkit's matching (IoU strictly
    greater than each threshold, difficult handling per version) and VOC interpolation (11-point by
    default). It is *not* COCO's 101-point AP and *not* Ultralytics' OBB mAP50-95, so its numbers are not
    comparable with either. IoUs are computed once and reused for every threshold.

    Returns ``{"mAP": mean over thresholds of the per-threshold mAP, "per_threshold": {thr: mAP},
    "per_class": {name: AP averaged over thresholds}, "protocol": str}``.
    """
    thr = np.arange(0.5, 0.96, 0.05) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    data = _match_data(gt, dets, classes, task, version, plus_one)
    table = np.full((len(thr), len(classes)), np.nan)
    for k, m in enumerate(data):
        if m.npos == 0:
            continue
        for t_i, t in enumerate(thr):
            rec, prec, _ = m.curve(float(t))
            table[t_i, k] = voc_ap(rec, prec, use_07_metric)
    has_gt = np.array([m.npos > 0 for m in data], dtype=bool)
    per_thr = table[:, has_gt].mean(axis=1) if has_gt.any() else np.full(len(thr), np.nan)
    return {
        "mAP": float(per_thr.mean()) if len(thr) else float("nan"),
        "per_threshold": {round(float(t), 4): float(v) for t, v in zip(thr, per_thr, strict=True)},
        "per_class": {n: float(table[:, k].mean()) for k, n in enumerate(classes)},
        "protocol": _protocol(task, version, use_07_metric, plus_one) + ", averaged over IoU thresholds",
    }


# ----------------------------------------------------------------------------------------------------
# Long tail
# ----------------------------------------------------------------------------------------------------


def tail_recall(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, Sequence[tuple[Any, float, Any]]],
    classes: Sequence[str],
    groups: Mapping[str, str],
    task: str = "task2",
    version: str = "1.0",
    iou_thresh: float = 0.5,
    plus_one: bool = False,
) -> float:
    """Recall of tail-class ground truth: the devkit's greedy matching (IoU strictly > ``iou_thresh``)
    over *all* detections (no score cut-off), pooled over the tail classes, i.e. the final point of their
    PR curves: ``sum TP / sum npos``. Difficult ground truth is excluded under v1.0 as in ``evaluate_dota``.
    NaN when the tail classes have no ground truth."""
    data = _match_data(gt, dets, classes, task, version, plus_one)
    tp = npos = 0
    for name, m in zip(classes, data, strict=True):
        if groups.get(name) != "tail" or m.npos == 0:
            continue
        tp += int(m.tp_fp(iou_thresh)[0].sum())
        npos += m.npos
    return tp / npos if npos else float("nan")


# ------------------------------------------------------------------------ the benchmark's protocol


def _scene_ground_truth(test: Any) -> dict[str, dict[str, np.ndarray]]:
    """Scene-level ground truth of a DOTA test split: the whole scenes when the dataset carries them
    (``test.scenes``, patch-based loading), else its samples (image-level loading). The Task2 box of an
    object is the devkit's: the integer-truncated horizontal box of its polygon (not clipped to the
    image), as in the HBB label files the official Task2 evaluation reads."""
    scenes = getattr(test, "scenes", None)
    if scenes is None:
        if any(s.window is not None for s in test):
            raise ValueError("a patch-based DOTA split must carry its whole scenes (DomainDataset.scenes)")
        scenes = list(test)
    gt = {}
    for s in scenes:
        polys = s.polygons if s.polygons is not None else _box_to_poly(np.asarray(s.boxes, np.float64))
        polys = np.asarray(polys, np.float64).reshape(-1, 8)
        keep = ~np.asarray(s.ignore, bool)
        gt[s.meta.get("scene", s.id)] = {
            "polygons": polys[keep],
            "boxes": np.trunc(_poly_to_box(polys[keep])),
            "labels": np.asarray(s.labels)[keep],
            "difficult": np.asarray(s.difficult)[keep],
        }
    return gt


def scene_detections(test: Any, preds: Sequence[Any]) -> dict[str, Any]:
    """Per-scene detections (objects with ``boxes``, ``scores``, ``labels`` and optionally ``polygons``)
    of ``preds`` aligned with ``test``: patch detections (samples with a ``window``) are merged back to
    their scenes with ``domains.patching.merge_patch_predictions`` (class-wise NMS at IoU 0.1, the
    devkit's ``ResultMerge``); detections on whole scenes are taken as they are (a submission of scene
    detections is scored unchanged, never re-NMS'd)."""
    samples = list(test)
    if len(samples) != len(preds):
        raise ValueError(f"{len(preds)} predictions for {len(samples)} test samples")
    if any(s.window is not None for s in samples):
        return merge_patch_predictions(samples, preds)
    return {s.meta.get("scene", s.id): p for s, p in zip(samples, preds, strict=True)}


def devkit_protocol(domain: Any, test: Any, preds: Sequence[Any], task: str = "task2") -> tuple[dict, str]:
    """DOTA's official protocol on full scenes (``CAPTAIN-WHU/DOTA_devkit`` ``dota_evaluation_task1.py``
    / ``dota_evaluation_task2.py`` at commit 9938855, ``dota-v1.5_evaluation_task1.py`` for v1.5/2.0):
    patch detections merged back to their scenes (``scene_detections``), then the devkit's VOC07
    11-point AP with IoU strictly above 0.5; difficult objects are ignored under v1.0 and counted under
    v1.5/2.0. Task1 matches polygons by exact polygon IoU (detections without polygons enter as their
    boxes' rectangles); Task2 matches horizontal boxes with the devkit's ``+1`` pixel areas against the
    integer-truncated ground-truth boxes."""
    version = str(getattr(domain, "options", {}).get("version", "1.0"))
    gt = _scene_ground_truth(test)
    merged = scene_detections(test, preds)
    pos = {k: i for i, k in enumerate(gt)}
    parts: dict[int, list[ClassDetections]] = {}
    for scene, m in merged.items():
        if scene not in pos:
            raise ValueError(f"detections on scene {scene!r}, which is not in the ground truth")
        polys = getattr(m, "polygons", None)
        geom = polys if task == "task1" and polys is not None else m.boxes
        geom = np.asarray(geom, np.float64)
        geom = geom.reshape(len(m.scores), geom.shape[-1] if geom.ndim == 2 else 4)
        labels = np.asarray(m.labels, np.int64).reshape(-1)
        scores = np.asarray(m.scores, np.float64).reshape(-1)
        for c in np.unique(labels):
            sel = labels == c
            parts.setdefault(int(c), []).append(
                ClassDetections(np.full(int(sel.sum()), pos[scene]), scores[sel], geom[sel])
            )
    dets = {c: _concat(v) for c, v in parts.items()}
    res = evaluate_dota(gt, dets, domain.classes, task=task, version=version, plus_one=task == "task2")
    res["per_class"] = {k: {"AP50": float(v)} for k, v in res["per_class"].items() if np.isfinite(v)}
    return res, f"{res['protocol']} on merged scenes"


def _concat(parts: Sequence[ClassDetections]) -> ClassDetections:
    if len(parts) == 1:
        return parts[0]
    width = max(p.geometry.shape[1] for p in parts)
    geo = [p.geometry if p.geometry.shape[1] == width else _geometry(p.geometry, "task1") for p in parts]
    return ClassDetections(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate(geo),
    )


register_protocol("dota_task2")(lambda d, t, p: devkit_protocol(d, t, p, "task2"))
register_protocol("dota_task1")(lambda d, t, p: devkit_protocol(d, t, p, "task1"))
