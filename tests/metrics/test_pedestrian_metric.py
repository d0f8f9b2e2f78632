"""MR^-2 (Caltech / CityPersons protocol) on hand-built curves and hand-built images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.metrics.pedestrian import REF_FPPI, evaluate_mr, log_average_miss_rate, miss_rate_at


def gm(misses):
    """Geometric mean written out by hand: (prod misses) ** (1 / 9)."""
    assert len(misses) == 9
    return math.prod(misses) ** (1 / 9)


def img(boxes, ignore=None, visible=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ign = np.zeros(len(boxes), dtype=bool) if ignore is None else np.asarray(ignore, dtype=bool)
    vis = None if visible is None else np.asarray(visible, dtype=np.float64).reshape(-1, 4)
    return {"boxes": boxes, "ignore": ign, "visible_boxes": vis}


def det(boxes, scores):
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64))


PED = [0, 0, 40, 100]  # a 100 px tall pedestrian


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------


def test_reference_points():
    np.testing.assert_allclose(
        REF_FPPI, [0.01, 0.0178, 0.0316, 0.0562, 0.1, 0.1778, 0.3162, 0.5623, 1.0], atol=5e-5
    )
    assert REF_FPPI[0] == 0.01 and REF_FPPI[4] == 0.1 and REF_FPPI[-1] == 1.0


def test_perfect_and_empty_curves():
    assert log_average_miss_rate([0.0, 0.0], [0.5, 1.0]) == 0.0  # miss 0 everywhere -> log(0) -> MR 0
    assert log_average_miss_rate([], []) == 1.0  # no detections
    assert log_average_miss_rate([0.0, 0.0, 3.0], [0.2, 1.0, 1.0]) == 0.0


def test_curve_never_reaching_low_fppi():
    fppi, recall = [0.02, 0.5, 1.0], [0.3, 0.6, 0.9]
    # refs .01, .0178: no point with fppi <= ref -> recall 0 (MATLAB), miss 1
    # refs .0316 .. .3162: the point at fppi .02 -> miss .7; ref .5623 -> .4; ref 1 -> .1
    expected = gm([1, 1, 0.7, 0.7, 0.7, 0.7, 0.7, 0.4, 0.1])
    assert log_average_miss_rate(fppi, recall) == pytest.approx(expected, rel=1e-12)


def test_curve_flat_and_beyond_one():
    # the last point at fppi 2 is never used; recall 0.5 at every reference
    assert log_average_miss_rate([0.0, 0.05, 2.0], [0.5, 0.5, 0.8]) == pytest.approx(0.5, rel=1e-12)


def test_curve_points_exactly_on_references():
    # fppi exactly 0.01 and 0.1 count as "<= ref"
    expected = gm([0.8] * 4 + [0.6] * 5)
    assert log_average_miss_rate([0.01, 0.1], [0.2, 0.4]) == pytest.approx(expected, rel=1e-12)
    assert miss_rate_at([0.01, 0.1], [0.2, 0.4], 0.1) == pytest.approx(0.6)
    assert miss_rate_at([0.01, 0.1], [0.2, 0.4], 0.099) == pytest.approx(0.8)
    assert miss_rate_at([0.5], [0.9], 0.1) == 1.0


def test_matlab_behaviour_not_citypersons_quirk():
    # one point at fppi 0.5: MATLAB uses recall 0 below it; CityPersons' python would use recall[-1]=0.9
    # everywhere (MR 0.1). We follow MATLAB: seven misses of 1, two of 0.1.
    assert log_average_miss_rate([0.5], [0.9]) == pytest.approx(0.1 ** (2 / 9), rel=1e-12)


def test_curve_validation():
    with pytest.raises(ValueError):
        log_average_miss_rate([0.5, 0.1], [0.1, 0.2])
    with pytest.raises(ValueError):
        log_average_miss_rate([0.1], [0.1, 0.2])


# ------------------------------------------------------------------------------------------------
# evaluate_mr
# ------------------------------------------------------------------------------------------------


def test_perfect_detection_and_no_detection():
    gt = {"a": img([PED])}
    res = evaluate_mr(gt, {"a": det([PED], [0.9])})
    assert res["MR-2 Reasonable"] == 0.0 and res["MR-2 All"] == 0.0
    assert res["MR@FPPI0.1 Reasonable"] == 0.0
    assert res["AP50"] == pytest.approx(1.0)
    # a 100 px fully visible pedestrian is outside Small (50-75) and Heavy (vis .2-.65): nothing to find
    assert math.isnan(res["MR-2 Small"]) and math.isnan(res["MR-2 Heavy"])
    res = evaluate_mr(gt, {})
    assert res["MR-2 Reasonable"] == 1.0 and res["MR@FPPI0.1 Reasonable"] == 1.0 and res["AP50"] == 0.0
    assert set(res) == {
        "MR-2 Reasonable",
        "MR-2 Small",
        "MR-2 Heavy",
        "MR-2 All",
        "MR@FPPI0.1 Reasonable",
        "AP50",
    }


def test_fppi_pooled_over_images():
    gt = {k: img([PED]) for k in "abcd"}
    dets = {
        "a": det([PED], [0.9]),
        "b": det([PED], [0.8]),
        "c": det([[200, 0, 240, 100]], [0.85]),  # FP
    }
    res = evaluate_mr(gt, dets, setups=("reasonable",))
    # score order: TP .9, FP .85, TP .8 -> fppi [0, .25, .25], recall [.25, .25, .5]
    # refs <= .1778 (six): recall .25; refs .3162, .5623, 1: recall .5
    assert res["MR-2 Reasonable"] == pytest.approx(gm([0.75] * 6 + [0.5] * 3), rel=1e-12)
    assert res["MR@FPPI0.1 Reasonable"] == pytest.approx(0.75)
    # precision [1, .5, 2/3] -> all-point AP = .25 * 1 + .25 * 2/3
    assert res["AP50"] == pytest.approx(0.25 + 0.25 * 2 / 3)


def test_ignore_region_absorbs_many_detections():
    region = [100, 0, 300, 200]
    inside = [[110, 10, 150, 110], [160, 20, 200, 120], [220, 50, 260, 150]]
    dets = {"a": det(inside + [PED], [0.99, 0.98, 0.97, 0.5])}
    with_region = evaluate_mr({"a": img([PED, region], ignore=[False, True])}, dets, setups=("reasonable",))
    assert with_region["MR-2 Reasonable"] == 0.0  # the three detections are ignored, not FP
    without = evaluate_mr({"a": img([PED])}, dets, setups=("reasonable",))
    # three FPs before the TP: fppi [1, 2, 3, 3], recall [0, 0, 0, 1]: recall 0 at every reference
    assert without["MR-2 Reasonable"] == 1.0


def test_ignore_absorption_uses_intersection_over_detection_area():
    region = [100, 0, 300, 200]
    gt = {"a": img([PED, [0, 300, 40, 400], region], ignore=[False, False, True])}
    half_in = [250, 0, 350, 100]  # IoA exactly 0.5 -> absorbed
    mostly_out = [260, 0, 360, 100]  # IoA 0.4 -> FP
    res_half = evaluate_mr(gt, {"a": det([half_in, PED], [0.9, 0.5])}, setups=("reasonable",))
    res_out = evaluate_mr(gt, {"a": det([mostly_out, PED], [0.9, 0.5])}, setups=("reasonable",))
    assert res_half["MR-2 Reasonable"] == pytest.approx(0.5)  # recall 1/2 at every reference
    # FP first: fppi [1, 1], recall [0, .5] -> miss 1 at eight references, .5 at fppi 1
    assert res_out["MR-2 Reasonable"] == pytest.approx(gm([1] * 8 + [0.5]), rel=1e-12)


def test_regular_match_wins_and_duplicates_fall_into_ignore_region():
    gts = [PED, [200, 0, 240, 100], [400, 0, 440, 100]]
    region = [-10, -10, 100, 120]  # covers the first pedestrian only
    dets = {"a": det([[0, 0, 40, 60], [0, 0, 40, 95], [200, 0, 240, 100]], [0.9, 0.8, 0.7])}
    # d1: IoU .6 with the first pedestrian and IoA 1 with the region: the regular match wins (TP)
    # d2: that pedestrian is taken, so the region absorbs it; d3: TP; third pedestrian missed
    res = evaluate_mr({"a": img(gts + [region], ignore=[0, 0, 0, 1])}, dets, setups=("reasonable",))
    assert res["MR-2 Reasonable"] == pytest.approx(1 / 3)
    # without the region d2 is a duplicate FP: fppi [0, 1, 1], recall [1/3, 1/3, 2/3]
    res = evaluate_mr({"a": img(gts)}, dets, setups=("reasonable",))
    assert res["MR-2 Reasonable"] == pytest.approx(gm([2 / 3] * 8 + [1 / 3]), rel=1e-12)


@pytest.mark.parametrize(("h", "kept"), [(40.0, True), (39.9, False)])
def test_detection_height_filter_lower(h, kept):
    gt = {"a": img([PED, [200, 0, 240, 100]])}
    fp = [500, 0, 520, h]
    res = evaluate_mr(gt, {"a": det([fp, PED], [0.95, 0.9])}, setups=("reasonable",))
    # kept: fppi [1, 1], recall [0, .5]; dropped (h < 50 / 1.25): recall .5 at every reference
    assert res["MR-2 Reasonable"] == pytest.approx(gm([1] * 8 + [0.5]) if kept else 0.5, rel=1e-12)
    assert res["AP50"] == pytest.approx(0.25 if kept else 0.5)


@pytest.mark.parametrize(("h", "kept"), [(93.7, True), (93.75, False)])
def test_detection_height_filter_upper_small(h, kept):
    small = [0, 0, 24, 60]
    gt = {"a": img([small, [200, 0, 224, 60]])}
    fp = [500, 0, 540, h]
    res = evaluate_mr(gt, {"a": det([fp, small], [0.95, 0.9])}, setups=("small",))
    assert res["MR-2 Small"] == pytest.approx(gm([1] * 8 + [0.5]) if kept else 0.5, rel=1e-12)


def test_gt_outside_setup_becomes_ignore():
    short = [0, 0, 20, 45]  # 45 px: ignore in Reasonable, regular in All (>= 20)
    gt = {"a": img([PED, short])}
    dets = {"a": det([PED, short], [0.9, 0.95])}
    res = evaluate_mr(gt, dets, setups=("reasonable", "all"))
    # Reasonable: the short detection (45 >= 40 passes the filter) is absorbed by the ignored GT
    assert res["MR-2 Reasonable"] == 0.0
    assert res["MR-2 All"] == 0.0
    # an explicitly ignored GT never counts
    res = evaluate_mr({"a": img([PED, [200, 0, 240, 100]], ignore=[0, 1])}, {"a": det([PED], [0.9])})
    assert res["MR-2 Reasonable"] == 0.0


def test_visibility_setups():
    heavy = [0, 0, 40, 100]
    vis_heavy = [0, 0, 40, 50]  # visibility 0.5
    edge = [100, 0, 140, 100]
    vis_edge = [100, 0, 140, 65]  # visibility exactly 0.65: in Reasonable and in Heavy (inclusive)
    clear = [200, 0, 240, 100]
    gt = {"a": img([heavy, edge, clear], visible=[vis_heavy, vis_edge, [0, 0, 0, 0]])}  # zero row = visible
    dets = {"a": det([heavy], [0.9])}
    res = evaluate_mr(gt, dets, setups=("reasonable", "heavy", "all"))
    # Heavy: regular = heavy, edge; found 1 of 2. Reasonable: regular = edge, clear; the heavy detection
    # is absorbed by the (ignored) heavy GT, recall 0. All: 1 of 3.
    assert res["MR-2 Heavy"] == pytest.approx(0.5)
    assert res["MR-2 Reasonable"] == 1.0
    assert res["MR-2 All"] == pytest.approx(2 / 3)


def test_max_dets_and_errors():
    gt = {"a": img([PED])}
    fps = [[100 + 50 * i, 0, 140 + 50 * i, 100] for i in range(3)]
    res = evaluate_mr(gt, {"a": det(fps + [PED], [0.9, 0.8, 0.7, 0.1])}, setups=("reasonable",), max_dets=3)
    assert res["MR-2 Reasonable"] == 1.0  # the TP is cut by max_dets
    with pytest.raises(ValueError):
        evaluate_mr(gt, {"zzz": det([PED], [0.9])})
    with pytest.raises(ValueError):
        evaluate_mr(gt, {}, setups=("occluded",))


def test_aspect_ratio_standardisation():
    gt = {"a": img([[0, 0, 40, 100]])}
    narrow = [10, 0, 30, 100]  # IoU 0.5 with the GT as is; identical to it after resizing both to 0.41 h
    plain = evaluate_mr(gt, {"a": det([narrow], [0.9])}, setups=("reasonable",))
    assert plain["MR-2 Reasonable"] == 0.0
    wide = [0, 0, 100, 100]  # IoU .4 as is, 1 after standardisation
    assert evaluate_mr(gt, {"a": det([wide], [0.9])}, setups=("reasonable",))["MR-2 Reasonable"] == 1.0
    res = evaluate_mr(gt, {"a": det([[-30, 0, 70, 100]], [0.9])}, setups=("reasonable",), aspect_ratio=0.41)
    assert res["MR-2 Reasonable"] == 0.0
