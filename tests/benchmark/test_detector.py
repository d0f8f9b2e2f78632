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
