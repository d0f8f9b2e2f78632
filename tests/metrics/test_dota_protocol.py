"""DOTA's official protocol in the benchmark: patch detections merged to scenes, devkit Task2 AP."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.detectors.base import Prediction
from benchmark.evaluation import evaluate_domain
from domains.dota import DOTA


def gt_predictions(ds, C, keep=None):
    out = []
    for s in ds:
        m = np.ones(len(s.boxes), bool) if keep is None else keep(s)
        b = s.boxes[m]
        out.append(
            Prediction(b, np.ones(len(b), np.float32), s.labels[m], np.eye(C, dtype=np.float32)[s.labels[m]])
        )
    return out


@pytest.mark.parametrize("unit", ["patch", "image"])
def test_ground_truth_as_predictions_is_perfect(dota_tiny_root, unit):
    dom = DOTA(label_unit=unit)
    ds = dom.load(dota_tiny_root, "test")
    res = evaluate_domain(dom, ds, gt_predictions(ds, len(dom.classes)))
    assert res["primary"] == "mAP50" and res["metrics"]["mAP50"] == pytest.approx(1.0)
    assert "on merged scenes" in res["impl"]["mAP50"] and "task2" in res["impl"]["mAP50"]
    assert "difficult ignored" in res["impl"]["mAP50"]


def test_difficult_objects_are_not_counted_under_v1_0(dota_tiny_root):
    """Dropping every difficult ground-truth box from the predictions costs nothing under v1.0
    (difficult objects are neither positives nor false negatives) but does under v1.5."""
    for version, perfect in (("1.0", True), ("1.5", False)):
        dom = DOTA(version=version, label_unit="image")
        ds = dom.load(dota_tiny_root, "test")
        assert any((s.difficult > 0).any() for s in ds)
        res = evaluate_domain(dom, ds, gt_predictions(ds, len(dom.classes), keep=lambda s: s.difficult == 0))
        assert (res["metrics"]["mAP50"] == pytest.approx(1.0)) is perfect


def test_empty_predictions_score_zero(dota_tiny_root):
    dom = DOTA()
    ds = dom.load(dota_tiny_root, "test")
    res = evaluate_domain(
        dom, ds, gt_predictions(ds, len(dom.classes), keep=lambda s: np.zeros(len(s.boxes), bool))
    )
    assert res["metrics"]["mAP50"] == 0.0


def test_long_tail_groups_and_tail_recall(dota_tiny_root):
    dom = DOTA()
    pool = dom.load(dota_tiny_root, "pool")
    ds = dom.load(dota_tiny_root, "test")
    counts = dict(zip(dom.classes, (int(c) for c in pool.class_counts()), strict=True))
    res = evaluate_domain(dom, ds, gt_predictions(ds, len(dom.classes)), class_counts=counts)
    lt = res["long_tail"]
    assert set(lt["groups"].values()) == {"head", "middle", "tail"}
    assert lt["groups"]["small-vehicle"] == "head"
    assert lt["head"] == pytest.approx(1.0) and lt["tail_recall"] == pytest.approx(1.0)
    tail = {c for c, g in lt["groups"].items() if g == "tail"}
    res = evaluate_domain(
        dom,
        ds,
        gt_predictions(
            ds, len(dom.classes), keep=lambda s: ~np.isin([dom.classes[k] for k in s.labels], list(tail))
        ),
        class_counts=counts,
    )
    assert res["long_tail"]["tail_recall"] == 0.0 and res["long_tail"]["head"] == pytest.approx(1.0)
