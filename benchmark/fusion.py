"""Weighted Boxes Fusion of several detection sets of one image.

Solovyev, Wang & Gabruseva, "Weighted boxes fusion: Ensembling boxes from different object detection
models", Image and Vision Computing 107 (2021). ``wbf`` takes and returns pixel ``xyxy`` boxes and
carries the fused boxes' labels and (averaged) scores, so pseudo-label fusion code stays in pixel
space. It computes exactly (bit for bit) what ``ensemble_boxes.weighted_boxes_fusion`` (the
reference implementation, a dependency kept for the equivalence test) returns on the boxes
normalised to [0, 1], about three times as fast: the filtering and sorting are vectorised, the fused boxes
are updated from running sums instead of being recomputed from all their members, and the IoUs skip
the fused boxes a detection does not overlap (``_cluster``):

1. Detections scoring below ``skip_box_thr`` and boxes of zero area are dropped; each detection's
   score is multiplied by its set's weight.
2. Per class (classes in the order of their first detection), detections in decreasing score order
   (numpy's ``argsort``, as the reference) join the cluster whose fused box overlaps them most if
   that IoU exceeds ``iou_thr``, else open a cluster. A fused box is the score-weighted mean of its
   members' boxes, accumulated in float32 in member order, with the mean (``"avg"``) or largest
   (``"max"``) score; a one-member cluster keeps its detection as it is (float64).
3. Scores are rescaled (``"avg"``: by min(#sets, #members) / sum of weights; ``"max"``: by 1 / the
   largest weight) and the fused boxes sorted by decreasing score.
"""

from __future__ import annotations

import numpy as np

from domains.geometry import hbb_iou

# ``a32 /= s64`` (a float32 array divided in place by a float64 scalar, as the reference divides its
# float32 fused box by the float64 score sum) runs in float64 under numpy >= 2's promotion rules
# (NEP 50) and in float32 under numpy 1.x's value-based casting; the vectorised division follows
# whichever this numpy does.
_probe = np.ones(1, np.float32)
_probe /= np.float64(3.0000001)
_F32_DIV_IN_F64 = bool(_probe[0] == np.float32(1.0 / 3.0000001))
del _probe


def _f32(x: float) -> float:
    """``x`` rounded to float32 (as storing it in a float32 array does), back as a Python float."""
    return float(np.float32(x))


def _fused_coordinate(acc: float, conf: float) -> float:
    """A fused box coordinate: the float32 sum ``acc`` divided by the score sum ``conf`` as the
    reference divides its float32 box in place (a zero sum gives nan or inf, as numpy's does)."""
    if conf == 0.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float32(np.float64(acc) / np.float64(conf)))
    if _F32_DIV_IN_F64:
        return _f32(acc / conf)
    return float(np.float32(acc) / np.float32(conf))


def _iou_numpy(fused: list[list[float]], areas: list[float], box: list[float]) -> np.ndarray:
    """IoUs of ``box`` with every fused box, computed as the reference computes them (numpy, float64;
    the general path: non-finite coordinates, a negative IoU threshold)."""
    f = np.array(fused, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = box
    with np.errstate(divide="ignore", invalid="ignore"):
        inter = np.maximum(np.minimum(f[:, 2], x2) - np.maximum(f[:, 0], x1), 0) * np.maximum(
            np.minimum(f[:, 3], y2) - np.maximum(f[:, 1], y1), 0
        )
        return inter / (np.array(areas) + (x2 - x1) * (y2 - y1) - inter)


def _best_match(fused: list[list[float]], areas: list[float], box: list[float], iou_thr: float) -> int:
    """The cluster ``box`` joins (-1: none): the first of the largest IoUs with the fused boxes if it
    exceeds ``iou_thr``. Fused boxes that ``box`` does not overlap have IoU 0 and are skipped; the
    others' IoUs are the reference's numpy expression evaluated element by element in Python floats
    (``np.maximum(a, b)`` is ``a if a >= b else b``), so the same float64 values."""
    x1, y1, x2, y2 = box
    ba = (x2 - x1) * (y2 - y1)
    best, best_iou = -1, iou_thr
    for c, (fx1, fy1, fx2, fy2) in enumerate(fused):
        if fx2 <= x1 or x2 <= fx1 or fy2 <= y1 or y2 <= fy1:
            continue  # no overlap: IoU 0, never above a threshold >= 0
        dx = (fx2 if fx2 <= x2 else x2) - (fx1 if fx1 >= x1 else x1)
        dy = (fy2 if fy2 <= y2 else y2) - (fy1 if fy1 >= y1 else y1)
        inter = (dx if dx >= 0 else 0) * (dy if dy >= 0 else 0)
        union = areas[c] + ba - inter
        if not union > 0:  # the reference would divide by zero here
            return -2
        iou = inter / union
        if iou > best_iou:
            best, best_iou = c, iou
    return best


def _cluster(r: np.ndarray, iou_thr: float, conf_type: str) -> np.ndarray:
    """Step 2 for one class: ``r`` (n, 8) rows ``[label, weighted score, weight, set, x1, y1, x2,
    y2]`` sorted by decreasing score -> the clusters' rows (in opening order) with their member
    counts in column 3. The running sums are Python floats (float64), the float32 ones rounded after
    each addition as the reference's float32 accumulator is. ``_best_match`` serves while every
    coordinate is finite, every fused box has a positive area and ``iou_thr >= 0``; otherwise
    ``_iou_numpy`` (the reference's expression, NaN first as ``argmax`` takes it)."""
    rows = r.tolist()
    fast = iou_thr >= 0 and bool(np.isfinite(r[:, 4:8]).all())
    fused_rows: list[list[float]] = []  # the clusters' rows as the reference keeps them
    boxes: list[list[float]] = []  # their boxes
    areas: list[float] = []
    acc: list[list[float]] = []  # per cluster: sum of score x coordinate, float32 values
    conf: list[float] = []  # sum of scores
    wsum: list[float] = []
    top: list[float] = []  # largest score
    count: list[int] = []
    for row in rows:
        lab, sc, wt, _, x1, y1, x2, y2 = row
        box = [x1, y1, x2, y2]
        best = -1
        if boxes:
            best = _best_match(boxes, areas, box, iou_thr) if fast else -2
            if best == -2:
                fast = False
                iou = _iou_numpy(boxes, areas, box)
                i = int(iou.argmax())
                best = -1 if iou[i] <= iou_thr else i
        if best < 0:  # a new cluster: the detection's own row
            fused_rows.append(row)
            boxes.append(box)
            areas.append((x2 - x1) * (y2 - y1))
            acc.append([_f32(0.0 + sc * x) for x in box])
            conf.append(sc)
            wsum.append(wt)
            top.append(sc)
            count.append(1)
            continue
        a = acc[best]
        for c, x in enumerate(box):
            a[c] = _f32(a[c] + sc * x)
        conf[best] += sc
        wsum[best] += wt
        top[best] = max(top[best], sc)
        count[best] += 1
        f = [_fused_coordinate(v, conf[best]) for v in a]
        score = conf[best] / count[best] if conf_type == "avg" else top[best]
        fused_rows[best] = [_f32(lab), _f32(score), _f32(wsum[best]), -1.0, *f]
        boxes[best] = f
        areas[best] = (f[2] - f[0]) * (f[3] - f[1])
        if fast and not (np.isfinite(f).all() and areas[best] > 0):
            fast = False
    out = np.array(fused_rows, dtype=np.float64).reshape(-1, 8)
    out[:, 3] = count
    return out


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
    average; ``"max"`` keeps the cluster's largest score (divided by the largest weight)."""
    if conf_type not in ("avg", "max"):
        raise ValueError(f"wbf: conf_type must be 'avg' or 'max', got {conf_type!r}")
    m = len(boxes)
    w_sets = np.ones(m) if weights is None else np.array(weights, dtype=np.float64).reshape(-1)
    if len(w_sets) != m or len(scores) != m or len(labels) != m:
        raise ValueError(
            f"wbf: {m} box sets, {len(scores)} score sets, {len(labels)} label sets and "
            f"{len(w_sets)} weights: one of each per set"
        )
    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float64)
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b_n, s_n, l_n, t_n = [], [], [], []
    for t, (b, s, lab) in enumerate(zip(boxes, scores, labels, strict=True)):
        b = np.clip(np.asarray(b, dtype=np.float64).reshape(-1, 4) / scale, 0.0, 1.0)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        lab = np.asarray(lab, dtype=np.int64).reshape(-1)
        if not len(b) == len(s) == len(lab):
            raise ValueError(f"wbf: set {t} has {len(b)} boxes, {len(s)} scores and {len(lab)} labels")
        b_n.append(b)
        s_n.append(s)
        l_n.append(lab)
        t_n.append(np.full(len(b), t))
    b, s, lab, t = (np.concatenate(x) for x in (b_n, s_n, l_n, t_n))
    if not len(s):
        return empty
    # 1. keep what the reference keeps (a box with x2 < x1 is swapped, as it does)
    swap = b[:, 2:4] < b[:, 0:2]
    b = np.concatenate([np.where(swap, b[:, 2:4], b[:, 0:2]), np.where(swap, b[:, 0:2], b[:, 2:4])], 1)
    keep = ~(s < skip_box_thr) & ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) != 0.0)
    if not keep.any():
        return empty
    b, s, lab, t = b[keep], s[keep], lab[keep], t[keep]
    rows = np.concatenate([lab[:, None], (s * w_sets[t])[:, None], w_sets[t][:, None], t[:, None], b], 1)
    _, first = np.unique(lab, return_index=True)
    per_class = []
    for i in np.sort(first):
        r = rows[lab == lab[i]]
        per_class.append(r[r[:, 1].argsort()[::-1]])
    # 2. clusters; 3. rescaled scores, sorted
    fused = np.concatenate([_cluster(r, iou_thr, conf_type) for r in per_class])
    if conf_type == "avg":
        fused[:, 1] = fused[:, 1] * np.minimum(m, fused[:, 3]) / w_sets.sum()
    else:
        fused[:, 1] = fused[:, 1] / w_sets.max()
    fused = fused[fused[:, 1].argsort()[::-1]]
    fb = fused[:, 4:] * scale
    return fb.astype(np.float32), fused[:, 1].astype(np.float32), fused[:, 0].astype(np.int64)


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
