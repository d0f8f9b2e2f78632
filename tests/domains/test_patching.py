"""Patching of large scenes (window algorithm, IoF assignment, patch ids) and merging patch detections
back to scene coordinates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.metrics.dota import evaluate_dota
from domains.dota import DOTA
from domains.patching import (
    assign_objects,
    merge_patch_predictions,
    nms,
    parse_patch_id,
    patch_id,
    window_starts,
    windows,
)


def test_window_list_of_the_issue():
    assert window_starts(2500, 1024, 200) == [0, 824, 1476]
    assert window_starts(1900, 1024, 200) == [0, 824, 876]
    wins = windows(2500, 1900, 1024, 200)
    assert {w[0] for w in wins} == {0, 824, 1476} and {w[1] for w in wins} == {0, 824, 876}
    assert len(wins) == 9 and all(w[2] == 1024 and w[3] == 1024 for w in wins)


def test_small_scenes_and_last_window_flush():
    assert window_starts(800, 1024, 200) == [0]
    assert window_starts(1024, 1024, 200) == [0]
    assert window_starts(1025, 1024, 200) == [0, 1]
    assert window_starts(352, 128, 16) == [0, 112, 224]
    # a scene narrower than the window: one clipped window, kept even though it covers < 60 %
    assert windows(500, 300, 1024, 200) == [(0, 0, 500, 300)]
    with pytest.raises(ValueError):
        window_starts(100, 64, 64)


def test_image_rate_threshold_on_thin_scenes():
    # 2000 x 700: three 1024 x 700 windows (68 % of a window each) pass the 0.6 threshold
    assert windows(2000, 700, 1024, 200) == [(0, 0, 1024, 700), (824, 0, 1024, 700), (976, 0, 1024, 700)]
    # a stricter threshold rejects them all, and then the best ones are kept: never zero patches
    assert len(windows(2000, 700, 1024, 200, img_rate_thr=0.9)) == 3
    # longer than the window: every window is full size, the last ones flush with the border
    assert [w[:2] for w in windows(300, 200, 128, 16)] == [
        (0, 0),
        (112, 0),
        (172, 0),
        (0, 72),
        (112, 72),
        (172, 72),
    ]


def test_patch_ids_round_trip():
    assert patch_id("P0000", 1024, 0, 824) == "P0000__1024__0___824"
    assert parse_patch_id("P0000__1024__0___824") == ("P0000", 1024, 0, 824)
    assert parse_patch_id("a__b__128__96___0") == ("a__b", 128, 96, 0)
    with pytest.raises(ValueError):
        parse_patch_id("P0000")


def square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def test_iof_assignment_and_truncation_flag():
    polys = np.array([square(10, 10, 20), square(90, 10, 20), square(120, 10, 20)], np.float32)
    diff = np.array([1, 0, 0])
    objs = assign_objects(polys, diff, (0, 0, 100, 100))
    # first: inside (keeps difficult 1); second: 10/20 = 0.5 inside -> not in this window; third: outside
    assert objs.index.tolist() == [0]
    assert objs.difficult.tolist() == [1]
    objs = assign_objects(polys, diff, (0, 0, 106, 100))  # second object 80 % inside
    assert objs.index.tolist() == [0, 1]
    assert objs.difficult.tolist() == [1, 2]
    assert objs.iof[1] == pytest.approx(0.8)
    objs = assign_objects(polys, diff, (96, 0, 100, 100))
    assert objs.index.tolist() == [1, 2]
    # polygons shifted, not clipped; boxes clipped to the patch
    np.testing.assert_allclose(objs.polygons[0], np.array(square(-6, 10, 20)))
    np.testing.assert_allclose(objs.boxes[0], [0, 10, 14, 30])
    assert objs.difficult.tolist() == [2, 0]


def test_nms_keeps_low_overlap_and_best_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.3]), 0.1)
    assert keep.tolist() == [1, 2]
    polys = np.array([square(0, 0, 10), square(1, 0, 10), square(20, 20, 10)], float)
    assert nms(polys, np.array([0.5, 0.9, 0.3]), 0.1).tolist() == [1, 2]
    # IoU exactly 1/3 > 0.1 suppresses; IoU 0.05 does not
    far = np.array([square(0, 0, 10), square(9.5, 0, 10)], float)
    assert len(nms(far, np.array([1.0, 0.9]), 0.1)) == 2


def _roundtrip(ds, oriented: bool):
    preds = []
    for s in ds:
        preds.append(
            SimpleNamespace(
                boxes=s.boxes,
                scores=np.ones(len(s.boxes)),
                labels=s.labels,
                polygons=s.polygons if oriented else None,
            )
        )
    return merge_patch_predictions(list(ds), preds, oriented=oriented)


@pytest.mark.parametrize(("task", "oriented"), [("task2", False), ("task1", True)])
def test_patch_merge_round_trip_gives_map_one(dota_tiny_root, task, oriented):
    dom = DOTA()
    # the pool: synthetic DOTA v4's tiny test split has no object inside two overlapping windows
    patches = dom.load(dota_tiny_root, "pool")
    scenes = DOTA(label_unit="image").load(dota_tiny_root, "pool")
    assert len(patches) > len(scenes)  # the scenes really are cut
    merged = _roundtrip(patches, oriented)
    assert set(merged) == {s.id for s in scenes}
    gt = {
        s.id: {"polygons": s.polygons, "boxes": s.boxes, "labels": s.labels, "difficult": s.difficult}
        for s in scenes
    }
    dets: dict[int, list] = {}
    for scene, m in merged.items():
        geom = m.polygons if oriented else m.boxes
        for g, sc, lab in zip(geom, m.scores, m.labels, strict=True):
            dets.setdefault(int(lab), []).append((scene, float(sc), g))
    res = evaluate_dota(gt, dets, dom.classes, task=task, version="1.5")
    assert res["mAP50"] == pytest.approx(1.0)
    # merging really removed the duplicates of overlapping windows
    n_patch_objects = sum(len(s.boxes) for s in patches)
    n_merged = sum(len(m) for m in merged.values())
    assert n_merged < n_patch_objects
    assert n_merged == sum(len(s.boxes) for s in scenes)


def test_merge_offsets_from_ids_and_tuples():
    pred = SimpleNamespace(boxes=np.array([[1, 2, 3, 4]]), scores=np.array([0.5]), labels=np.array([2]))
    out = merge_patch_predictions(["S__128__100___50", ("T", 10, 20)], [pred, pred], oriented=False)
    np.testing.assert_allclose(out["S"].boxes, [[101, 52, 103, 54]])
    np.testing.assert_allclose(out["T"].boxes, [[11, 22, 13, 24]])
    with pytest.raises(ValueError):
        merge_patch_predictions(["S__128__0___0"], [pred, pred])
