"""Salient-object / foreground-map metrics: MAE, pixel accuracy, F-measure (max, mean, adaptive) and
S-measure.

Protocol: the definitions of PySODMetrics (``lartpang/PySODMetrics`` ``sod_metrics.py``) and of Fan's
MATLAB toolbox (facts in ``docs/sources.md#saliency``; a fresh implementation, not a copy);
checked against small hand-computed masks in ``tests/metrics/test_saliency_metric.py``.

* Inputs: ``pred`` is a foreground map with values in [0, 1] (float), ``gt`` a binary mask of the same
  size (bool; 0/1; or 0/255 read as ``gt > 128``). PySODMetrics also min-max normalises each prediction
  (when ``max != min``); we do that only with ``normalize=True``. Values are clipped to [0, 1], and a map
  whose size differs from its mask is first resized to it (bilinear, ``resize_map``).
* MAE = ``mean(|pred - gt|)`` per image, in [0, 1] (not x100).
* Pixel accuracy = ``mean((pred >= 0.5) == gt)``.
* F-measure with ``beta^2 = 0.3``: ``F = (1 + b2) P R / (b2 P + R)``, and 0 when TP = 0.
  Curve: the prediction is quantised as ``floor(255 * pred)`` (uint8 truncation, as PySODMetrics) and
  binarised with ``>= t`` for the 256 thresholds t = 255, ..., 0 (empty prediction -> precision 0).
  ``max_f`` / ``mean_f`` of one image are the max / mean of its curve; over a data set the curves are
  averaged over images first and the max / mean taken on the mean curve (the standard protocol).
  Adaptive: threshold ``min(2 * mean(pred), 1)``, binarised with ``>=``.
* S-measure (Fan et al., ICCV 2017) with ``alpha = 0.5``: if the GT is all background,
  ``S = 1 - mean(pred)``; if all foreground, ``S = mean(pred)``; otherwise
  ``S = max(alpha * S_object + (1 - alpha) * S_region, 0)``.
  S_object = ``u * O(pred on FG) + (1 - u) * O(1 - pred on BG)`` with ``u`` the FG ratio and
  ``O(x) = 2 mean(x) / (mean(x)^2 + 1 + std(x) + eps)`` (MATLAB ``std``: sample, N - 1; 0 for one pixel).
  S_region splits both maps at the GT centroid ``X = round(mean column, 1-based)``,
  ``Y = round(mean row, 1-based)`` (MATLAB ``round``: halves away from zero; numpy's half-to-even would
  differ on exact .5 centroids) into LT = ``[:Y, :X]``, RT, LB, RB, weighted by their area fractions, and
  sums their SSIM terms ``alpha = 4 mx my sxy``, ``beta = (mx^2 + my^2)(sx2 + sy2)`` (variances over
  ``N - 1 + eps``): ``alpha / (beta + eps)`` if ``alpha != 0``, 1 if ``alpha == beta == 0``, else 0.
  An empty quadrant (centroid on the last row or column) has weight 0 and contributes 0 (MATLAB would
  propagate NaN from the empty mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmark.metrics import register_protocol

__all__ = [
    "BETA2",
    "mae",
    "pixel_accuracy",
    "f_measure_curve",
    "max_f",
    "mean_f",
    "adaptive_f",
    "s_measure",
    "evaluate_saliency",
    "resize_map",
]

BETA2 = 0.3
_EPS = np.finfo(np.float64).eps


def _prepare(pred: Any, gt: Any, normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gt)
    if g.dtype != bool:
        g = g > 128 if np.issubdtype(g.dtype, np.integer) and g.max(initial=0) > 1 else g > 0.5
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim == 3 and p.shape[-1] == 1:
        p = p[..., 0]
    if g.ndim == 3 and g.shape[-1] == 1:
        g = g[..., 0]
    if p.shape != g.shape:
        p = resize_map(p, g.shape)
    if normalize:
        lo, hi = p.min(), p.max()
        if hi > lo:
            p = (p - lo) / (hi - lo)
    return np.clip(p, 0.0, 1.0), g


def _f(tp: Any, n_pred: Any, n_gt: int) -> np.ndarray:
    tp = np.asarray(tp, dtype=np.float64)
    prec = tp / np.maximum(np.asarray(n_pred, dtype=np.float64), 1.0)
    rec = tp / max(n_gt, 1)
    num = (1 + BETA2) * prec * rec
    den = np.where(num == 0, 1.0, BETA2 * prec + rec)
    return num / den


def mae(pred: Any, gt: Any) -> float:
    """Mean absolute error between the map and the binary mask, in [0, 1]."""
    p, g = _prepare(pred, gt)
    return float(np.mean(np.abs(p - g)))


def pixel_accuracy(pred: Any, gt: Any, threshold: float = 0.5) -> float:
    """Fraction of pixels where ``pred >= threshold`` equals the mask."""
    p, g = _prepare(pred, gt)
    return float(np.mean((p >= threshold) == g))


def f_measure_curve(pred: Any, gt: Any) -> np.ndarray:
    """F-measure (beta^2 = 0.3) at the 256 thresholds t = 255, ..., 0 on ``floor(255 * pred) >= t``
    (index 0 is the strictest threshold)."""
    p, g = _prepare(pred, gt)
    q = (p * 255).astype(np.uint8)
    fg = np.bincount(q[g].ravel(), minlength=256)[::-1]
    bg = np.bincount(q[~g].ravel(), minlength=256)[::-1]
    tp = np.cumsum(fg)
    n_pred = tp + np.cumsum(bg)
    return _f(tp, n_pred, int(g.sum()))


def max_f(pred: Any, gt: Any) -> float:
    return float(f_measure_curve(pred, gt).max())


def mean_f(pred: Any, gt: Any) -> float:
    return float(f_measure_curve(pred, gt).mean())


def adaptive_f(pred: Any, gt: Any) -> float:
    """F-measure of ``pred >= min(2 * mean(pred), 1)``."""
    p, g = _prepare(pred, gt)
    b = p >= min(2.0 * float(p.mean()), 1.0)
    return float(_f(np.sum(b & g), np.sum(b), int(g.sum())))


def _object_score(x: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    mu = float(x.mean())
    sigma = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return 2.0 * mu / (mu * mu + 1.0 + sigma + _EPS)


def _ssim(p: np.ndarray, g: np.ndarray) -> float:
    n = p.size
    if n == 0:
        return 0.0
    g = g.astype(np.float64)
    mx, my = float(p.mean()), float(g.mean())
    sx2 = float(np.sum((p - mx) ** 2)) / (n - 1 + _EPS)
    sy2 = float(np.sum((g - my) ** 2)) / (n - 1 + _EPS)
    sxy = float(np.sum((p - mx) * (g - my))) / (n - 1 + _EPS)
    a = 4.0 * mx * my * sxy
    b = (mx * mx + my * my) * (sx2 + sy2)
    if a != 0:
        return a / (b + _EPS)
    return 1.0 if b == 0 else 0.0


def _round_half_away(x: float) -> int:
    return int(np.floor(x + 0.5)) if x >= 0 else -int(np.floor(-x + 0.5))


def s_measure(pred: Any, gt: Any, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al., ICCV 2017); see the module docstring."""
    p, g = _prepare(pred, gt)
    y = float(g.mean())
    if y == 0:
        return 1.0 - float(p.mean())
    if y == 1:
        return float(p.mean())
    s_obj = y * _object_score(p[g]) + (1 - y) * _object_score(1.0 - p[~g])
    h, w = g.shape
    rows, cols = np.nonzero(g)
    cx = _round_half_away(float(cols.mean()) + 1.0)
    cy = _round_half_away(float(rows.mean()) + 1.0)
    area = float(h * w)
    s_reg = 0.0
    for rs, cs in (
        (slice(0, cy), slice(0, cx)),
        (slice(0, cy), slice(cx, w)),
        (slice(cy, h), slice(0, cx)),
        (slice(cy, h), slice(cx, w)),
    ):
        pp, gg = p[rs, cs], g[rs, cs]
        if pp.size:
            s_reg += pp.size / area * _ssim(pp, gg)
    return max(alpha * s_obj + (1 - alpha) * s_reg, 0.0)


def resize_map(m: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size = (h, w)`` (OpenCV ``INTER_LINEAR``, pixel centres
    aligned; float64 output)."""
    import cv2

    arr = np.asarray(m, dtype=np.float64)
    h, w = int(size[0]), int(size[1])
    if arr.shape[:2] == (h, w):
        return arr.copy()
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_LINEAR)


def evaluate_saliency(preds: Any, gts: Any, normalize: bool = False) -> dict[str, float]:
    """Data-set metrics over aligned sequences (or same-keyed mappings) of maps and masks.

    ``MAE``, ``PixelAcc``, ``adpF`` and ``S`` are per-image values averaged over images; ``maxF`` and
    ``meanF`` are the max and mean of the image-averaged F-measure curve. A prediction whose size differs
    from its mask is resized to it bilinearly first.
    """
    if isinstance(preds, Mapping):
        keys = list(gts.keys())
        preds = [preds[k] for k in keys]
        gts = [gts[k] for k in keys]
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} masks")
    if not preds:
        raise ValueError("no images to evaluate")
    keys = ("MAE", "PixelAcc", "adpF", "S")
    acc = dict.fromkeys(keys, 0.0)
    curve = np.zeros(256)
    for pred, gt in zip(preds, gts, strict=True):
        p, g = _prepare(pred, gt, normalize)
        acc["MAE"] += mae(p, g)
        acc["PixelAcc"] += pixel_accuracy(p, g)
        acc["adpF"] += adaptive_f(p, g)
        acc["S"] += s_measure(p, g)
        curve += f_measure_curve(p, g)
    n = len(preds)
    curve /= n
    out = {k: v / n for k, v in acc.items()}
    out["maxF"] = float(curve.max())
    out["meanF"] = float(curve.mean())
    return out


# ------------------------------------------------------------------------------------------------
# The ``saliency`` metric protocol (for domains whose samples carry ground-truth masks)
# ------------------------------------------------------------------------------------------------


@register_protocol("saliency", dense=True)
def saliency_protocol(domain, test, preds) -> tuple[dict[str, Any], str]:
    """Saliency metrics of the detector's foreground maps (``Prediction.dense["foreground"]``,
    the max-class probability on the finest FCOS level, covering ``ceil(h / s) x ceil(w / s)``
    cells of the image) resized bilinearly to each image and scored against the sample's mask
    (``meta["mask"]`` array or ``meta["mask_path"]``, 0/255). Samples without a mask are left out;
    with none at all every value is NaN."""
    from PIL import Image

    maps, masks = [], []
    for s, p in zip(test, preds, strict=True):
        gt = s.meta.get("mask")
        if gt is None and s.meta.get("mask_path"):
            with Image.open(s.meta["mask_path"]) as im:
                gt = np.asarray(im.convert("L"))
        if gt is None:
            continue
        fg = p.dense.get("foreground") if p.dense else None
        if fg is None:
            raise ValueError("the saliency protocol needs dense foreground maps (predict(dense=True))")
        maps.append(resize_map(fg, gt.shape[:2]))
        masks.append(gt)
    impl = "saliency (PySODMetrics definitions, benchmark.metrics.saliency)"
    if not maps:
        nan = float("nan")
        return {k: nan for k in ("MAE", "PixelAcc", "adpF", "S", "maxF", "meanF")}, impl
    res: dict[str, Any] = dict(evaluate_saliency(maps, masks))
    res["n_images"] = len(maps)
    return res, impl
