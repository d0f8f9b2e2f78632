"""The detector interface: losses, predictions (boxes, scores, labels, class_probs), embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.detectors import build_detector, make_batch
from benchmark.training import Schedule, train_supervised


def toy(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ims, tg = [], []
    for _ in range(n):
        im = torch.full((3, 128, 160), 90, dtype=torch.uint8)
        x, y = int(torch.randint(10, 100, (1,), generator=g)), int(torch.randint(10, 80, (1,), generator=g))
        im[:, y : y + 24, x : x + 24] = 230
        tg.append(
            {
                "boxes": torch.tensor([[x, y, x + 24, y + 24.0]]),
                "labels": torch.tensor([2]),
                "ignore": torch.tensor([False]),
            }
        )
        ims.append(im)
    return ims, tg


def test_losses_predict_embed_shapes():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_detector("tiny_fcos_xs", 5)
    ims, tg = toy()
    losses = m.losses(make_batch(ims), tg)
    assert set(losses) == {"cls", "box", "ctr"} and all(torch.isfinite(v) for v in losses.values())
    m.eval()
    preds = m.predict(make_batch(ims), dense=True)
    assert len(preds) == 4
    for p in preds:
        assert p.boxes.shape[1] == 4 and p.class_probs.shape == (len(p), 5)
        assert p.dense["foreground"].shape == (16, 20) and p.dense["class_probs"].shape == (5, 16, 20)
        assert (p.boxes[:, 2] <= 160).all() and (p.boxes[:, 3] <= 128).all()
    assert m.embed(make_batch(ims)).shape == (4, 64)


@pytest.mark.slow  # trains a detector until it fits (seconds)
def test_learns_a_toy_problem():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_detector("tiny_fcos_xs", 5)
    ims, tg = toy(8)
    before = sum(m.losses(make_batch(ims), tg).values()).item()
    train_supervised(
        m, ims, tg, Schedule(iterations=60, batch_size=4, lr=0.01, warmup=5), torch.Generator().manual_seed(0)
    )
    m.train()
    after = sum(m.losses(make_batch(ims), tg).values()).item()
    assert after < 0.5 * before
    m.eval()
    p = m.predict(make_batch(ims[:1]))[0]
    assert p.labels[0] == 2
    b = tg[0]["boxes"][0].numpy()
    iou_x = min(p.boxes[0, 2], b[2]) - max(p.boxes[0, 0], b[0])
    assert iou_x > 10


def test_ignore_regions_get_no_classification_target():
    m = build_detector("tiny_fcos_xs", 3)
    locs = m.locations([(16, 16), (8, 8), (4, 4)], torch.device("cpu"))
    t = {
        "boxes": torch.tensor([[0.0, 0, 64, 64], [64, 64, 120, 120]]),
        "labels": torch.tensor([1, 2]),
        "ignore": torch.tensor([False, True]),
    }
    labels, _ = m.assign([t], locs)
    assert (labels == 1).any() and (labels == -2).any() and not (labels == 2).any()


def test_training_does_not_touch_global_rng():
    m = build_detector("tiny_fcos_xs", 5)
    ims, tg = toy()
    state = torch.get_rng_state().clone()
    np_state = np.random.get_state()[1].copy()
    train_supervised(
        m, ims, tg, Schedule(iterations=3, batch_size=2, warmup=1), torch.Generator().manual_seed(1)
    )
    assert torch.equal(state, torch.get_rng_state())
    assert (np_state == np.random.get_state()[1]).all()


def _random_targets(g: torch.Generator, n_images: int, size: int, polygons: bool) -> list[dict]:
    """Boxes of any size anywhere (some outside the image), a duplicated box (equal areas: a tie),
    images without objects, ignore flags on some images, rotated polygons on some."""
    out = []
    for i in range(n_images):
        n = 0 if i % 4 == 1 else int(torch.randint(1, 25, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * size
        wh = torch.rand(n, 2, generator=g) * 70 + 1
        if n > 2:
            xy[1], wh[1] = xy[0], wh[0]
        t = {
            "boxes": torch.cat([xy - wh / 2, xy + wh / 2], 1),
            "labels": torch.randint(0, 3, (n,), generator=g),
        }
        if i % 3:
            t["ignore"] = torch.rand(n, generator=g) < 0.25
        if polygons and i % 2:
            a = torch.rand(n, 1, generator=g) * 3.14
            corners = (
                torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])[None] * wh[:, None] / 2
            )  # (n, 4, 2)
            c, s = torch.cos(a), torch.sin(a)
            rot = torch.stack(
                [corners[..., 0] * c - corners[..., 1] * s, corners[..., 0] * s + corners[..., 1] * c], 2
            )
            t["polygons"] = (rot + xy[:, None]).reshape(n, 8)
        out.append(t)
    return out


def test_batched_assignment_equals_one_image_at_a_time(monkeypatch):
    """The batch is assigned at once, objects padded to the largest image's count: every label and
    box must be exactly what the image gets alone, also when the batch is split into groups."""
    import benchmark.detectors.fcos as fcos

    g = torch.Generator().manual_seed(0)
    for oriented in (False, True):
        m = build_detector("tiny_fcos_xs", 3, oriented=oriented)
        locs = m.locations([(20, 20), (10, 10), (5, 5)], torch.device("cpu"))
        assign = m.assign_oriented if oriented else m.assign
        targets = _random_targets(g, 9, 160, polygons=oriented)
        whole = assign(targets, locs)
        alone = [assign([t], locs) for t in targets]
        for k, part in enumerate(whole):
            assert torch.equal(part, torch.cat([a[k] for a in alone])), (oriented, k)
        assert (whole[0] >= 0).any() and (whole[0] == -2).any() and (whole[0] == -1).any()
        monkeypatch.setattr(fcos, "_ASSIGN_ELEMENTS", 1)  # one image per group
        assert fcos._image_groups([3, 0, 5], 10) == [slice(0, 1), slice(1, 2), slice(2, 3)]
        for a, b in zip(whole, assign(targets, locs), strict=True):
            assert torch.equal(a, b)
        monkeypatch.undo()
    assert fcos._image_groups([3, 0, 5, 2], 10, cap=100) == [slice(0, 2), slice(2, 4)]


def test_make_batch_normalises_each_image_and_zeroes_the_padding():
    """Every pixel is ``(x / 255 - MEAN) / STD`` computed as for that image alone, the padding up to
    the next multiple of 32 is 0, and the caller's images are left as they were."""
    from benchmark.detectors.base import MEAN, STD

    g = torch.Generator().manual_seed(0)
    for sizes in ([(128, 128)] * 3, [(100, 130), (128, 96), (65, 64)]):
        ims = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]
        copies = [im.clone() for im in ims]
        b = make_batch(ims)
        H, W = (-(-max(h for h, _ in sizes) // 32) * 32, -(-max(w for _, w in sizes) // 32) * 32)
        assert b.images.shape == (len(ims), 3, H, W) and b.images.dtype == torch.float32
        assert b.sizes == sizes
        for i, (im, (h, w)) in enumerate(zip(ims, sizes, strict=True)):
            alone = (im.float() / 255.0 - MEAN[0]) / STD[0]
            assert torch.equal(b.images[i, :, :h, :w], alone)
            assert not b.images[i, :, h:, :].any() and not b.images[i, :, :, w:].any()
            assert torch.equal(im, copies[i])
