"""The mean_teacher baseline: registration, its card, its settings, and the pseudo-label diagnostics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from baselines.base import METHODS
from baselines.mean_teacher import MeanTeacher, pseudo_label_quality
from benchmark.detectors.base import Prediction
from domains.base import SpecError


def test_registered_with_unbiased_teacher_settings():
    cls = METHODS.get("mean_teacher")
    assert cls is MeanTeacher and cls.paradigm == "ssl" and cls.uses_unlabelled
    doc = sys.modules[cls.__module__].__doc__
    assert "Unbiased Teacher" in doc and "threshold = 0.7" in doc
    cfg = MeanTeacher().config()
    assert cfg.threshold == 0.7 and cfg.cls_only and cfg.unsup_weight == 4.0
    assert cfg.unlabelled_ratio == 1.0
    with pytest.raises(SpecError):
        MeanTeacher(bogus=1)
    with pytest.raises(SpecError):
        MeanTeacher(labelled_view="strong").config()
    assert MeanTeacher(threshold=0.5).version() != MeanTeacher().version()


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
