"""Pedestrian log-average miss rate (MR^-2), the Caltech / CityPersons protocol.

Protocol: Caltech toolbox ``dbEval.m`` v3.2.1 / ``bbGt.m`` (``evalRes``, ``compRoc``) and CityPersons
``eval_MR_multisetup.py`` (the facts used are listed in ``docs/sources.md#pedestrian-mr-2``; the code
here is a fresh implementation, not a copy). Checked against hand-computed curves in
``tests/metrics/test_pedestrian_metric.py``.

* **Setups** (CityPersons ``HtRng`` / ``VisRng``, inclusive at both ends as ``_prepare`` tests them):
  Reasonable h in [50, inf], visibility in [0.65, inf]; Small h in [50, 75], vis in [0.65, inf]; Heavy
  h in [50, inf], vis in [0.2, 0.65]; All h in [20, inf], vis in [0.2, inf]. Ground truth outside the
  setup becomes *ignore* (on top of its own ``ignore`` flag). Height is ``y2 - y1`` (no +1); visibility
  is ``area(visible box) / area(box)``, taken as 1 (fully visible) when ``visible_boxes`` is None or a
  row has no area (Caltech stores ``vf = inf`` for an all-zero visible box).
* **Detections** per image: sorted by score (stable), the first ``max_dets`` (1000) kept, then the
  expanded height filter: kept iff ``h >= hmin / 1.25`` and ``h < hmax * 1.25``.
* **Matching** per image, highest score first: the unmatched regular ground truth with the largest IoU
  ``>= 0.5`` (on equal IoU the later one, as the reference's ``if iou < best: continue`` does) makes a
  TP; failing that, any ignore ground truth whose intersection over the *detection's* area is ``>= 0.5``
  absorbs the detection (ignored, never counted; one ignore region absorbs any number of detections);
  once a detection has a regular match it never looks at ignore ground truth. Everything else is FP.
* **Curve**: ignored detections dropped, all images pooled and sorted by score (stable, images in the
  order of ``gt``); ``fppi = cumFP / #images``, ``recall = cumTP / #non-ignored GT``.
* **MR^-2**: 9 reference points ``10 ** (-2:0.25:0)`` (exact powers, as MATLAB's ``10.^(-2:.25:0)``;
  CityPersons hard-codes the rounded ``.0178, .0316, ...``, which differs only when an fppi value falls
  between the two). At each reference the recall is the one at the **last** curve point with
  ``fppi <= ref``; when there is none (the first FP already lies above the reference) the recall is 0,
  as MATLAB's ``xs1 = [-inf; xs]; ys1 = [0; ys]`` gives. CityPersons' Python port instead indexes
  ``recall[-1]`` there (searchsorted gives -1), i.e. uses the *final* recall; that quirk (which only
  shows with fewer than 100 images) is deliberately not followed. ``miss = 1 - recall`` and
  ``MR = exp(mean(log(miss)))``; a miss of 0 at any reference gives ``log(0) = -inf`` (computed under
  ``np.errstate(divide="ignore")``) and MR = 0, no clamping, as MATLAB. No detections -> MR = 1.
  A setup without non-ignored ground truth gives NaN.
* Not applied: Caltech's aspect-ratio standardisation (``bbApply('resize', bb, 1, 0, .41)`` of non-ignore
  GT and detections) and its ``bnds`` border filter; CityPersons applies neither. ``aspect_ratio=0.41``
  turns the standardisation on.
* ``AP50``: VOC all-point AP of the Reasonable setup's curve (same matching and ignore rules,
  ``precision = cumTP / (cumTP + cumFP)`` over non-ignored detections).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmark.metrics import register_protocol

__all__ = ["REF_FPPI", "SETUPS", "log_average_miss_rate", "miss_rate_at", "evaluate_mr"]

REF_FPPI = 10.0 ** np.linspace(-2.0, 0.0, 9)

# name -> (display name, (hmin, hmax), (vmin, vmax))
SETUPS: dict[str, tuple[str, tuple[float, float], tuple[float, float]]] = {
    "reasonable": ("Reasonable", (50.0, np.inf), (0.65, np.inf)),
    "small": ("Small", (50.0, 75.0), (0.65, np.inf)),
    "heavy": ("Heavy", (50.0, np.inf), (0.2, 0.65)),
    "all": ("All", (20.0, np.inf), (0.2, np.inf)),
}
EXP_FILTER = 1.25
IOU_THRESH = 0.5


def _recall_at(fppi: Any, recall: Any, refs: Any) -> np.ndarray:
    fppi = np.asarray(fppi, dtype=np.float64).ravel()
    recall = np.asarray(recall, dtype=np.float64).ravel()
    refs = np.atleast_1d(np.asarray(refs, dtype=np.float64))
    if fppi.shape != recall.shape:
        raise ValueError(f"fppi and recall differ in length: {fppi.shape} vs {recall.shape}")
    if fppi.size == 0:
        return np.zeros(refs.shape)
    if np.any(np.diff(fppi) < 0):
        raise ValueError("fppi must be non-decreasing (a cumulative curve in descending score order)")
    idx = np.searchsorted(fppi, refs, side="right") - 1  # last point with fppi <= ref
    return np.where(idx >= 0, recall[np.maximum(idx, 0)], 0.0)


def miss_rate_at(fppi: Any, recall: Any, ref: float) -> float:
    """Miss rate ``1 - recall`` at the last curve point with ``fppi <= ref`` (1 when there is none)."""
    return float(1.0 - _recall_at(fppi, recall, [ref])[0])


def log_average_miss_rate(fppi: Any, recall: Any, refs: Any = REF_FPPI) -> float:
    """MR^-2 of a curve given as cumulative ``fppi`` and ``recall`` in descending score order (one point
    per non-ignored detection): ``exp(mean(log(1 - recall@ref)))`` over ``refs`` (default the 9 points
    ``10 ** (-2:0.25:0)``), recall@ref taken at the last point with ``fppi <= ref`` and 0 if none.
    An empty curve gives 1.0; a miss of 0 at any reference gives 0.0."""
    miss = 1.0 - _recall_at(fppi, recall, refs)
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(miss))))


def _voc_ap_all_points(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _boxes(x: Any) -> np.ndarray:
    arr = np.asarray(x if x is not None else np.zeros((0, 4)), dtype=np.float64)
    return arr.reshape(-1, 4)


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)


def _resize_width(b: np.ndarray, ratio: float) -> np.ndarray:
    cx = (b[:, 0] + b[:, 2]) / 2
    half = ratio * (b[:, 3] - b[:, 1]) / 2
    out = b.copy()
    out[:, 0], out[:, 2] = cx - half, cx + half
    return out


def _overlaps(dt: np.ndarray, gt: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """(K, G): IoU for regular ground truth, intersection over detection area for ignore ground truth."""
    iw = np.minimum(dt[:, None, 2], gt[None, :, 2]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    ih = np.minimum(dt[:, None, 3], gt[None, :, 3]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_d, area_g = _area(dt)[:, None], _area(gt)[None, :]
    denom = np.where(ignore[None, :], area_d, area_d + area_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1.0), 0.0)


def _evaluate_image(
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray,
    dt_boxes: np.ndarray,
    dt_scores: np.ndarray,
    hrng: tuple[float, float],
    max_dets: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, TP flags and ignore flags of the kept detections of one image."""
    order = np.argsort(-dt_scores, kind="stable")[:max_dets]
    dt_boxes, dt_scores = dt_boxes[order], dt_scores[order]
    h = dt_boxes[:, 3] - dt_boxes[:, 1]
    keep = (h >= hrng[0] / EXP_FILTER) & (h < hrng[1] * EXP_FILTER)
    dt_boxes, dt_scores = dt_boxes[keep], dt_scores[keep]
    k = dt_boxes.shape[0]
    tp = np.zeros(k, dtype=bool)
    ig = np.zeros(k, dtype=bool)
    if k == 0 or gt_boxes.shape[0] == 0:
        return dt_scores, tp, ig
    ov = _overlaps(dt_boxes, gt_boxes, gt_ignore)
    reg = np.nonzero(~gt_ignore)[0]
    ign = np.nonzero(gt_ignore)[0]
    ov_reg, ov_ign = ov[:, reg], ov[:, ign]
    matched = np.zeros(reg.size, dtype=bool)
    for d in range(k):
        if reg.size:
            row = np.where(matched, -1.0, ov_reg[d])
            best = row.max()
            if best >= IOU_THRESH:
                j = reg.size - 1 - int(np.argmax(row[::-1]))  # the last GT with the best IoU
                matched[j] = True
                tp[d] = True
                continue
        if ign.size and ov_ign[d].max() >= IOU_THRESH:
            ig[d] = True
    return dt_scores, tp, ig


def _setup_curve(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, tuple[Any, Any]],
    hrng: tuple[float, float],
    vrng: tuple[float, float],
    max_dets: int,
    aspect_ratio: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Pooled curve of a setup: (fppi, recall, precision, #non-ignored GT)."""
    scores, tps = [], []
    n_reg = 0
    for image_id, rec in gt.items():
        boxes = _boxes(rec.get("boxes"))
        n = boxes.shape[0]
        ignore = np.asarray(rec.get("ignore", np.zeros(n)), dtype=bool).reshape(-1)
        if ignore.shape[0] != n:
            raise ValueError(f"image {image_id!r}: {ignore.shape[0]} ignore flags for {n} boxes")
        vis = np.ones(n)
        if rec.get("visible_boxes") is not None:
            vb = _boxes(rec["visible_boxes"])
            full, va = _area(boxes), _area(vb)
            with np.errstate(divide="ignore", invalid="ignore"):
                vis = np.where((va > 0) & (full > 0), va / np.where(full > 0, full, 1.0), 1.0)
        h = boxes[:, 3] - boxes[:, 1]
        ignore = ignore | (h < hrng[0]) | (h > hrng[1]) | (vis < vrng[0]) | (vis > vrng[1])
        n_reg += int((~ignore).sum())
        if image_id in dets:
            dt_boxes, dt_scores = dets[image_id]
            dt_boxes = _boxes(dt_boxes)
            dt_scores = np.asarray(dt_scores, dtype=np.float64).reshape(-1)
            if dt_scores.shape[0] != dt_boxes.shape[0]:
                raise ValueError(
                    f"image {image_id!r}: {dt_scores.shape[0]} scores for {dt_boxes.shape[0]} boxes"
                )
        else:
            dt_boxes, dt_scores = np.zeros((0, 4)), np.zeros(0)
        if aspect_ratio is not None:
            boxes = boxes.copy()
            boxes[~ignore] = _resize_width(boxes[~ignore], aspect_ratio)
            dt_boxes = _resize_width(dt_boxes, aspect_ratio)
        s, tp, ig = _evaluate_image(boxes, ignore, dt_boxes, dt_scores, hrng, max_dets)
        scores.append(s[~ig])
        tps.append(tp[~ig])
    s = np.concatenate(scores) if scores else np.zeros(0)
    tp = np.concatenate(tps) if tps else np.zeros(0, dtype=bool)
    order = np.argsort(-s, kind="stable")
    tp = tp[order]
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(~tp, dtype=np.float64)
    n_img = max(len(gt), 1)
    fppi = cfp / n_img
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = ctp / n_reg if n_reg else np.full_like(ctp, np.nan)
        precision = ctp / np.maximum(ctp + cfp, 1.0)
    return fppi, recall, precision, n_reg


def evaluate_mr(
    gt: Mapping[Any, Mapping[str, Any]],
    dets: Mapping[Any, tuple[Any, Any]],
    setups: Sequence[str] = ("reasonable", "small", "heavy", "all"),
    max_dets: int = 1000,
    aspect_ratio: float | None = None,
) -> dict[str, float]:
    """MR^-2 per setup (Caltech / CityPersons protocol, see the module docstring).

    ``gt``: image_id -> {"boxes": (N, 4) xyxy, "ignore": (N,) bool, "visible_boxes": (N, 4) xyxy or None};
    every evaluated image must be a key (images without pedestrians included: they count in FPPI).
    ``dets``: image_id -> (boxes (K, 4) xyxy, scores (K,)); images missing here have no detections, and
    detections on images that are not in ``gt`` raise ``ValueError``.

    Returns ``{"MR-2 <Setup>": ... for each setup, "MR@FPPI0.1 Reasonable": miss rate at FPPI 0.1,
    "AP50": VOC all-point AP of the Reasonable setup}`` (fractions in [0, 1], not percentages; the last
    two only when "reasonable" is among ``setups``).
    """
    unknown = [k for k in dets if k not in gt]
    if unknown:
        raise ValueError(f"detections on images not in the ground truth: {unknown[:5]!r}")
    out: dict[str, float] = {}
    for key in setups:
        if key not in SETUPS:
            raise ValueError(f"unknown setup {key!r}; choose from {tuple(SETUPS)}")
        name, hrng, vrng = SETUPS[key]
        fppi, recall, precision, n_reg = _setup_curve(gt, dets, hrng, vrng, max_dets, aspect_ratio)
        if n_reg == 0:
            out[f"MR-2 {name}"] = float("nan")
            if key == "reasonable":
                out["MR@FPPI0.1 Reasonable"] = float("nan")
                out["AP50"] = float("nan")
            continue
        out[f"MR-2 {name}"] = log_average_miss_rate(fppi, recall)
        if key == "reasonable":
            out["MR@FPPI0.1 Reasonable"] = miss_rate_at(fppi, recall, 0.1)
            out["AP50"] = _voc_ap_all_points(recall, precision)
    return out


# ----------------------------------------------------------------------------------------------------
# The ``mr2`` metric protocol (a domain's test split -> the setups above)
# ----------------------------------------------------------------------------------------------------


def samples_to_mr_inputs(
    samples: Sequence[Any], preds: Sequence[Any], positive_label: int = 0
) -> tuple[dict, dict]:
    """``(gt, dets)`` for ``evaluate_mr`` from samples and aligned predictions: every object that is not
    ``positive_label`` or is flagged ``ignore`` is an ignore region; only detections of
    ``positive_label`` count."""
    if len(preds) != len(samples):
        raise ValueError(f"{len(preds)} predictions for {len(samples)} samples")
    gt: dict[Any, dict[str, Any]] = {}
    dets: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    for i, (s, p) in enumerate(zip(samples, preds, strict=True)):
        gt[i] = {
            "boxes": s.boxes,
            "ignore": np.asarray(s.ignore, bool) | (np.asarray(s.labels) != positive_label),
            "visible_boxes": s.visible_boxes,
        }
        keep = np.asarray(p.labels) == positive_label
        dets[i] = (np.asarray(p.boxes)[keep], np.asarray(p.scores)[keep])
    return gt, dets


def _mr2_protocol(domain: Any, test: Any, preds: Sequence[Any]) -> tuple[dict[str, Any], str]:
    """The ``mr2`` metric protocol: MR^-2 of the four setups, MR@FPPI0.1 and AP50 of a domain's test
    split (class 0 is the pedestrian class; lower MR is better)."""
    gt, dets = samples_to_mr_inputs(list(test), preds)
    res: dict[str, Any] = dict(evaluate_mr(gt, dets))
    name = domain.classes[0] if domain.classes else "pedestrian"
    res["per_class"] = {name: {"AP50": res["AP50"], "MR-2 Reasonable": res["MR-2 Reasonable"]}}
    impl = "CityPersons/Caltech MR^-2 (labelbudget benchmark.metrics.pedestrian; 9 FPPI points 1e-2..1)"
    return res, impl


register_protocol("mr2")(_mr2_protocol)
