"""Training pieces: the one EMA, and the teacher-student family's ramp-up, keep rate, pseudo-labels
and loop (``baselines.teacher_student``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from contexts import loop_context

from baselines.teacher_student import (
    PseudoLabels,
    TeacherStudentConfig,
    TeacherStudentMethod,
    detection_confidence,
    frozen_bn_statistics,
)
from benchmark.detectors import build_detector
from benchmark.detectors.base import Prediction
from benchmark.training import ModelEMA, Schedule, ema_update, sample_targets


def _model(seed=0, score_thresh=0.05):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_detector("tiny_fcos_xs", 3, score_thresh=score_thresh)


def test_ema_update_is_an_ema():
    t, s = _model(0), _model(1)
    t0 = {k: v.clone() for k, v in t.state_dict().items()}
    ema_update(t.state_dict(), s.state_dict(), 0.9)  # a model's state dict shares its storage
    for k, v in t.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * t0[k] + 0.1 * s.state_dict()[k], atol=1e-6)
            # bit-identical to the per-tensor update it replaced
            assert torch.equal(v, t0[k].clone().mul_(0.9).add_(s.state_dict()[k], alpha=1.0 - 0.9))
        else:
            assert torch.equal(v, s.state_dict()[k])
    ema_update(t.state_dict(), s.state_dict(), 0.0)
    for k, v in t.state_dict().items():
        assert torch.equal(v, s.state_dict()[k])


def test_model_ema_warms_up_and_copies():
    m, other = _model(0), _model(1)
    ema = ModelEMA(m, 0.99)
    w0 = {k: v.clone() for k, v in m.state_dict().items()}
    ema.update(other)  # step 1: decay min(0.99, 2 / 11)
    d = 2 / 11
    k = "head.cls.weight"
    assert torch.allclose(ema.shadow[k], d * w0[k] + (1 - d) * other.state_dict()[k], atol=1e-6)
    ema.copy_to(m)
    assert torch.equal(m.state_dict()[k], ema.shadow[k])


def test_ramp_up_and_keep_rate():
    cfg = TeacherStudentConfig(burn_in=0.25, rampup=0.5, unsup_weight=4.0, ema_time_constant=0.05)
    T = 400
    assert cfg.burn_in_iters(T) == 100
    assert cfg.unsup_weight_at(99, T) == 0.0
    w = [cfg.unsup_weight_at(i, T) for i in range(100, T)]
    assert all(b >= a for a, b in zip(w, w[1:], strict=False))  # monotone ramp-up
    assert 0 < w[0] < 0.1 and w[-1] == pytest.approx(4.0)
    assert cfg.unsup_weight_at(100 + 75, T) == pytest.approx(4.0 * math.exp(-5 * (1 - 76 / 150) ** 2))
    assert cfg.keep_rate(T) == pytest.approx(1 - 1 / 15)  # time constant 5 % of 300 iterations
    assert cfg.keep_rate(4000) > cfg.keep_rate(400)  # longer schedules average over more steps


def test_detection_confidence_and_pseudo_label_thresholds(monkeypatch):
    pred = Prediction(
        np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]], np.float32),
        np.array([0.5, 0.8, 0.2], np.float32),
        np.array([1, 0, 2]),
        np.array([[0.1, 0.9, 0.0], [0.75, 0.1, 0.1], [0.0, 0.0, 0.3]], np.float32),
    )
    assert np.allclose(detection_confidence(pred, "cls"), [0.9, 0.75, 0.3])
    assert np.allclose(detection_confidence(pred, "score"), [0.5, 0.8, 0.2])
    pl = PseudoLabels.from_prediction(pred, 0.7, confidence="cls")
    assert pl["labels"].tolist() == [1, 0] and not pl["ignore"].any()
    assert pl["scores"].tolist() == pytest.approx([0.9, 0.75]) and pl["boxes"].shape == (2, 4)
    pl = PseudoLabels.from_prediction(pred, 0.7, ignore_below=0.25, confidence="cls")
    assert pl["labels"].tolist() == [1, 0, 2] and pl["ignore"].tolist() == [False, False, True]
    pl = PseudoLabels.from_prediction(pred, 0.7, confidence="score")
    assert pl["labels"].tolist() == [0] and "polygons" not in pl
    # class-wise thresholds (one per detection) and polygons
    polys = np.arange(24, dtype=np.float32).reshape(3, 8)
    conf = detection_confidence(pred, "cls")
    pl = PseudoLabels.from_detections(pred.boxes, conf, pred.labels, np.array([0.95, 0.7, 0.25]), 0.5, polys)
    assert pl["labels"].tolist() == [1, 0, 2] and pl["ignore"].tolist() == [True, False, False]
    assert torch.equal(pl["polygons"], torch.from_numpy(polys))


def test_cls_only_targets_skip_box_losses(dota_tiny_root):
    from benchmark.detectors.base import make_batch
    from domains.dota import DOTA

    pool = DOTA().load(dota_tiny_root, "pool")
    s = next(x for x in pool if x.num_objects > 0)
    model = _model()
    im = torch.from_numpy(np.ascontiguousarray(pool.image(s.id).transpose(2, 0, 1)))
    batch = make_batch([im])
    t = sample_targets(s)
    t["labels"] = t["labels"].clamp(max=2)
    full = model.losses(batch, [t])
    only = model.losses(batch, [{**t, "cls_only": True}])
    assert float(full["box"].detach()) > 0 and float(only["box"].detach()) == 0.0
    assert float(only["ctr"].detach()) == 0.0
    assert torch.allclose(full["cls"], only["cls"])
    # a pseudo-labelled batch with few positives: min_normalizer bounds the divisor from below
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long), "cls_only": True}
    a = model.losses(batch, [empty])["cls"]
    b = model.losses(batch, [empty], min_normalizer=10.0)["cls"]
    assert torch.allclose(a, 10.0 * b)


def test_teacher_student_loop_deterministic_and_returns_teacher(dota_tiny_root):
    from domains.dota import DOTA

    pool = list(DOTA().load(dota_tiny_root, "pool"))
    img = {
        s.id: torch.from_numpy(
            np.ascontiguousarray(DOTA().load(dota_tiny_root, "pool").image(s.id).transpose(2, 0, 1))
        )
        for s in pool[:12]
    }
    lab, unl = pool[:6], pool[6:12]
    sched = Schedule(iterations=6, batch_size=2, warmup=1, ema_decay=0.9)

    def run():
        # all detections count (threshold 0), the untrained model's too (p ~ 0.01, score_thresh 0.005)
        method = TeacherStudentMethod(burn_in=0.5, threshold=0.0, ema_time_constant=1.0)
        loop = method.loop(loop_context(sched))
        m = loop.fit(
            _model(score_thresh=0.005),
            [img[s.id] for s in lab],
            [{**sample_targets(s), "labels": sample_targets(s)["labels"].clamp(max=2)} for s in lab],
            [img[s.id] for s in unl],
        )
        return m, loop.stats

    before = torch.get_rng_state().clone()
    a, stats = run()
    assert torch.equal(before, torch.get_rng_state())
    b, _ = run()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not a.training
    assert stats["burn_in_iters"] == 3 and stats["pseudo_per_image"] > 0
    assert len(a.committee_states) == 1  # the student, next to the returned teacher
    assert any(not torch.equal(v, a.state_dict()[k]) for k, v in a.committee_states[0].items())


def test_frozen_bn_statistics_keeps_running_stats():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    bn = m[1]
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 5 + 3
    before = bn.running_mean.clone(), bn.running_var.clone()
    with frozen_bn_statistics(m):
        y = m(x)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.momentum == 0.1
    assert abs(float(y.detach().mean())) < 1e-4  # still normalised with the batch's statistics
    m(x)
    assert not torch.equal(bn.running_mean, before[0])
