"""Weighted Boxes Fusion of several detection sets of one image (``ensemble-boxes``).

Solovyev, Wang & Gabruseva, "Weighted boxes fusion: Ensembling boxes from different object detection
models", Image and Vision Computing 107 (2021). ``ensemble_boxes.weighted_boxes_fusion`` wants boxes
normalised to [0, 1]; this wrapper takes and returns pixel ``xyxy`` boxes and carries the fused
boxes' labels and (averaged) scores, so pseudo-label fusion code stays in pixel space.
"""

from __future__ import annotations

import numpy as np
from ensemble_boxes import weighted_boxes_fusion

from domains.geometry import hbb_iou


def wbf(
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    labels: list[np.ndarray],
    size: tuple[int, int],
    weights: list[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse detection sets (pixel ``xyxy`` boxes, scores, labels) of one image of ``size`` (h, w).

    Returns fused ``(boxes (N, 4) float32 pixels, scores (N,) float32, labels (N,) int64)``. With
    ``conf_type="avg"`` a box found by only some of the sets has its score scaled down by the
    fraction of sets (weights) that found it, which is what makes fusion a filter as well as an
    average."""
    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float64)
    b_n, s_n, l_n = [], [], []
    for b, s, lab in zip(boxes, scores, labels, strict=True):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4) / scale
        b_n.append(np.clip(b, 0.0, 1.0).tolist())
        s_n.append(np.asarray(s, dtype=np.float64).reshape(-1).tolist())
        l_n.append(np.asarray(lab, dtype=np.int64).reshape(-1).tolist())
    if not any(len(s) for s in s_n):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    fb, fs, fl = weighted_boxes_fusion(
        b_n, s_n, l_n, weights=weights, iou_thr=iou_thr, skip_box_thr=skip_box_thr, conf_type=conf_type
    )
    fb = np.asarray(fb, dtype=np.float64).reshape(-1, 4) * scale
    return fb.astype(np.float32), np.asarray(fs, np.float32), np.asarray(fl).astype(np.int64)


def fused_polygons(
    fused_boxes: np.ndarray,
    fused_labels: np.ndarray,
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    labels: list[np.ndarray],
    polygons: list[np.ndarray],
) -> np.ndarray:
    """Polygons (N, 8) for WBF's fused boxes of oriented detection sets: each fused box takes the
    polygon of the input detection of its class that overlaps it most (box IoU; the higher score on
    ties). Angles are not averaged (a mean of angles is ill-defined across the pi/2 symmetry of a
    rectangle); the fused box keeps WBF's coordinates."""
    fb = np.asarray(fused_boxes, np.float64).reshape(-1, 4)
    if not len(fb):
        return np.zeros((0, 8), np.float32)
    mb = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes])
    ms = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in scores])
    ml = np.concatenate([np.asarray(lab, np.int64).reshape(-1) for lab in labels])
    mp = np.concatenate([np.asarray(p, np.float32).reshape(-1, 8) for p in polygons])
    iou = hbb_iou(fb, mb)
    same = np.asarray(fused_labels, np.int64).reshape(-1, 1) == ml[None, :]
    rank = np.where(same, iou + 1e-6 * ms[None, :], -1.0)
    best = rank.argmax(1)
    if (rank[np.arange(len(fb)), best] < 0).any():
        raise ValueError("a fused box has no input detection of its class")
    return mp[best].copy()
