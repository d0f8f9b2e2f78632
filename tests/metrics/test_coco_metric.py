"""benchmark.metrics.coco (faster-coco-eval) equals pycocotools' COCOeval to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.detectors import build_detector
from benchmark.detectors.base import Prediction
from benchmark.metrics.coco import STAT_NAMES, evaluate, evaluate_predictions, gt_to_coco, predictions_to_coco
from domains.base import Sample
from domains.dota import DOTA


def noisy_predictions(samples, n_classes, seed):
    """Detections near the ground truth (some with wrong labels), plus random boxes."""
    rng = np.random.default_rng(seed)
    preds = []
    for k, s in enumerate(samples):
        if k % 7 == 3:  # some images without any detection
            preds.append(
                Prediction(
                    np.zeros((0, 4), np.float32),
                    np.zeros(0, np.float32),
                    np.zeros(0, np.int64),
                    np.zeros((0, n_classes), np.float32),
                )
            )
            continue
        boxes, labels = [], []
        for b, lab in zip(s.boxes, s.labels, strict=True):
            for _ in range(rng.integers(0, 3)):
                boxes.append(b + rng.normal(0, 2, 4))
                labels.append(lab if rng.random() > 0.1 else rng.integers(n_classes))
        for _ in range(rng.integers(0, 10)):
            x, y = rng.uniform(0, s.width - 20), rng.uniform(0, s.height - 20)
            boxes.append([x, y, x + rng.uniform(4, 30), y + rng.uniform(4, 30)])
            labels.append(rng.integers(n_classes))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        n = len(boxes)
        preds.append(
            Prediction(
                boxes,
                rng.random(n).astype(np.float32),
                np.asarray(labels, np.int64),
                rng.random((n, n_classes)).astype(np.float32),
            )
        )
    return preds


def with_crowds(samples):
    """Mark every fifth object an ignore region (iscrowd)."""
    out = []
    for s in samples:
        ig = np.zeros(len(s.boxes), bool)
        ig[::5] = True
        out.append(Sample(s.id, s.group, s.width, s.height, s.boxes, s.labels, s.difficult, ig, s.polygons))
    return out


def assert_same(a, b):
    for k in STAT_NAMES:
        assert abs(a[k] - b[k]) <= 1e-9, (k, a[k], b[k])
    assert a["per_class"].keys() == b["per_class"].keys()
    for c in a["per_class"]:
        for k in ("AP", "AP50"):
            assert abs(a["per_class"][c][k] - b["per_class"][c][k]) <= 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("crowd", [False, True])
def test_equals_pycocotools_on_generated_sets(dota_tiny_root, seed, crowd):
    ds = DOTA().load(dota_tiny_root, "test")
    samples = with_crowds(list(ds)) if crowd else list(ds)
    preds = noisy_predictions(samples, len(ds.classes), seed)
    a = evaluate_predictions(samples, ds.classes, preds, backend="faster")
    b = evaluate_predictions(samples, ds.classes, preds, backend="pycocotools")
    assert_same(a, b)
    assert 0 < a["AP50"] < 1


def test_equals_pycocotools_on_detector_outputs(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "test")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_detector("tiny_fcos_xs", len(ds.classes), score_thresh=0.01)
    from benchmark.detectors import images_to_tensors
    from benchmark.training import predict_all

    # an untrained detector emits many low-score boxes: a hard case for matching
    preds = predict_all(model, images_to_tensors([ds.image(i) for i in ds.ids]))
    assert sum(len(p) for p in preds) > 0
    a = evaluate_predictions(list(ds), ds.classes, preds, backend="faster")
    b = evaluate_predictions(list(ds), ds.classes, preds, backend="pycocotools")
    assert_same(a, b)


def test_perfect_and_empty(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "test")
    C = len(ds.classes)
    perfect = [
        Prediction(
            s.boxes, np.ones(len(s.boxes), np.float32), s.labels, np.eye(C, dtype=np.float32)[s.labels]
        )
        for s in ds
    ]
    r = evaluate_predictions(list(ds), ds.classes, perfect)
    assert r["AP50"] == pytest.approx(1.0) and r["AP"] == pytest.approx(1.0)
    empty = [
        Prediction(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, C), np.float32),
        )
        for _ in ds
    ]
    assert evaluate_predictions(list(ds), ds.classes, empty)["AP50"] == 0.0


def test_coco_export_fields(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "test")
    gt = gt_to_coco(list(ds), ds.classes)
    k = next(i for i, x in enumerate(ds) if x.num_objects)
    s = ds[k]
    anns = [a for a in gt["annotations"] if a["image_id"] == k + 1]
    assert len(anns) == len(s.boxes)
    x, y, w, h = anns[0]["bbox"]
    assert [x, y, x + w, y + h] == pytest.approx(s.boxes[0].tolist())
    assert anns[0]["area"] == pytest.approx(w * h)
    assert anns[0]["iscrowd"] == 0 and "difficult" in anns[0] and len(anns[0]["segmentation"][0]) == 8
    dets = predictions_to_coco(noisy_predictions([s], len(ds.classes), 0), [s.id])
    assert dets and all(d["image_id"] == s.id for d in dets)
    assert evaluate(gt, [])["AP"] == 0.0
