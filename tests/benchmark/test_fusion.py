"""benchmark.fusion.wbf: the same fused boxes, scores and labels, bit for bit, as the reference
implementation (``ensemble_boxes.weighted_boxes_fusion`` on boxes normalised to [0, 1]), on
detection sets like SAR's and triple-EMA's (near-duplicate boxes across sets), with ties in scores,
duplicates, zero-area, swapped, out-of-image and NaN boxes, set weights, both score rules and
thresholds from negative to high."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.fusion import wbf


def reference(boxes, scores, labels, size, weights=None, iou_thr=0.55, skip_box_thr=0.0, conf_type="avg"):
    """ensemble-boxes on the boxes normalised to [0, 1] and clipped, fused boxes scaled back."""
    from ensemble_boxes import weighted_boxes_fusion

    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float64)
    b_n = [np.clip(np.asarray(b, np.float64).reshape(-1, 4) / scale, 0.0, 1.0).tolist() for b in boxes]
    s_n = [np.asarray(s, np.float64).reshape(-1).tolist() for s in scores]
    l_n = [np.asarray(lab, np.int64).reshape(-1).tolist() for lab in labels]
    if not any(len(s) for s in s_n):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fb, fs, fl = weighted_boxes_fusion(
            b_n, s_n, l_n, weights=weights, iou_thr=iou_thr, skip_box_thr=skip_box_thr, conf_type=conf_type
        )
    fb = np.asarray(fb, np.float64).reshape(-1, 4) * scale
    return fb.astype(np.float32), np.asarray(fs, np.float32), np.asarray(fl).astype(np.int64)


def detection_sets(rng, n_sets: int, n_objects: int, n_classes: int, size, coarse_scores: bool):
    h, w = size
    centre = rng.uniform(0, 1, (n_objects, 2)) * [w, h]
    wh = rng.uniform(2, 40, (n_objects, 2))
    cls = rng.integers(0, n_classes, n_objects)
    boxes, scores, labels = [], [], []
    for _ in range(n_sets):
        seen = rng.random(n_objects) < 0.8
        c = centre[seen] + rng.normal(0, 2, (seen.sum(), 2))
        d = wh[seen] * rng.uniform(0.8, 1.2, (seen.sum(), 2))
        b = np.concatenate([c - d / 2, c + d / 2], 1).astype(np.float32)
        s = rng.uniform(0, 1, len(b)).astype(np.float32)
        if coarse_scores:  # ties, and zero scores (a cluster with a zero score sum: NaN boxes)
            s = np.round(s, 1).astype(np.float32)
        boxes.append(b)
        scores.append(s)
        labels.append(cls[seen])
    return boxes, scores, labels


def test_wbf_equals_the_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    for case in range(300):
        n_sets = 1 + case % 3
        size = (int(rng.integers(64, 300)), int(rng.integers(64, 300)))
        sets = detection_sets(
            rng, n_sets, int(rng.integers(0, 120)), int(rng.integers(1, 12)), size, case % 2 == 0
        )
        b0 = sets[0][0]
        if case % 7 == 0 and len(b0) > 5:
            b0[1] = b0[2]  # a duplicate
            b0[2, 2] = b0[2, 0]  # zero width
            b0[3, 1] = np.nan
            b0[4, 2] = 1e6  # far outside the image
            b0[5] = b0[5][[2, 3, 0, 1]]  # x2 < x1
        kw = {
            "iou_thr": float(rng.choice([-0.1, 0.0, 0.3, 0.55, 0.7])),
            "skip_box_thr": float(rng.choice([0.0, 0.1, 0.5])),
            "conf_type": "max" if case % 4 == 3 else "avg",
        }
        if case % 5 == 1:
            kw["weights"] = list(rng.uniform(0.5, 2, n_sets))
        want = reference(*sets, size, **kw)
        got = wbf(*sets, size, **kw)
        for g, w_ in zip(got, want, strict=True):
            assert g.dtype == w_.dtype and g.shape == w_.shape, (case, kw)
            assert np.array_equal(g, w_, equal_nan=True), (case, kw)


def test_wbf_averages_agreeing_sets_and_keeps_classes_apart():
    a = np.array([[10, 10, 30, 30], [50, 50, 70, 70]], np.float32)
    b = np.array([[12, 10, 32, 30], [50, 50, 70, 70]], np.float32)
    fb, fs, fl = wbf([a, b], [np.array([0.8, 0.6]), np.array([0.8, 0.6])], [[0, 1], [0, 2]], (100, 100))
    # class 0: both sets agree -> averaged box, full score; classes 1 and 2 never fuse: halved
    order = np.argsort(fl)
    fb, fs, fl = fb[order], fs[order], fl[order]
    assert fl.tolist() == [0, 1, 2]
    assert fb[0].tolist() == pytest.approx([11, 10, 31, 30], abs=1e-4)
    assert fs.tolist() == pytest.approx([0.8, 0.3, 0.3])
    empty = wbf([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0)], (10, 10))
    assert [e.shape for e in empty] == [(0, 4), (0,), (0,)]


def test_wbf_rejects_inconsistent_input():
    one = np.array([[1, 1, 5, 5]], np.float32)
    with pytest.raises(ValueError, match="set 0 has 1 boxes, 2 scores"):
        wbf([one], [np.array([0.5, 0.4])], [np.array([0])], (10, 10))
    with pytest.raises(ValueError, match="weights"):
        wbf([one], [np.array([0.5])], [np.array([0])], (10, 10), weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="conf_type"):
        wbf([one], [np.array([0.5])], [np.array([0])], (10, 10), conf_type="box_and_model_avg")
