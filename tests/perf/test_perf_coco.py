"""COCO evaluation speed: faster-coco-eval vs pycocotools on 2,000 images x 100 detections.

Run with ``tox -e perf`` (or ``pytest tests/perf -o addopts=""``). Both backends run in the same
session on the same inputs; the test asserts identical numbers and prints the speed ratio (goal >= 5x).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark.metrics.coco import STAT_NAMES, evaluate


def make_set(n_images=2000, n_classes=10, gt_per_image=10, dets_per_image=100, seed=0):
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    aid = 1
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 640})
        xy = rng.uniform(0, 560, (gt_per_image, 2))
        wh = rng.uniform(16, 80, (gt_per_image, 2))
        labels = rng.integers(1, n_classes + 1, gt_per_image)
        for (x, y), (w, h), c in zip(xy, wh, labels, strict=True):
            anns.append(
                {
                    "id": aid,
                    "image_id": i,
                    "category_id": int(c),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
            aid += 1
        k = 0
        for (x, y), (w, h), c in zip(xy, wh, labels, strict=True):
            for _ in range(3):
                j = rng.normal(0, 4, 4)
                cat = int(c) if rng.random() > 0.1 else int(rng.integers(1, n_classes + 1))
                dets.append(
                    {
                        "image_id": i,
                        "category_id": cat,
                        "score": float(rng.beta(5, 2)),
                        "bbox": [
                            float(x + j[0]),
                            float(y + j[1]),
                            float(max(2, w + j[2])),
                            float(max(2, h + j[3])),
                        ],
                    }
                )
                k += 1
        while k < dets_per_image:
            x, y = rng.uniform(0, 600, 2)
            w, h = rng.uniform(8, 80, 2)
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(rng.integers(1, n_classes + 1)),
                    "score": float(rng.beta(2, 5)),
                    "bbox": [float(x), float(y), float(w), float(h)],
                }
            )
            k += 1
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.fixture(scope="module")
def dataset():
    return make_set()


def test_faster_coco_eval_vs_pycocotools(benchmark, dataset):
    gt, dets = dataset
    t0 = time.perf_counter()
    ref = evaluate(gt, dets, backend="pycocotools")
    t_ref = time.perf_counter() - t0
    res = benchmark.pedantic(evaluate, args=(gt, dets), kwargs={"backend": "faster"}, rounds=3, iterations=1)
    for k in STAT_NAMES:
        assert abs(res[k] - ref[k]) <= 1e-9
    ratio = t_ref / benchmark.stats.stats.min
    benchmark.extra_info["pycocotools_s"] = t_ref
    benchmark.extra_info["speedup"] = ratio
    print(f"\npycocotools {t_ref:.2f} s, faster-coco-eval {benchmark.stats.stats.min:.2f} s: {ratio:.1f}x")
