"""The mean_teacher baseline: registration, its card, its settings, and the pseudo-label diagnostics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from baselines.base import METHODS
from baselines.mean_teacher import MeanTeacher, pseudo_label_quality
from baselines.teacher_student import Step, TeacherStudentMethod
from benchmark.detectors.base import Prediction
from domains.base import SpecError


def test_registered_with_unbiased_teacher_settings():
    cls = METHODS.get("mean_teacher")
    assert cls is MeanTeacher and cls.paradigm == "ssl" and issubclass(cls, TeacherStudentMethod)
    doc = sys.modules[cls.__module__].__doc__
    assert "Unbiased Teacher" in doc and "threshold = 0.5" in doc and "BBOX_THRESHOLD`` = 0.7" in doc
    for key in cls.hparams:
        assert f"{key} = " in doc, f"hyper-parameter {key} missing from the card"
    cfg = MeanTeacher().config()
    assert cfg.threshold == 0.5 and cfg.ignore_below == 0.3 and cfg.cls_only and cfg.unsup_weight == 4.0
    assert not cfg.soft_background
    assert cfg.unlabelled_ratio == 1.0
    with pytest.raises(SpecError):
        MeanTeacher(bogus=1)
    with pytest.raises(SpecError):
        MeanTeacher(labelled_view="strong").config()
    assert MeanTeacher(threshold=0.7).version() != MeanTeacher().version()


class _Fixed(torch.nn.Module):
    """A fake detector that returns fixed predictions (one per image)."""

    def __init__(self, preds):
        super().__init__()
        self.preds = preds

    def predict(self, batch, dense=False):
        return self.preds[: len(batch.sizes)]


class _S:
    def __init__(self, boxes, labels):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(labels, np.int64)
        self.ignore = np.zeros(len(self.labels), bool)


def test_pseudo_label_quality_counts_matches():
    gt = _S([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 1, 1])
    pred = Prediction(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70], [0, 0, 10, 10]], np.float32),
        np.array([0.9, 0.8, 0.9, 0.2], np.float32),
        np.array([0, 0, 1, 0]),  # the second has the wrong class
        np.array([[0.9, 0.1], [0.8, 0.1], [0.1, 0.9], [0.2, 0.1]], np.float32),
    )
    q = pseudo_label_quality(_Fixed([pred]), [gt], [torch.zeros((3, 80, 80), dtype=torch.uint8)], 0.7)
    assert q["pseudo_per_image"] == 3
    assert q["precision"] == pytest.approx(1 / 3) and q["recall"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------ soft background


def _tiny_fit(pool, **hp):
    """Four iterations (two supervised, two teacher-student) on tiny synthetic DOTA images."""
    from contexts import loop_context

    from benchmark.detectors import build_detector
    from benchmark.training import Schedule, sample_targets

    samples = list(pool)[:6]
    images = [torch.from_numpy(np.ascontiguousarray(pool.image(s.id).transpose(2, 0, 1))) for s in samples]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_detector("tiny_fcos_xs", len(pool.classes))
    method = MeanTeacher(burn_in=0.5, threshold=0.05, ignore_below=0.01, **hp)
    trainer = method.loop(loop_context(Schedule(iterations=4, batch_size=2, warmup=1)))
    out = trainer.fit(model, images[:3], [sample_targets(s) for s in samples[:3]], images[3:])
    return trainer, out


@pytest.fixture(scope="module")
def tiny_pool(dota_tiny_root):
    from domains.dota import DOTA

    return DOTA().load(dota_tiny_root, "pool")


def test_soft_background_weights_and_switch(tiny_pool):
    on, m_on = _tiny_fit(tiny_pool, soft_background=True)
    off, m_off = _tiny_fit(tiny_pool, soft_background=False)
    # the switch changes the update: the students (kept as committee states) differ
    s_on, s_off = m_on.committee_states[0], m_off.committee_states[0]
    assert any(not torch.equal(s_on[k], s_off[k]) for k in s_on if s_on[k].dtype.is_floating_point)
    # the weights: 1 at the pseudo-labels' positives, the teacher's background probability elsewhere
    from benchmark.detectors.base import make_batch

    ims = [
        torch.from_numpy(np.ascontiguousarray(tiny_pool.image(s.id).transpose(2, 0, 1)))
        for s in list(tiny_pool)[:2]
    ]
    tg = [
        {"boxes": torch.tensor([[20.0, 20.0, 60.0, 50.0]]), "labels": torch.tensor([1]), "cls_only": True}
        for _ in ims
    ]
    ubatch = make_batch(ims)
    step = Step(0, 4, ubatch, tg, ims, tg, ims, tg, ubatch)
    w = on.background_weights(step)
    out = on.teacher.last_outputs
    bg = 1.0 - torch.sigmoid(out["cls"]).amax(2)
    pos = out["labels"] >= 0
    assert w.shape == pos.shape and pos.any() and (~pos).any()
    assert torch.all(w[pos] == 1.0) and torch.allclose(w[~pos], bg[~pos])
    assert float(w.min()) >= 0.0 and float(w[~pos].min()) < 1.0
