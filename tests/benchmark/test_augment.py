"""Weak/strong box-aware views: geometry follows the pixels, seeds reproduce, global RNG untouched."""

from __future__ import annotations

import random

import numpy as np
import torch

from benchmark.augment import BoxView, strong_view, weak_view


def _image_with_square(h=96, w=128, box=(20, 30, 50, 70)):
    im = torch.zeros((3, h, w), dtype=torch.uint8)
    x0, y0, x1, y1 = box
    im[:, y0:y1, x0:x1] = 255
    return im, torch.tensor([box], dtype=torch.float32)


def _bright_bbox(im: torch.Tensor) -> tuple[float, float, float, float]:
    ys, xs = torch.nonzero(im.float().mean(0) > 127, as_tuple=True)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def test_weak_view_boxes_follow_the_object():
    im, boxes = _image_with_square()
    view = weak_view(torch.Generator().manual_seed(3))
    for _ in range(10):
        out, b, kept = view(im, boxes)
        assert kept.tolist() == [0]
        assert np.allclose(b[0].numpy(), _bright_bbox(out), atol=2.0), (b, _bright_bbox(out))


def test_scale_jitter_zooms_the_content_on_the_same_canvas():
    im, boxes = _image_with_square()
    view = weak_view(torch.Generator().manual_seed(0), scale=(0.5, 0.5 + 1e-6))
    out, b, _ = view(im, boxes)
    assert out.shape[1:] == im.shape[1:]  # the view keeps the patch size
    x0, y0, x1, y1 = b[0].tolist()
    assert abs((x1 - x0) - 15) <= 1 and abs((y1 - y0) - 20) <= 1  # 30 x 40 box at half scale (flips aside)
    assert np.allclose(b[0].numpy(), _bright_bbox(out), atol=1.5)


def test_geometric_strong_view_maps_teacher_boxes():
    """A pure affine jitter (no photometric part) moves the box with the object."""
    import albumentations as A

    im, boxes = _image_with_square()
    view = BoxView([A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), p=1.0)], torch.Generator())
    out, b, kept = view(im, boxes)
    assert kept.tolist() == [0]
    assert np.allclose(b[0].numpy(), _bright_bbox(out), atol=2.0)


def test_boxes_leaving_the_image_are_dropped_and_indexed():
    import albumentations as A

    im = torch.zeros((3, 64, 64), dtype=torch.uint8)
    boxes = torch.tensor([[0, 0, 10, 10], [30, 30, 40, 40.0]])
    view = BoxView([A.Crop(x_min=20, y_min=20, x_max=64, y_max=64, p=1.0)], torch.Generator())
    _, b, kept = view(im, boxes)
    assert kept.tolist() == [1]
    assert np.allclose(b.numpy(), [[10, 10, 20, 20]])


def test_same_generator_same_views_and_global_rng_untouched():
    im, boxes = _image_with_square()
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        w, s = weak_view(g), strong_view(g)
        outs = []
        for _ in range(5):
            a, b, _ = w(im, boxes)
            outs.append(s(a, b))
        runs.append(outs)
    for (ia, ba, ka), (ib, bb, kb) in zip(*runs, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ba, bb) and torch.equal(ka, kb)
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and (before[1] == after[1]).all() and before[2] == after[2]
    g2 = torch.Generator().manual_seed(8)
    other = strong_view(g2)(*weak_view(g2)(im, boxes)[:2])[0]
    assert not torch.equal(other, runs[0][0][0])


def test_strong_view_changes_pixels_and_handles_no_boxes():
    im, _ = _image_with_square()
    view = strong_view(torch.Generator().manual_seed(1))
    changed = 0
    for _ in range(5):
        out, b, kept = view(im, torch.zeros((0, 4)))
        assert b.shape == (0, 4) and kept.shape == (0,)
        changed += int(not torch.equal(out, im))
    assert changed >= 3
