"""Cutting large scenes into patches and merging patch detections back to scene coordinates.

This is the window algorithm of the split tool most DOTA papers use (mmrotate / BboxToolkit
``img_split.py``, also Ultralytics ``split_dota.py``; facts in ``docs/sources.md#dota-patches``,
the code here is our own):

* windows of ``size`` px step by ``size - gap``; along an axis shorter than ``size`` there is one window;
  otherwise ``ceil((L - size) / step + 1)`` windows, the last one moved back so that it is flush with the
  border (``L - size``). A window is kept when the part of it inside the image covers more than
  ``img_rate_thr`` (0.6) of its area; when no window passes, the best ones are kept, so every scene
  yields at least one patch. Windows are clipped to the image (no padding);
* an object belongs to a window when at least ``iof_thr`` (0.7) of its polygon's area lies inside the
  window (intersection over foreground, computed with shapely). Polygons are not clipped (as in
  mmrotate); the horizontal box is the polygon's hull clipped to the patch. An object that is cut by the
  window (IoF < 1) is marked difficult 2, as the split tools do;
* patch ids are ``<scene>__<size>__<x>___<y>`` (e.g. ``P0000__1024__0___824``), the mmrotate naming.

``merge_patch_predictions`` shifts every patch detection by its window offset and removes the duplicates
that overlapping windows produce with class-wise NMS per scene: axis-aligned NMS for boxes, polygon NMS
(``domains.geometry.poly_iou``) for oriented detections, keeping a detection when its IoU with every
higher-scored kept one is ``<= 0.1`` (the DOTA devkit's ``ResultMerge_multi_process`` threshold).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domains.geometry import hbb_iou, poly_iou

__all__ = [
    "window_starts",
    "windows",
    "patch_id",
    "parse_patch_id",
    "assign_objects",
    "PatchObjects",
    "MergedDetections",
    "merge_patch_predictions",
    "nms",
]

PATCH_ID = re.compile(r"^(?P<scene>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)$")


def window_starts(length: int, size: int, gap: int) -> list[int]:
    """Start offsets of the windows along one axis of ``length`` px (last one flush with the border)."""
    if size <= 0 or gap < 0 or gap >= size:
        raise ValueError(f"need 0 <= gap < size, got size {size}, gap {gap}")
    step = size - gap
    if length <= size:
        return [0]
    n = math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(n)]
    if starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def windows(
    width: int, height: int, size: int = 1024, gap: int = 200, img_rate_thr: float = 0.6
) -> list[tuple[int, int, int, int]]:
    """The kept windows ``(x, y, w, h)`` of a ``width`` x ``height`` scene, row by row (y outer),
    clipped to the image."""
    xs, ys = window_starts(width, size, gap), window_starts(height, size, gap)
    cand = [(x, y, min(size, width - x), min(size, height - y)) for y in ys for x in xs]
    rates = np.array([w * h / (size * size) for _, _, w, h in cand])
    keep = rates > img_rate_thr
    if not keep.any():
        keep = np.abs(rates - rates.max()) < 1e-9
    return [c for c, k in zip(cand, keep, strict=True) if k]


def patch_id(scene: str, size: int, x: int, y: int) -> str:
    return f"{scene}__{size}__{x}___{y}"


def parse_patch_id(pid: str) -> tuple[str, int, int, int]:
    """``(scene, size, x, y)`` of a patch id; ``ValueError`` for anything else."""
    m = PATCH_ID.match(pid)
    if m is None:
        raise ValueError(f"not a patch id (<scene>__<size>__<x>___<y>): {pid!r}")
    return m["scene"], int(m["size"]), int(m["x"]), int(m["y"])


@dataclass
class PatchObjects:
    """The objects of one window, in patch coordinates."""

    index: np.ndarray  # (K,) indices into the scene's objects
    polygons: np.ndarray  # (K, 8) float32, shifted, not clipped
    boxes: np.ndarray  # (K, 4) float32 xyxy, clipped to the patch
    difficult: np.ndarray  # (K,) int64 (2 where the window cuts the object)
    iof: np.ndarray  # (K,) float64


def _iof(polygons: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    import shapely

    x, y, w, h = window
    win = shapely.box(x, y, x + w, y + h)
    polys = shapely.polygons(np.asarray(polygons, np.float64).reshape(-1, 4, 2))
    area = shapely.area(polys)
    inter = shapely.area(shapely.intersection(polys, win))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)


def assign_objects(
    polygons: np.ndarray,
    difficult: np.ndarray,
    window: tuple[int, int, int, int],
    iof_thr: float = 0.7,
) -> PatchObjects:
    """The scene objects (``polygons`` (N, 8) in scene pixels) that belong to ``window``."""
    polygons = np.asarray(polygons, np.float32).reshape(-1, 8)
    difficult = np.asarray(difficult, np.int64).reshape(-1)
    x, y, w, h = window
    if len(polygons) == 0:
        z = np.zeros(0)
        return PatchObjects(
            np.zeros(0, np.int64), np.zeros((0, 8), np.float32), np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64), z,
        )  # fmt: skip
    # quick reject by the axis-aligned hull before the exact shapely test
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    near = (xs.max(1) > x) & (xs.min(1) < x + w) & (ys.max(1) > y) & (ys.min(1) < y + h)
    idx = np.nonzero(near)[0]
    iof = _iof(polygons[idx], window) if len(idx) else np.zeros(0)
    ok = iof >= iof_thr
    idx, iof = idx[ok], iof[ok]
    shifted = polygons[idx] - np.tile(np.array([x, y], np.float32), 4)
    px, py = shifted[:, 0::2], shifted[:, 1::2]
    boxes = np.stack([px.min(1), py.min(1), px.max(1), py.max(1)], 1) if len(idx) else np.zeros((0, 4))
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    diff = difficult[idx].copy()
    diff[iof < 1 - 1e-6] = 2
    return PatchObjects(idx.astype(np.int64), shifted.astype(np.float32), boxes, diff, iof)


# ------------------------------------------------------------------------------------------- merge


@dataclass
class MergedDetections:
    """Detections of one scene after merging (scene pixels)."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64
    polygons: np.ndarray | None = None  # (N, 8) float32 for oriented detections

    def __len__(self) -> int:
        return len(self.boxes)


def nms(geom: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.1) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score (stable on ties). ``geom`` is (N, 4) xyxy boxes
    or (N, 8) polygons; a detection is kept when its IoU with every kept one is ``<= iou_thresh``."""
    geom = np.asarray(geom, np.float64)
    n = len(geom)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    g = geom[order]
    iou = poly_iou(g, g) if g.shape[1] == 8 else hbb_iou(g, g)
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thresh
    return order[np.asarray(keep, np.int64)]


def merge_patch_predictions(
    patches: Sequence[Any] | Iterable[tuple[str, int, int]],
    predictions: Sequence[Any],
    iou_thresh: float = 0.1,
    oriented: bool | None = None,
) -> dict[str, MergedDetections]:
    """Merge per-patch detections into per-scene detections.

    ``patches``: one entry per prediction, either a ``Sample`` whose ``meta`` holds ``scene`` and whose
    ``window`` is ``(x, y, w, h)`` in the scene, or a ``(scene, x, y)`` tuple, or a patch id string
    ``<scene>__<size>__<x>___<y>``. ``predictions``: objects with ``boxes`` (N, 4) xyxy in patch
    pixels, ``scores`` and ``labels``, and optionally ``polygons`` (N, 8). With ``oriented`` (default:
    whenever every prediction carries polygons) the polygons are merged with polygon NMS, otherwise the
    boxes with axis-aligned NMS; NMS is class-wise per scene at ``iou_thresh`` (0.1, the devkit's value).
    ``oriented=True`` on predictions without polygons (a horizontal detector scored by Task1) takes
    each box's four corners as its polygon.

    Returns ``{scene: MergedDetections}`` with an entry for every scene that has a patch (possibly empty).
    """
    patches = list(patches)
    if len(patches) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(patches)} patches")
    if oriented is None:
        oriented = bool(predictions) and all(getattr(p, "polygons", None) is not None for p in predictions)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]] = defaultdict(list)
    for patch, pred in zip(patches, predictions, strict=True):
        scene, x, y = _offset(patch)
        boxes = np.asarray(pred.boxes, np.float64).reshape(-1, 4) + [x, y, x, y]
        polys = None
        if oriented:
            own = getattr(pred, "polygons", None)
            polys = (
                np.asarray(own, np.float64).reshape(-1, 8)
                if own is not None
                else np.asarray(pred.boxes, np.float64).reshape(-1, 4)[:, [0, 1, 2, 1, 2, 3, 0, 3]]
            ) + np.tile([x, y], 4)
        parts[scene].append(
            (
                boxes,
                np.asarray(pred.scores, np.float64).reshape(-1),
                np.asarray(pred.labels, np.int64).reshape(-1),
                polys,
            )
        )
    out: dict[str, MergedDetections] = {}
    for scene, chunks in parts.items():
        boxes = np.concatenate([c[0] for c in chunks])
        scores = np.concatenate([c[1] for c in chunks])
        labels = np.concatenate([c[2] for c in chunks])
        polys = np.concatenate([c[3] for c in chunks]) if oriented else None  # type: ignore[misc]
        keep_all = []
        for c in np.unique(labels):
            idx = np.nonzero(labels == c)[0]
            geom = polys[idx] if polys is not None else boxes[idx]
            keep_all.append(idx[nms(geom, scores[idx], iou_thresh)])
        keep = np.concatenate(keep_all) if keep_all else np.zeros(0, np.int64)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        out[scene] = MergedDetections(
            boxes[keep].astype(np.float32),
            scores[keep].astype(np.float32),
            labels[keep],
            None if polys is None else polys[keep].astype(np.float32),
        )
    return out


def _offset(patch: Any) -> tuple[str, int, int]:
    if isinstance(patch, str):
        scene, _, x, y = parse_patch_id(patch)
        return scene, x, y
    if isinstance(patch, tuple):
        scene, x, y = patch
        return str(scene), int(x), int(y)
    window = getattr(patch, "window", None)
    scene = getattr(patch, "meta", {}).get("scene")
    if scene is None:
        scene, _, x, y = parse_patch_id(patch.id)
        return scene, x, y
    if window is None:
        return str(scene), 0, 0
    return str(scene), int(window[0]), int(window[1])
