"""Geometry of detections: exact IoU of convex quadrilaterals (oriented boxes) and of axis-aligned boxes.

The lowest layer: patching (``domains.patching``), the detectors' polygon NMS, box fusion, the
acquisition strategies and the DOTA metric (``benchmark.metrics.dota``) all take their IoU from here.

``poly_iou`` is exact polygon IoU (the DOTA devkit's ``polyiou.iou_poly``, no +1), checked against
shapely 2 (GEOS) to 1e-9 on random rotated rectangles and convex quadrilaterals plus degenerate cases
(``tests/metrics/test_dota_metric.py``): float64 Sutherland-Hodgman (vertices held as complex numbers) in a
frame centred on the first polygon, after an axis-aligned-box prefilter
(``tests/perf/test_perf_polygon_iou.py`` compares it with shapely's STRtree route). ``hbb_iou`` takes
continuous coordinates, or the devkit's Task2 ``+1`` pixel convention with ``plus_one=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["poly_iou", "poly_iou_pairs", "hbb_iou", "poly_iou_matrix", "as_quads"]

_CHUNK = 1 << 15  # pairs clipped at once (bounds the temporary buffers to a few MB)


def as_quads(x: Any) -> np.ndarray:
    """(K, 8) corners -> (K, 4) complex128 (x + iy)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.complex128)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 8:
        raise ValueError(f"expected quadrilaterals of shape (K, 8), got {arr.shape}")
    return arr[:, 0::2] + 1j * arr[:, 1::2]


def _shoelace(p: np.ndarray) -> np.ndarray:
    """Signed area of polygons given as complex vertex rows (..., K) (counter-clockwise positive):
    ``0.5 * sum Im(conj(p_i) * p_{i+1})``."""
    nxt = np.concatenate((p[..., 1:], p[..., :1]), axis=-1)  # np.roll(p, -1, -1), without its overhead
    return 0.5 * np.sum((np.conj(p) * nxt).imag, axis=-1)


def _prep(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counter-clockwise corners, centres, areas and AABBs (x1, y1, x2, y2) of complex quads (K, 4)."""
    centre = q.mean(axis=1)
    signed = _shoelace(q - centre[:, None])
    q = np.where((signed < 0)[:, None], q[:, ::-1], q)
    box = np.stack([q.real.min(axis=1), q.imag.min(axis=1), q.real.max(axis=1), q.imag.max(axis=1)], axis=1)
    return q, centre, np.abs(signed), box


def _clip_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of aligned pairs of counter-clockwise convex quads (P, 4) (complex vertices),
    both already in a local frame.

    Sutherland-Hodgman: A is clipped by B's four closed half-planes in turn. For vertex j the stage emits
    [the intersection of edge (j-1 -> j) with B's edge line, if the edge crosses it] and [vertex j, if it
    is inside]; the emitted points are compacted (a scatter by running count) into a buffer whose width
    is the largest count in the batch (normally one more than before: 4 -> 5 -> ... -> 8), and unused
    slots repeat the last emitted point, which leaves the polygon and its shoelace area unchanged. Since
    nothing is ever truncated, rounding noise that makes the polygon very slightly non-convex cannot lose
    vertices. An emptied polygon becomes a single repeated point (area exactly 0).
    """
    n_pairs = a.shape[0]
    base = np.arange(n_pairs)[:, None]
    p = a
    for k in range(4):
        k1 = (k + 1) % 4
        e0 = b[:, k : k + 1]
        edge = np.conj(b[:, k1 : k1 + 1] - e0)
        # d = cross(edge, p - e0) >= 0  <=>  p on the left of (inside) B's k-th edge
        d = (edge * (p - e0)).imag
        inside = d >= 0
        size = p.shape[1]
        p_prev = np.concatenate((p[:, -1:], p[:, :-1]), axis=1)  # np.roll(x, 1, axis=1), cheaper
        d_prev = np.concatenate((d[:, -1:], d[:, :-1]), axis=1)
        crossing = inside != np.concatenate((inside[:, -1:], inside[:, :-1]), axis=1)
        t = d_prev / np.where(crossing, d_prev - d, 1.0)
        cand = np.empty((n_pairs, size, 2), dtype=np.complex128)
        cand[:, :, 0] = p_prev + t * (p - p_prev)
        cand[:, :, 1] = p
        keep = np.empty((n_pairs, size, 2), dtype=bool)
        keep[:, :, 0] = crossing
        keep[:, :, 1] = inside
        keep = keep.reshape(n_pairs, 2 * size)
        rank = np.cumsum(keep, axis=1)
        count = rank[:, -1]
        width = max(int(count.max()), 1)
        dest = np.where(keep, rank - 1, width) + base * (width + 1)  # column `width` collects the rest
        out = np.zeros((n_pairs, width + 1), dtype=np.complex128)
        out.ravel()[dest.ravel()] = cand.ravel()
        slot = np.minimum(np.arange(width)[None, :], np.maximum(count - 1, 0)[:, None])
        p = np.take(out, slot + base * (width + 1))
    return np.maximum(_shoelace(p), 0.0)


def _iou_of_pairs(qa, ca, area_a, qb, area_b, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    out = np.empty(ia.shape[0], dtype=np.float64)
    for s in range(0, ia.shape[0], _CHUNK):
        i, j = ia[s : s + _CHUNK], ib[s : s + _CHUNK]
        c = ca[i][:, None]
        inter = _clip_area(qa[i] - c, qb[j] - c)
        union = area_a[i] + area_b[j] - inter
        out[s : s + _CHUNK] = np.clip(inter / union, 0.0, 1.0)
    return out


def _overlapping_pairs(box_a: np.ndarray, box_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs whose AABBs overlap with positive area. A sweep on x: with ``b`` sorted by x1, the
    candidates of each ``a`` form one contiguous run (x1_b < x2_a and x1_b > x1_a - max width of b, with a
    small margin); the exact four strict inequalities are then tested on the candidates only."""
    order = np.argsort(box_b[:, 0], kind="stable")
    bs = np.ascontiguousarray(box_b[order].T).T  # column-major: cheap per-column gathers
    max_w = float(np.max(bs[:, 2] - bs[:, 0]))
    margin = 1e-9 * (1.0 + max_w + float(np.max(np.abs(box_a[:, 0]))))
    hi = np.searchsorted(bs[:, 0], box_a[:, 2], side="left")
    lo = np.searchsorted(bs[:, 0], box_a[:, 0] - max_w - margin, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    ia = np.repeat(np.arange(box_a.shape[0]), counts)
    start = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    jb = start + np.arange(total)
    keep = box_a[:, 0][ia] < bs[:, 2][jb]  # (x1_b < x2_a holds by construction of hi)
    keep &= bs[:, 1][jb] < box_a[:, 3][ia]
    keep &= box_a[:, 1][ia] < bs[:, 3][jb]
    return ia[keep], order[jb[keep]]


def poly_iou(a: Any, b: Any) -> np.ndarray:
    """Exact IoU matrix (N, M) of convex quadrilaterals ``a`` (N, 8) and ``b`` (M, 8).

    Corners are ``x1 y1 x2 y2 x3 y3 x4 y4`` in boundary order, clockwise or counter-clockwise, starting
    anywhere (a self-crossing corner order is not supported, nor are non-convex quadrilaterals). Only
    pairs whose axis-aligned bounding boxes overlap with positive area are clipped; all other pairs, and
    every pair involving a zero-area polygon, get IoU 0. Computed in float64 in a frame centred on
    ``a``'s polygon.
    """
    return poly_iou_matrix(as_quads(a), as_quads(b))


def poly_iou_matrix(qa, qb, group_a=None, group_b=None) -> np.ndarray:
    """``poly_iou`` on complex quads; with group labels only pairs of the same group are computed (the
    others stay 0), so one call can serve all classes of an image."""
    out = np.zeros((qa.shape[0], qb.shape[0]), dtype=np.float64)
    if out.size == 0:
        return out
    qa, ca, area_a, box_a = _prep(qa)
    qb, _, area_b, box_b = _prep(qb)
    ia, ib = _overlapping_pairs(box_a, box_b)
    keep = (area_a[ia] > 0) & (area_b[ib] > 0)
    if group_a is not None:
        keep &= group_a[ia] == group_b[ib]
    ia, ib = ia[keep], ib[keep]
    if ia.size:
        out[ia, ib] = _iou_of_pairs(qa, ca, area_a, qb, area_b, ia, ib)
    return out


def poly_iou_pairs(a: Any, b: Any) -> np.ndarray:
    """IoU (P,) of aligned pairs ``a[k]``, ``b[k]`` of convex quadrilaterals (P, 8); see ``poly_iou``."""
    qa, qb = as_quads(a), as_quads(b)
    if qa.shape[0] != qb.shape[0]:
        raise ValueError(f"poly_iou_pairs needs aligned inputs, got {qa.shape[0]} and {qb.shape[0]}")
    out = np.zeros(qa.shape[0], dtype=np.float64)
    if out.size == 0:
        return out
    qa, ca, area_a, box_a = _prep(qa)
    qb, _, area_b, box_b = _prep(qb)
    cand = (
        (box_a[:, 0] < box_b[:, 2])
        & (box_b[:, 0] < box_a[:, 2])
        & (box_a[:, 1] < box_b[:, 3])
        & (box_b[:, 1] < box_a[:, 3])
        & (area_a > 0)
        & (area_b > 0)
    )
    (idx,) = np.nonzero(cand)
    if idx.size:
        out[idx] = _iou_of_pairs(qa, ca, area_a, qb, area_b, idx, idx)
    return out


def hbb_iou(a: Any, b: Any, plus_one: bool = False) -> np.ndarray:
    """IoU matrix (N, M) of axis-aligned ``x1 y1 x2 y2`` boxes.

    Continuous coordinates by default (area ``(x2 - x1) * (y2 - y1)``). ``plus_one=True`` applies the
    DOTA devkit Task2 / py-faster-rcnn convention for integer pixel coordinates, where a box covers
    ``x2 - x1 + 1`` pixels. Boxes with no area give IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    off = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + off
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + off
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0] + off, 0.0) * np.maximum(a[:, 3] - a[:, 1] + off, 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0] + off, 0.0) * np.maximum(b[:, 3] - b[:, 1] + off, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou
