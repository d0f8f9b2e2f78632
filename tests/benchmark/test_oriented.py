"""Oriented boxes: rotated-box geometry, the angle-aware loss, the oriented FCOS head and
polygons through flips, 90-degree rotations and the weak/strong views."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from benchmark.augment import strong_view, weak_view
from benchmark.detectors import build_detector, make_batch
from benchmark.detectors.obb import (
    angle_loss,
    decode,
    encode,
    normalize_rbox,
    poly_hull_boxes,
    poly_to_rbox,
    polygon_nms,
    probiou_loss,
    rbox_to_poly,
    to_box_frame,
)
from benchmark.metrics.dota import poly_iou, poly_iou_pairs
from benchmark.training import flip_batch, rotate90


def random_rboxes(n: int, seed: int = 0, square: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.rand((n, 2), generator=g, dtype=torch.float64) * 100 + 20
    w = torch.rand((n, 1), generator=g, dtype=torch.float64) * 40 + 4
    h = w.clone() if square else torch.rand((n, 1), generator=g, dtype=torch.float64) * 40 + 4
    t = (torch.rand((n, 1), generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    return torch.cat([c, w, h, t], 1)


def box_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return probiou_loss(pred, target) + 0.5 * angle_loss(pred[:, 4], target[:, 4])


# ------------------------------------------------------------------------------ the loss


def test_loss_is_pi_periodic():
    tgt = random_rboxes(64, 1)
    pred = tgt + torch.randn(tgt.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = torch.tensor([0, 0, 0, 0, math.pi], dtype=torch.float64)
    for k in (-2, -1, 1, 3):
        assert torch.allclose(box_loss(pred + k * shift, tgt), box_loss(pred, tgt), atol=1e-6)
        assert torch.allclose(box_loss(pred, tgt + k * shift), box_loss(pred, tgt), atol=1e-6)


def test_loss_has_no_long_short_side_ambiguity():
    """(w, h, theta) and (h, w, theta + pi/2) are one box: zero loss between them, same loss to others."""
    tgt = random_rboxes(64, 3)
    swapped = torch.stack([tgt[:, 0], tgt[:, 1], tgt[:, 3], tgt[:, 2], tgt[:, 4] + math.pi / 2], 1)
    assert box_loss(swapped, tgt).max() < 1e-3  # the eps under ProbIoU's square root
    other = random_rboxes(64, 4)
    assert torch.allclose(box_loss(other, swapped), box_loss(other, tgt), atol=1e-6)
    assert torch.allclose(
        poly_to_rbox(rbox_to_poly(swapped)), poly_to_rbox(rbox_to_poly(tgt)), atol=1e-6
    )  # the same canonical box


def test_square_box_is_angle_invariant():
    """A square's Gaussian is isotropic: ProbIoU does not see its angle at all; the full loss sees
    it only up to the square's own symmetry (theta + pi/2 is the same square)."""
    sq = random_rboxes(32, 5, square=True)
    pred = sq + torch.tensor([1.5, -2.0, 3.0, 3.0, 0.0], dtype=torch.float64)
    pred[:, 3] = pred[:, 2]  # a square prediction too
    base = probiou_loss(pred, sq)
    for dt in (0.1, 0.7, math.pi / 4, 2.0):
        turned = pred + torch.tensor([0, 0, 0, 0, dt], dtype=torch.float64)
        assert torch.allclose(probiou_loss(turned, sq), base, atol=1e-6)
        turned_t = sq + torch.tensor([0, 0, 0, 0, dt], dtype=torch.float64)
        assert torch.allclose(probiou_loss(pred, turned_t), base, atol=1e-6)
    quarter = pred + torch.tensor([0, 0, 0, 0, math.pi / 2], dtype=torch.float64)
    assert torch.allclose(box_loss(quarter, sq), box_loss(pred, sq), atol=1e-6)
    # the angle term does see a square rotated by 30 degrees
    tilted = sq + torch.tensor([0, 0, 0, 0, math.pi / 6], dtype=torch.float64)
    assert (box_loss(tilted, sq) > 0.3).all()


def test_loss_orders_boxes_by_overlap():
    tgt = torch.tensor([[50.0, 50.0, 40.0, 10.0, 0.4]], dtype=torch.float64)
    losses = [
        float(box_loss(tgt + torch.tensor([[dx, 0, 0, 0, 0]], dtype=torch.float64), tgt))
        for dx in (0.0, 2.0, 5.0, 10.0)
    ]
    assert losses == sorted(losses) and losses[0] < 1e-3 and losses[-1] > 0.3
    # gradients flow to every parameter of the prediction
    p = tgt.clone() + 0.3
    p.requires_grad_(True)
    box_loss(p, tgt).sum().backward()
    assert torch.isfinite(p.grad).all() and (p.grad.abs() > 0).all()


# ------------------------------------------------------------------------------ geometry


def canonical(poly: np.ndarray) -> np.ndarray:
    """Corners in a canonical cyclic order (start at the smallest (x, y), counter-clockwise)."""
    p = np.asarray(poly, np.float64).reshape(4, 2)
    d1, d2 = p[1] - p[0], p[2] - p[1]
    if d1[0] * d2[1] - d1[1] * d2[0] < 0:
        p = p[::-1]
    k = min(range(4), key=lambda i: (round(p[i, 0], 3), round(p[i, 1], 3)))
    return np.roll(p, -k, axis=0).reshape(-1)


def test_encode_decode_returns_the_polygon():
    rb = random_rboxes(200, 6)
    poly = rbox_to_poly(rb)
    target = poly_to_rbox(poly)  # as a detector's targets are made: from the annotated polygon
    # locations inside each box (offsets within 40 % of its sides)
    g = torch.Generator().manual_seed(7)
    f = (torch.rand((200, 2), generator=g, dtype=torch.float64) - 0.5) * 0.8
    c, s = torch.cos(target[:, 4]), torch.sin(target[:, 4])
    du, dv = f[:, 0] * target[:, 2], f[:, 1] * target[:, 3]
    loc = torch.stack([target[:, 0] + du * c - dv * s, target[:, 1] + du * s + dv * c], 1)
    ltrb, theta = encode(loc, target)
    assert (ltrb > 0).all()
    back = rbox_to_poly(decode(loc, ltrb, theta))
    for a, b in zip(poly.numpy(), back.numpy(), strict=True):
        assert np.abs(canonical(a) - canonical(b)).max() < 1e-4
    # the box frame turned by pi (l <-> r, t <-> b) reads the same box
    back2 = rbox_to_poly(normalize_rbox(decode(loc, ltrb[:, [2, 3, 0, 1]], theta + 3 * math.pi)))
    assert np.all(poly_iou_pairs(back.numpy(), back2.numpy()) > 1 - 1e-6)


def test_poly_to_rbox_is_the_minimum_area_rectangle():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.uniform(0, 100, (4, 2)).astype(np.float32)
        hull = cv2.convexHull(pts).reshape(-1, 2)
        if len(hull) < 4:
            continue
        _, (w, h), _ = cv2.minAreaRect(hull)
        rb = poly_to_rbox(torch.from_numpy(hull.reshape(1, 8).astype(np.float64)))
        assert abs(float(rb[0, 2] * rb[0, 3]) - w * h) < 1e-3 * max(1.0, w * h)  # as small as OpenCV's
        u, v = to_box_frame(torch.from_numpy(hull.astype(np.float64)), rb.expand(4, 5))
        assert (u.abs() <= rb[0, 2] / 2 + 1e-4).all() and (v.abs() <= rb[0, 3] / 2 + 1e-4).all()  # encloses
        assert rb[0, 2] >= rb[0, 3] and -math.pi / 2 <= float(rb[0, 4]) < math.pi / 2


def test_polygon_nms_is_classwise_and_uses_polygon_iou():
    # two thin diagonal boxes side by side: their enclosing boxes overlap a lot, the polygons do not
    a = rbox_to_poly(torch.tensor([[50.0, 50.0, 60.0, 6.0, math.pi / 4]], dtype=torch.float64))
    b = rbox_to_poly(torch.tensor([[58.0, 42.0, 60.0, 6.0, math.pi / 4]], dtype=torch.float64))
    polys = torch.cat([a, b, a]).numpy()
    assert float(poly_iou(polys[:1], polys[1:2])[0, 0]) < 0.1
    keep = polygon_nms(polys, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]), 0.6)
    assert keep.tolist() == [0, 1]  # the duplicate of a goes, the neighbour stays
    keep = polygon_nms(polys, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.6)
    assert keep.tolist() == [0, 1, 2]  # another class is never suppressed


# ------------------------------------------------------------------------------ flips and rotations


def drawn(size: tuple[int, int], polys: np.ndarray) -> np.ndarray:
    """A uint8 (3, H, W) image with each polygon filled in its own grey level (continuous
    coordinates: OpenCV's vertex (0, 0) is the centre of the first pixel, our (0.5, 0.5))."""
    h, w = size
    im = np.zeros((h, w, 3), np.uint8)
    for k, p in enumerate(np.asarray(polys).reshape(-1, 4, 2)):
        cv2.fillPoly(im, [np.round((p - 0.5) * 16).astype(np.int32)], (60 + 60 * k,) * 3, shift=4)
    return torch.from_numpy(im.transpose(2, 0, 1).copy())


def mask_iou(image: torch.Tensor, poly: np.ndarray, level: int) -> float:
    h, w = int(image.shape[1]), int(image.shape[2])
    got = image[0].numpy() == level
    want = drawn((h, w), poly[None])[0].numpy() > 0
    return float((got & want).sum() / max(1, (got | want).sum()))


POLYS = np.array(
    [
        rbox_to_poly(torch.tensor([30.0, 25.0, 30.0, 10.0, 0.5], dtype=torch.float64)).numpy(),
        rbox_to_poly(torch.tensor([70.0, 60.0, 24.0, 14.0, -1.1], dtype=torch.float64)).numpy(),
    ],
    np.float32,
)


def targets_for(polys: np.ndarray) -> dict:
    p = torch.from_numpy(polys)
    boxes = torch.stack([p[:, 0::2].amin(1), p[:, 1::2].amin(1), p[:, 0::2].amax(1), p[:, 1::2].amax(1)], 1)
    return {"boxes": boxes, "labels": torch.tensor([1, 2]), "polygons": p}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate90_maps_image_boxes_and_polygons_alike(k):
    im = drawn((80, 100), POLYS)
    t = targets_for(POLYS)
    r_im, r_boxes, r_polys = rotate90(im, t["boxes"], t["polygons"], k)
    assert tuple(r_im.shape[1:]) == ((100, 80) if k % 2 else (80, 100))
    for j, level in enumerate((60, 120)):
        assert mask_iou(r_im, r_polys[j].numpy(), level) > 0.93
    hull = poly_hull_boxes(r_polys)
    assert torch.allclose(hull, r_boxes, atol=1e-4)
    # four quarter turns are the identity
    back = rotate90(r_im, r_boxes, r_polys, 4 - k)
    assert torch.equal(back[0], im) and torch.allclose(back[2], t["polygons"], atol=1e-4)


def test_flip_batch_carries_polygons_and_targets():
    im = drawn((80, 100), POLYS)
    gen = torch.Generator().manual_seed(0)
    ims, tgs = flip_batch([im] * 16, [targets_for(POLYS)] * 16, gen, vertical=True, rotate=True)
    shapes = {tuple(i.shape[1:]) for i in ims}
    assert shapes == {(80, 100), (100, 80)}  # some views were turned
    model = build_detector("tiny_fcos_xs", 3, oriented=True)
    for i, t in zip(ims, tgs, strict=True):
        for j, level in enumerate((60, 120)):
            assert mask_iou(i, t["polygons"][j].numpy(), level) > 0.93
        # the detector's targets: every positive location's rotated box is the object's polygon
        shapes_l = [(math.ceil(i.shape[1] / s), math.ceil(i.shape[2] / s)) for s in (8, 16, 32)]
        locs = model.locations(shapes_l, torch.device("cpu"))
        labels, _, rb = model.assign_oriented([t], locs)
        pos = labels[0] >= 0
        assert set(labels[0][pos].tolist()) == {1, 2}
        got = rbox_to_poly(rb[0][pos].double()).numpy()
        want = t["polygons"][labels[0][pos] - 1].double().numpy()
        assert poly_iou_pairs(got, want).min() > 1 - 1e-4
    # without ``rotate`` the draws are exactly those of the horizontal path
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = {k: v for k, v in targets_for(POLYS).items() if k != "polygons"}
    a = flip_batch([im] * 4, [plain] * 4, g1)
    b = flip_batch([im] * 4, [targets_for(POLYS)] * 4, g2)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a[1], b[1], strict=True))


def test_views_carry_polygons():
    im = drawn((96, 96), POLYS)
    t = targets_for(POLYS)
    # flips and quarter turns only: exact
    view = weak_view(torch.Generator().manual_seed(0), True, (1.0, 1.0), rotate90=True)
    for _ in range(8):
        out, boxes, kept, polys = view.with_polygons(im, t["boxes"], t["polygons"])
        assert kept.tolist() == [0, 1]
        for j, level in enumerate((60, 120)):
            assert mask_iou(out, polys[j].numpy(), level) > 0.93
        hull = poly_hull_boxes(polys)
        assert torch.allclose(hull, boxes, atol=1e-3)
    # scale jitter and the strong view's affine jitter: within a fraction of a pixel
    for view in (weak_view(torch.Generator().manual_seed(1)), strong_view(torch.Generator().manual_seed(2))):
        for _ in range(6):
            out, boxes, kept, polys = view.with_polygons(im, t["boxes"], t["polygons"])
            assert len(polys) == len(boxes) == len(kept)
            hull = poly_hull_boxes(polys)
            h, w = out.shape[1:]
            hull[:, 0::2] = hull[:, 0::2].clamp(0, w)
            hull[:, 1::2] = hull[:, 1::2].clamp(0, h)
            assert (hull - boxes).abs().max() < 1.0


# ------------------------------------------------------------------------------ the detector


def test_oriented_option_leaves_the_horizontal_detector_alone():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        h = build_detector("tiny_fcos_xs", 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        o = build_detector("tiny_fcos_xs", 4, oriented=True)
    hs, os_ = h.state_dict(), o.state_dict()
    assert set(os_) - set(hs) == {"head.angle.weight", "head.angle.bias"}
    assert all(torch.equal(v, os_[k]) for k, v in hs.items())
    assert h.predict(make_batch([torch.zeros((3, 64, 64), dtype=torch.uint8)]))[0].polygons is None


@pytest.mark.slow  # trains a detector until it fits (seconds)
def test_oriented_detector_learns_an_angle():
    """A few dozen steps on one image with one rotated object: the top detection's polygon overlaps
    the object far better than its horizontal box does."""
    poly = rbox_to_poly(torch.tensor([48.0, 48.0, 44.0, 12.0, 0.6], dtype=torch.float64)).numpy()[None]
    im = drawn((96, 96), poly.astype(np.float32))
    t = {
        "boxes": torch.from_numpy(poly_hull_boxes(poly).astype(np.float32)),
        "labels": torch.tensor([0]),
        "polygons": torch.from_numpy(poly.astype(np.float32)),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_detector("tiny_fcos_xs", 1, oriented=True)
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    batch = make_batch([im] * 4)
    m.train()
    for _ in range(120):
        loss = sum(m.losses(batch, [t] * 4).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    p = m.predict(batch)[0]
    assert p.polygons is not None and p.polygons.shape == (len(p), 8) and len(p)
    top = int(np.argmax(p.scores))
    hbb = p.boxes[top][[0, 1, 2, 1, 2, 3, 0, 3]][None]
    iou_poly = float(poly_iou(p.polygons[top][None], poly)[0, 0])
    iou_hbb = float(poly_iou(hbb, poly)[0, 0])
    assert iou_poly > 0.6 and iou_poly > iou_hbb + 0.15, (iou_poly, iou_hbb)
