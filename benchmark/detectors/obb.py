"""Oriented-box geometry and losses for the oriented FCOS head.

Rotated boxes are ``(cx, cy, w, h, theta)`` in image pixels: the box's ``w`` side points along
``(cos theta, sin theta)``, its ``h`` side along ``(-sin theta, cos theta)`` (image y points down),
``theta`` in ``[-pi/2, pi/2)`` after ``normalize_rbox``. The same box also reads ``(w, h, theta + pi)``
and ``(h, w, theta + pi/2)``: every loss here is invariant to both.

* ``poly_to_rbox``: the minimum-area rectangle enclosing a quadrilateral (a side of it lies along one
  of the lines through two of the corners; all six directions are tried), the same rectangle
  ``cv2.minAreaRect`` returns; ``rbox_to_poly`` gives its four corners.
* ``encode`` / ``decode``: Rotated FCOS (mmrotate ``RotatedFCOSHead``) regresses, at a location
  ``p``, the distances ``l, t, r, b`` from ``p`` to the four sides *in the box's own frame* plus the
  angle.
* ``probiou_loss``: ProbIoU (Llerena et al., 2021; YOLO-OBB's box loss): each box is the Gaussian of a
  uniform rectangle (mean the centre, covariance ``R diag(w^2, h^2) R^T / 12``); the loss is the
  Hellinger distance ``sqrt(1 - exp(-B))`` with ``B`` their Bhattacharyya distance. A Gaussian does
  not change under ``theta + pi`` nor under the ``w``/``h`` swap with ``theta + pi/2``, so the loss has
  neither the angle's periodicity problem nor the long/short-side ambiguity. A square's Gaussian is
  isotropic: ProbIoU cannot see a square's angle, so
* ``angle_loss``: ``sin^2(2 (theta_p - theta_t))`` (period ``pi/2``): zero for every
  parameterisation of the target box, it teaches the angle where the Gaussian is blind (squares)
  and leaves it to ProbIoU elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from domains.geometry import poly_iou


def normalize_rbox(rb: torch.Tensor) -> torch.Tensor:
    """The same boxes with ``theta`` in ``[-pi/2, pi/2)`` (sides kept, angle shifted by k pi)."""
    theta = torch.remainder(rb[..., 4] + math.pi / 2, math.pi) - math.pi / 2
    return torch.cat([rb[..., :4], theta[..., None]], -1)


def rbox_to_poly(rb: torch.Tensor) -> torch.Tensor:
    """(..., 5) rotated boxes -> (..., 8) corners ``x1 y1 ... x4 y4`` (the box's -w/-h corner first,
    then along +w, then +h: clockwise on screen)."""
    cx, cy, w, h, t = rb.unbind(-1)
    c, s = torch.cos(t), torch.sin(t)
    hw, hh = w / 2, h / 2
    pts = []
    for u, v in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)):
        pts += [cx + u * c - v * s, cy + u * s + v * c]
    return torch.stack(pts, -1)


def poly_to_rbox(polys: torch.Tensor) -> torch.Tensor:
    """(N, 8) quadrilaterals -> (N, 5) minimum-area enclosing rotated boxes, ``w >= h``, ``theta`` in
    ``[-pi/2, pi/2)``. Degenerate polygons (all corners on one point) give ``w = h = 0``."""
    p = polys.reshape(-1, 4, 2).to(torch.float64)
    n = p.shape[0]
    if n == 0:
        return torch.zeros((0, 5), dtype=polys.dtype, device=polys.device)
    ii, jj = zip(*[(i, j) for i in range(4) for j in range(i + 1, 4)], strict=True)
    d = p[:, list(jj)] - p[:, list(ii)]  # (N, 6, 2) candidate side directions
    ang = torch.atan2(d[..., 1], d[..., 0])  # (N, 6)
    c, s = torch.cos(ang), torch.sin(ang)
    # project the corners on each direction (u) and its normal (v)
    u = p[:, None, :, 0] * c[..., None] + p[:, None, :, 1] * s[..., None]  # (N, 6, 4)
    v = -p[:, None, :, 0] * s[..., None] + p[:, None, :, 1] * c[..., None]
    w = u.amax(-1) - u.amin(-1)
    h = v.amax(-1) - v.amin(-1)
    best = (w * h).argmin(1)
    k = torch.arange(n)
    w, h, a = w[k, best], h[k, best], ang[k, best]
    cu = (u.amax(-1) + u.amin(-1))[k, best] / 2
    cv = (v.amax(-1) + v.amin(-1))[k, best] / 2
    c, s = torch.cos(a), torch.sin(a)
    cx, cy = cu * c - cv * s, cu * s + cv * c
    # long side first (mmrotate's "le90"): one reading per rectangle (squares keep the first side)
    swap = h > w
    w, h, a = torch.where(swap, h, w), torch.where(swap, w, h), torch.where(swap, a + math.pi / 2, a)
    return normalize_rbox(torch.stack([cx, cy, w, h, a], 1)).to(polys.dtype)


def boxes_to_rbox(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy -> (N, 5) axis-aligned rotated boxes (theta 0)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, torch.zeros_like(x1)], -1)


def poly_hull_boxes(polys: torch.Tensor | np.ndarray):
    """(N, 8) polygons -> (N, 4) enclosing xyxy boxes (torch or numpy, as given)."""
    if isinstance(polys, np.ndarray):
        p = polys.reshape(-1, 8)
        return np.stack([p[:, 0::2].min(1), p[:, 1::2].min(1), p[:, 0::2].max(1), p[:, 1::2].max(1)], 1)
    p = polys.reshape(-1, 8)
    return torch.stack([p[:, 0::2].amin(1), p[:, 1::2].amin(1), p[:, 0::2].amax(1), p[:, 1::2].amax(1)], 1)


def boxes_to_polys(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 8) corners (clockwise on screen from the top-left)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return b[:, [0, 1, 2, 1, 2, 3, 0, 3]].copy()


def to_box_frame(loc: torch.Tensor, rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (u, v) of locations ``loc`` (..., 2) from the centres of ``rb`` (..., 5) in the boxes'
    frames (u along the ``w`` side)."""
    dx, dy = loc[..., 0] - rb[..., 0], loc[..., 1] - rb[..., 1]
    c, s = torch.cos(rb[..., 4]), torch.sin(rb[..., 4])
    return dx * c + dy * s, -dx * s + dy * c


def encode(loc: torch.Tensor, rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated-FCOS targets of boxes ``rb`` (N, 5) at locations ``loc`` (N, 2): distances
    ``(l, t, r, b)`` (N, 4) to the sides in the box frame, and the angle (N,)."""
    u, v = to_box_frame(loc, rb)
    hw, hh = rb[:, 2] / 2, rb[:, 3] / 2
    return torch.stack([u + hw, v + hh, hw - u, hh - v], 1), rb[:, 4]


def decode(loc: torch.Tensor, ltrb: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The rotated boxes (N, 5) that ``encode`` maps to ``(ltrb, theta)`` at ``loc``."""
    l_, t_, r_, b_ = ltrb.unbind(-1)
    ou, ov = (r_ - l_) / 2, (b_ - t_) / 2  # centre offset in the box frame
    c, s = torch.cos(theta), torch.sin(theta)
    cx = loc[..., 0] + ou * c - ov * s
    cy = loc[..., 1] + ou * s + ov * c
    return torch.stack([cx, cy, l_ + r_, t_ + b_, theta], -1)


def gaussian(rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean-free covariance entries ``(a, b, c)`` (Sigma = [[a, c], [c, b]]) of the rectangles'
    uniform distributions, and their centres (N, 2)."""
    w2, h2 = rb[..., 2].pow(2) / 12, rb[..., 3].pow(2) / 12
    cos, sin = torch.cos(rb[..., 4]), torch.sin(rb[..., 4])
    a = w2 * cos.pow(2) + h2 * sin.pow(2)
    b = w2 * sin.pow(2) + h2 * cos.pow(2)
    c = (w2 - h2) * cos * sin
    return a, b, c, rb[..., :2]


def probiou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """ProbIoU's Hellinger distance (N,) in [0, 1] between rotated boxes ``pred`` and ``target``
    (N, 5) (module docstring); 0 for identical boxes."""
    a1, b1, c1, m1 = gaussian(pred)
    a2, b2, c2, m2 = gaussian(target)
    a, b, c = (a1 + a2) / 2, (b1 + b2) / 2, (c1 + c2) / 2  # Sigma = (Sigma1 + Sigma2) / 2
    det = (a * b - c * c).clamp(min=eps)
    dx, dy = m1[..., 0] - m2[..., 0], m1[..., 1] - m2[..., 1]
    maha = (b * dx * dx + a * dy * dy - 2 * c * dx * dy) / det  # d^T Sigma^-1 d
    det1 = (a1 * b1 - c1 * c1).clamp(min=eps)
    det2 = (a2 * b2 - c2 * c2).clamp(min=eps)
    bd = maha / 8 + 0.5 * torch.log(det / (det1 * det2).sqrt())
    bd = bd.clamp(min=0.0, max=100.0)
    return (1.0 - torch.exp(-bd) + eps).sqrt()


def angle_loss(pred_theta: torch.Tensor, target_theta: torch.Tensor) -> torch.Tensor:
    """``sin^2(2 (pred - target))`` (N,): period pi/2, zero for every reading of the target box."""
    return torch.sin(2 * (pred_theta - target_theta)).pow(2)


def polygon_nms(
    polys: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    thresh: float,
    max_keep: int | None = None,
    chunk: int = 64,
) -> np.ndarray:
    """Class-wise greedy NMS with exact polygon IoU (``domains.geometry.poly_iou``): indices
    kept, by descending score (stable on ties); a detection is kept when its IoU with every
    higher-scored kept one of its class is ``<= thresh``. ``max_keep``: stop after that many (the
    same first ones a full pass keeps). Candidates are taken in score-ordered chunks, each tested
    against the kept ones and then greedily among itself, so a crowded image costs
    O(candidates x kept) polygon clippings, not O(candidates^2)."""
    n = len(polys)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    p = np.asarray(polys, np.float64)[order]
    lab = np.asarray(labels)[order]
    # separate the classes in space: no cross-class pairs survive poly_iou's bounding-box prefilter
    span = float(np.abs(p).max()) * 2 + 10.0
    p = p + (lab.astype(np.float64) * span)[:, None]
    limit = n if max_keep is None else max(0, int(max_keep))
    keep: list[int] = []
    for start in range(0, n, chunk):
        if len(keep) >= limit:
            break
        alive = np.arange(start, min(n, start + chunk))
        if keep:
            alive = alive[poly_iou(p[alive], p[keep]).max(1) <= thresh]
        if not len(alive):
            continue
        iou = poly_iou(p[alive], p[alive])
        suppressed = np.zeros(len(alive), bool)
        for j in range(len(alive)):
            if suppressed[j]:
                continue
            keep.append(int(alive[j]))
            if len(keep) >= limit:
                break
            suppressed |= iou[j] > thresh
    return order[np.asarray(keep, np.int64)]
