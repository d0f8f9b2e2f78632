"""DOTA devkit metric: polygon IoU against shapely, matching rules and AP on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.metrics.dota import (
    class_groups,
    evaluate_dota,
    group_ap,
    hbb_iou,
    map_over_thresholds,
    poly_iou,
    poly_iou_pairs,
    tail_recall,
    voc_ap,
)

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def rotated_rect(cx, cy, w, h, theta):
    dx = np.array([-0.5, 0.5, 0.5, -0.5]) * w
    dy = np.array([-0.5, -0.5, 0.5, 0.5]) * h
    c, s = math.cos(theta), math.sin(theta)
    return np.stack([cx + c * dx - s * dy, cy + s * dx + c * dy], axis=1).reshape(8)


def convex_quad(cx, cy, ax, ay, rot, angles):
    """Four points on an ellipse, in angular order: always a convex quadrilateral."""
    t = np.sort(np.asarray(angles, dtype=np.float64))
    x, y = ax * np.cos(t), ay * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1).reshape(8)


def shapely_iou(a, b):
    pa = shapely.polygons(np.asarray(a, dtype=np.float64).reshape(-1, 4, 2))
    pb = shapely.polygons(np.asarray(b, dtype=np.float64).reshape(-1, 4, 2))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def shapely_iou_pairs(a, b):
    pa = shapely.polygons(np.asarray(a, dtype=np.float64).reshape(-1, 4, 2))
    pb = shapely.polygons(np.asarray(b, dtype=np.float64).reshape(-1, 4, 2))
    inter = shapely.area(shapely.intersection(pa, pb))
    return inter / (shapely.area(pa) + shapely.area(pb) - inter)


def box_poly(x1, y1, x2, y2):
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def random_pairs(rng, n):
    """n rotated-rectangle pairs and n convex-quad pairs, centres close enough to overlap often."""
    a, b = [], []
    for _ in range(n):
        c = rng.uniform(0, 50, 2)
        a.append(rotated_rect(*c, *rng.uniform(2, 40, 2), rng.uniform(-np.pi, np.pi)))
        c2 = c + rng.uniform(-20, 20, 2)
        b.append(rotated_rect(*c2, *rng.uniform(2, 40, 2), rng.uniform(-np.pi, np.pi)))
    for _ in range(n):
        for out in (a, b):
            ang = np.cumsum(rng.uniform(0.3, 2.0, 4))
            ang = ang / ang[-1] * (2 * np.pi - 0.3) + rng.uniform(0, 2 * np.pi)
            out.append(
                convex_quad(*rng.uniform(0, 30, 2), *rng.uniform(2, 25, 2), rng.uniform(0, np.pi), ang)
            )
    return np.array(a), np.array(b)


def gt_image(boxes, labels, difficult=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {
        "boxes": boxes,
        "polygons": np.array([box_poly(*b) for b in boxes]).reshape(-1, 8),
        "labels": np.asarray(labels, dtype=np.int64),
        "difficult": np.asarray(difficult if difficult is not None else [0] * len(labels), dtype=np.int64),
    }


# ------------------------------------------------------------------------------------------------
# polygon IoU
# ------------------------------------------------------------------------------------------------


def test_poly_iou_matches_shapely_1000_pairs():
    rng = np.random.default_rng(12345)
    a, b = random_pairs(rng, 500)
    ref = shapely_iou_pairs(a, b)
    got = poly_iou_pairs(a, b)
    assert (ref > 0).mean() > 0.3  # the set actually exercises the clipper
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    # the matrix form, on a 40 x 50 block of the same quads
    np.testing.assert_allclose(poly_iou(a[:40], b[:50]), shapely_iou(a[:40], b[:50]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(poly_iou(a[-40:], b[-50:]), shapely_iou(a[-40:], b[-50:]), rtol=0, atol=1e-9)


def test_poly_iou_large_coordinates_dota_tile():
    rng = np.random.default_rng(7)
    a = np.array(
        [
            rotated_rect(*rng.uniform(3000, 4000, 2), *rng.uniform(10, 80, 2), rng.uniform(0, 3))
            for _ in range(60)
        ]
    )
    b = a.copy()  # translated copies: large coordinates, IoU mostly in (0, 1)
    b[:, 0::2] += rng.normal(0, 5, (60, 1))
    b[:, 1::2] += rng.normal(0, 5, (60, 1))
    np.testing.assert_allclose(poly_iou(a, b), shapely_iou(a, b), rtol=0, atol=1e-9)


_coord = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
_size = st.floats(0.5, 40, allow_nan=False, allow_infinity=False)
_angle = st.floats(-math.pi, math.pi, allow_nan=False, allow_infinity=False)
_rect = st.builds(rotated_rect, _coord, _coord, _size, _size, _angle)
_gaps = st.lists(st.floats(0.3, 2.0), min_size=4, max_size=4)


@st.composite
def _quad(draw):
    gaps = np.cumsum(draw(_gaps))
    ang = gaps / gaps[-1] * (2 * math.pi - 0.3) + draw(_angle)
    return convex_quad(draw(_coord), draw(_coord), draw(_size), draw(_size), draw(_angle), ang)


_any_quad = st.one_of(_rect, _quad())


@settings(max_examples=150, deadline=None, database=None)
@given(_any_quad, _any_quad, st.booleans(), st.integers(0, 3))
def test_poly_iou_property_vs_shapely(a, b, reverse, shift):
    ref = shapely_iou(a, b)[0, 0]
    # any starting corner and either orientation
    qb = np.roll(b.reshape(4, 2), shift, axis=0)
    if reverse:
        qb = qb[::-1]
    got = poly_iou(a[None], qb.reshape(1, 8))[0, 0]
    assert abs(got - ref) <= 1e-9
    assert abs(poly_iou(qb.reshape(1, 8), a[None])[0, 0] - ref) <= 1e-9
    assert 0.0 <= got <= 1.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(box_poly(0, 0, 10, 10), box_poly(0, 0, 10, 10), 1.0, id="identical"),
        pytest.param(
            rotated_rect(5, 7, 8, 3, 0.7), rotated_rect(5, 7, 8, 3, 0.7), 1.0, id="identical-rotated"
        ),
        pytest.param(
            rotated_rect(5, 7, 8, 3, 0.7), rotated_rect(5, 7, 3, 8, 0.7 + math.pi / 2), 1.0, id="w-h-swap"
        ),
        pytest.param(box_poly(0, 0, 1, 1), box_poly(1, 0, 2, 1), 0.0, id="touching-edge"),
        pytest.param(box_poly(0, 0, 1, 1), box_poly(1, 1, 2, 2), 0.0, id="touching-corner"),
        pytest.param([1, 0, 0, 1, -1, 0, 0, -1], [2, 1, 1, 2, 0, 1, 1, 0], 0.0, id="diamonds-sharing-edge"),
        pytest.param(box_poly(0, 0, 10, 10), box_poly(2, 2, 4, 4), 0.04, id="containment"),
        pytest.param(box_poly(2, 2, 4, 4), box_poly(0, 0, 10, 10), 0.04, id="contained"),
        pytest.param(box_poly(0, 0, 1, 1), box_poly(5, 5, 6, 6), 0.0, id="disjoint"),
        pytest.param(box_poly(0, 0, 2, 2), box_poly(1, 0, 3, 2), 1.0 / 3.0, id="shared-collinear-edges"),
        pytest.param(
            box_poly(-1, -1, 1, 1),
            [math.sqrt(2), 0, 0, math.sqrt(2), -math.sqrt(2), 0, 0, -math.sqrt(2)],
            1.0 / math.sqrt(2),  # octagon 8(sqrt2 - 1) over union 16 - 8 sqrt2
            id="square-vs-45deg-square",
        ),
        pytest.param([0, 0, 1, 1, 2, 2, 3, 3], box_poly(0, 0, 3, 3), 0.0, id="collinear-zero-area"),
        pytest.param([1, 1] * 4, box_poly(0, 0, 3, 3), 0.0, id="point-zero-area"),
        pytest.param([1, 1] * 4, [1, 1] * 4, 0.0, id="both-zero-area"),
    ],
)
def test_poly_iou_degenerate(a, b, expected):
    assert poly_iou([a], [b])[0, 0] == pytest.approx(expected, abs=1e-12)
    assert poly_iou_pairs([a], [b])[0] == pytest.approx(expected, abs=1e-12)
    if expected > 0:
        assert poly_iou([a], [b])[0, 0] == pytest.approx(shapely_iou([a], [b])[0, 0], abs=1e-12)


def test_poly_iou_shapes_and_orientation():
    a = np.array([box_poly(0, 0, 2, 2), rotated_rect(1, 1, 2, 1, 0.3)])
    b = np.array([box_poly(1, 1, 3, 3), box_poly(10, 10, 11, 11), rotated_rect(1, 2, 1, 3, 1.0)])
    m = poly_iou(a, b)
    assert m.shape == (2, 3) and m.dtype == np.float64
    cw = a.reshape(2, 4, 2)[:, ::-1].reshape(2, 8)
    np.testing.assert_allclose(poly_iou(cw, b), m, atol=1e-15)
    assert m[0, 0] == pytest.approx(1 / 7)
    assert poly_iou(np.zeros((0, 8)), b).shape == (0, 3)
    assert poly_iou(a, np.zeros((0, 8))).shape == (2, 0)
    assert poly_iou_pairs(np.zeros((0, 8)), np.zeros((0, 8))).shape == (0,)
    with pytest.raises(ValueError):
        poly_iou_pairs(a, b)


def test_aabb_prefilter_matches_brute_force():
    from domains.geometry import _overlapping_pairs

    rng = np.random.default_rng(3)
    for _ in range(50):
        n, m = rng.integers(1, 40, 2)
        boxes = []
        for k in (n, m):
            c = rng.integers(-6, 6, (k, 4)).astype(np.float64)  # integer corners: ties and zero widths
            boxes.append(
                np.concatenate([np.minimum(c[:, :2], c[:, 2:]), np.maximum(c[:, :2], c[:, 2:])], axis=1)
            )
        ba, bb = boxes
        brute = (
            (ba[:, None, 0] < bb[None, :, 2])
            & (bb[None, :, 0] < ba[:, None, 2])
            & (ba[:, None, 1] < bb[None, :, 3])
            & (bb[None, :, 1] < ba[:, None, 3])
        )
        ia, ib = _overlapping_pairs(ba, bb)
        got = np.zeros_like(brute)
        got[ia, ib] = True
        assert np.array_equal(got, brute) and len(ia) == brute.sum()


def test_hbb_iou_continuous_and_plus_one():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [0, 0, 10, 5], [20, 20, 30, 30], [3, 3, 3, 8]]
    np.testing.assert_allclose(hbb_iou(a, b)[0], [50 / 150, 0.5, 0.0, 0.0])
    # +1 pixel areas: 11x11 boxes overlapping on 6x11 pixels
    assert hbb_iou(a, b, plus_one=True)[0, 0] == pytest.approx(66 / (121 + 121 - 66))
    assert hbb_iou([[0, 0, 9, 9]], [[0, 0, 9, 4]], plus_one=True)[0, 0] == 0.5


# ------------------------------------------------------------------------------------------------
# AP
# ------------------------------------------------------------------------------------------------


def test_voc_ap_11_point_known_curve():
    rec = [0.25, 0.5, 0.5, 0.75, 0.875]
    prec = [1.0, 1.0, 0.5, 0.6, 0.5]
    # t = 0 .. 0.5 -> 1 (six points); t = 0.6, 0.7 -> 0.6; t = 0.8 -> 0.5; t = 0.9, 1.0 -> 0
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 0.6 + 0.6 + 0.5) / 11, abs=1e-15)
    # all-point: 0.25*1 + 0.25*1 + 0.25*0.6 + 0.125*0.5
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.7125, abs=1e-15)


def test_voc_ap_devkit_threshold_quirk_and_edges():
    # the devkit's np.arange(0, 1.1, 0.1) has 0.30000000000000004: a recall of exactly 0.3 misses it
    assert voc_ap([0.3], [1.0]) == pytest.approx(3 / 11, abs=1e-15)
    assert voc_ap([0.25], [1.0]) == pytest.approx(3 / 11, abs=1e-15)
    assert voc_ap([0.5], [1.0]) == pytest.approx(6 / 11, abs=1e-15)
    assert voc_ap([1.0], [1.0]) == pytest.approx(1.0)
    assert voc_ap([], []) == 0.0
    assert voc_ap([], [], use_07_metric=False) == 0.0


# ------------------------------------------------------------------------------------------------
# evaluate_dota
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["task1", "task2"])
def test_duplicate_detection_is_false_positive(task):
    gt = {"img": gt_image([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 0])}
    dets = {0: [("img", 0.9, [0, 0, 10, 10]), ("img", 0.8, [0, 0, 10, 10]), ("img", 0.7, [20, 0, 30, 10])]}
    res = evaluate_dota(gt, dets, ["plane"], task=task)
    # tp = [1, 0, 1], fp = [0, 1, 0] -> rec = [.5, .5, 1], prec = [1, .5, 2/3]
    # 11-point: t <= 0.5 -> 1 (six points), t >= 0.6 -> 2/3 (five points)
    assert res["per_class"]["plane"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert res["mAP50"] == pytest.approx(28 / 33)
    assert res["per_class_recall"]["plane"] == 1.0
    assert "devkit" in res["protocol"]
    # without the duplicate the class is perfect
    dets1 = {0: [dets[0][0], dets[0][2]]}
    assert evaluate_dota(gt, dets1, ["plane"], task=task)["mAP50"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("version", "expected", "npos"), [("1.0", 0.5, 1), ("1.5", 2 / 3, 2), ("2.0", 2 / 3, 2)]
)
@pytest.mark.parametrize("task", ["task1", "task2"])
def test_difficult_match(task, version, expected, npos):
    gt = {"img": gt_image([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 0], difficult=[1, 0])}
    dets = {
        0: [
            ("img", 0.9, [100, 100, 110, 110]),  # FP
            ("img", 0.8, [0, 0, 10, 10]),  # on the difficult GT
            ("img", 0.7, [20, 0, 30, 10]),  # TP
        ]
    }
    res = evaluate_dota(gt, dets, ["ship"], task=task, version=version)
    # v1.0: the difficult match is neither TP nor FP, npos = 1: tp = [0, 0, 1], fp = [1, 1, 1] cumulated
    #       -> rec = [0, 0, 1], prec = [0, 0, 1/2] -> AP = 0.5 (it would be 1/3 were it an FP)
    # v1.5: a regular TP, npos = 2: rec = [0, .5, 1], prec = [0, 1/2, 2/3] -> AP = 2/3
    assert res["per_class"]["ship"] == pytest.approx(expected)
    assert res["npos"]["ship"] == npos


@pytest.mark.parametrize("task", ["task1", "task2"])
def test_iou_exactly_half_is_not_a_match(task):
    gt = {"img": gt_image([[0, 0, 10, 10]], [0])}
    res = evaluate_dota(gt, {0: [("img", 0.9, [0, 0, 10, 5])]}, ["car"], task=task)  # IoU 50/100
    assert res["mAP50"] == 0.0
    res = evaluate_dota(gt, {0: [("img", 0.9, [0, 0, 10, 5.5])]}, ["car"], task=task)  # IoU 0.55
    assert res["mAP50"] == pytest.approx(1.0)


def test_iou_exactly_half_plus_one_convention():
    gt = {"img": gt_image([[0, 0, 9, 9]], [0])}  # 10 x 10 pixels
    dets = {0: [("img", 0.9, [0, 0, 9, 4])]}  # 10 x 5 pixels: IoU 0.5 with +1, 0.444 without
    assert evaluate_dota(gt, dets, ["car"], task="task2", plus_one=True)["mAP50"] == 0.0
    dets = {0: [("img", 0.9, [0, 0, 9, 5])]}  # 10 x 6 pixels: IoU 0.6 with +1, 5/9 without
    assert evaluate_dota(gt, dets, ["car"], task="task2", plus_one=True)["mAP50"] == pytest.approx(1.0)
    assert "+1" in evaluate_dota(gt, dets, ["car"], task="task2", plus_one=True)["protocol"]


def test_class_without_detections_and_class_without_gt():
    gt = {
        "a": gt_image([[0, 0, 10, 10]], [0]),
        "b": gt_image([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1]),
    }
    dets = {0: [("a", 0.5, [0, 0, 10, 10])]}
    res = evaluate_dota(gt, dets, ["plane", "ship", "tennis-court"])
    assert res["per_class"]["plane"] == pytest.approx(1.0)
    assert res["per_class"]["ship"] == 0.0  # ground truth but no detection
    assert math.isnan(res["per_class"]["tennis-court"])  # no ground truth: left out of the mean
    assert res["mAP50"] == pytest.approx(0.5)


def test_detections_on_other_images_and_labels():
    gt = {"a": gt_image([[0, 0, 10, 10]], [0]), "b": gt_image([], [])}
    dets = {0: [("b", 0.9, [0, 0, 10, 10]), ("a", 0.1, [0, 0, 10, 10])]}
    # FP first then TP: rec = [0, 1], prec = [0, 0.5] -> AP 0.5
    assert evaluate_dota(gt, dets, ["plane"])["mAP50"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        evaluate_dota(gt, {0: [("zzz", 0.9, [0, 0, 1, 1])]}, ["plane"])
    with pytest.raises(ValueError):
        evaluate_dota(gt, dets, ["plane"], task="task3")
    with pytest.raises(ValueError):
        evaluate_dota(gt, dets, ["plane"], version="1.2")


def test_task1_rotated_match_and_name_keys():
    square = box_poly(-1, -1, 1, 1)
    gt = {"img": {"polygons": np.array([square]), "labels": np.array([0]), "difficult": np.array([0])}}
    diamond = [math.sqrt(2), 0, 0, math.sqrt(2), -math.sqrt(2), 0, 0, -math.sqrt(2)]
    res = evaluate_dota(gt, {"plane": [("img", 0.9, diamond)]}, ["plane"], task="task1")
    assert res["mAP50"] == pytest.approx(1.0)  # IoU 1/sqrt(2) > 0.5
    res = evaluate_dota(gt, {0: [("img", 0.9, diamond)]}, ["plane"], task="task1", iou_thresh=0.75)
    assert res["mAP"] == 0.0 and "mAP50" not in res
    # a box and a polygon for the same class: the box is converted to a polygon (and vice versa for task2)
    mixed = {0: [("img", 0.9, [-1, -1, 1, 1]), ("img", 0.8, diamond)]}
    for task in ("task1", "task2"):
        res = evaluate_dota(gt, mixed, ["plane"], task=task)
        assert res["per_class_recall"]["plane"] == 1.0 and res["mAP50"] == pytest.approx(1.0)


def test_map_over_thresholds():
    gt = {"img": gt_image([[0, 0, 100, 100]], [0])}
    dets = {0: [("img", 0.9, [0, 0, 100, 72])]}  # IoU 0.72: matched at 0.50 .. 0.70, not at 0.75 .. 0.95
    for task in ("task1", "task2"):
        res = map_over_thresholds(gt, dets, ["plane"], task=task)
        assert res["mAP"] == pytest.approx(0.5)
        assert len(res["per_threshold"]) == 10
        assert res["per_threshold"][0.7] == pytest.approx(1.0) and res["per_threshold"][0.75] == 0.0
        assert res["per_class"]["plane"] == pytest.approx(0.5)
    one = map_over_thresholds(gt, dets, ["plane"], thresholds=[0.5])
    assert one["mAP"] == evaluate_dota(gt, dets, ["plane"])["mAP50"]


# ------------------------------------------------------------------------------------------------
# long tail
# ------------------------------------------------------------------------------------------------


def test_class_groups_terciles_and_ties():
    assert class_groups({"a": 100, "b": 50, "c": 10}) == {"a": "head", "b": "middle", "c": "tail"}
    g = class_groups({"a": 10, "b": 10, "c": 5, "d": 5, "e": 1, "f": 1})
    assert g == {"a": "head", "b": "head", "c": "middle", "d": "middle", "e": "tail", "f": "tail"}
    # a tie straddling the head boundary goes to the more frequent group
    g = class_groups({"a": 10, "b": 5, "c": 5, "d": 1})
    assert g == {"a": "head", "b": "head", "c": "head", "d": "tail"}
    counts = {f"c{i}": 100 - i for i in range(15)}
    assert sorted(class_groups(counts).values()).count("tail") == 5


def test_group_ap_skips_nan():
    per = {"a": 1.0, "b": 0.5, "c": float("nan"), "d": 0.2, "e": 0.4}
    groups = {"a": "head", "b": "middle", "c": "tail", "d": "tail", "e": "tail"}
    out = group_ap(per, groups)
    assert out["head"] == 1.0 and out["middle"] == 0.5
    assert out["tail"] == pytest.approx(0.3)
    assert math.isnan(group_ap({"a": 1.0}, {"a": "head"})["tail"])


def test_tail_recall():
    gt = {
        "i1": gt_image([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0, 1, 1]),
        "i2": gt_image([[0, 0, 10, 10]], [1]),
    }
    dets = {
        0: [("i1", 0.9, [0, 0, 10, 10])],
        1: [
            ("i1", 0.8, [20, 0, 30, 10]),  # TP
            ("i1", 0.7, [40, 0, 50, 5]),  # IoU 0.5 exactly: not a match
            ("i2", 0.01, [0, 0, 10, 9]),  # low score still counts: IoU 0.9
        ],
    }
    groups = {"plane": "head", "ship": "tail"}
    assert tail_recall(gt, dets, ["plane", "ship"], groups) == pytest.approx(2 / 3)
    assert tail_recall(gt, dets, ["plane", "ship"], {"plane": "tail", "ship": "head"}) == pytest.approx(1.0)
    assert math.isnan(tail_recall(gt, dets, ["plane", "ship"], {"plane": "head", "ship": "head"}))


# ------------------------------------------------------------------------------------------------
# against a literal per-detection loop (the devkit's structure, written out naively)
# ------------------------------------------------------------------------------------------------


def naive_devkit_ap(gt, dets_c, c, task, version):
    recs = {}
    for image_id, rec in gt.items():
        sel = rec["labels"] == c
        diff = rec["difficult"][sel].astype(bool) if version == "1.0" else np.zeros(int(sel.sum()), bool)
        geo = rec["polygons"][sel] if task == "task1" else rec["boxes"][sel]
        recs[image_id] = {"geo": geo, "difficult": diff, "det": [False] * int(sel.sum())}
    npos = sum(int((~r["difficult"]).sum()) for r in recs.values())
    order = sorted(range(len(dets_c)), key=lambda i: -dets_c[i][1])  # Python's sort is stable
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, i in enumerate(order):
        image_id, _, g = dets_c[i]
        r = recs[image_id]
        ovmax, jmax = -np.inf, -1
        if len(r["geo"]):
            if task == "task1":
                ov = shapely_iou([g], r["geo"])[0]
            else:
                ov = hbb_iou([g], r["geo"])[0]
            ovmax, jmax = ov.max(), int(ov.argmax())
        if ovmax > 0.5:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1
                    r["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    return voc_ap(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps))


def enclosing_box(poly):
    p = np.asarray(poly).reshape(-1, 4, 2)
    return np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1)


@pytest.mark.parametrize("version", ["1.0", "1.5"])
@pytest.mark.parametrize("task", ["task1", "task2"])
def test_evaluate_dota_matches_naive_loop(task, version):
    rng = np.random.default_rng(11)
    gt, dets = {}, {0: [], 1: [], 2: []}
    n_tp_like = 0
    for i in range(12):
        n = int(rng.integers(0, 8))
        params = [(*rng.uniform(0, 120, 2), *rng.uniform(8, 40, 2), rng.uniform(0, np.pi)) for _ in range(n)]
        polys = np.array([rotated_rect(*q) for q in params]).reshape(-1, 8)
        labels = rng.integers(0, 3, n)
        difficult = (rng.random(n) < 0.3).astype(int)
        gt[i] = {"polygons": polys, "boxes": enclosing_box(polys), "labels": labels, "difficult": difficult}
        for k in range(n):
            for _ in range(int(rng.integers(0, 3))):  # 0-2 detections per object: misses and duplicates
                cx, cy, w, h, th = params[k]
                q = rotated_rect(
                    cx + rng.normal(0, 2),
                    cy + rng.normal(0, 2),
                    w * rng.uniform(0.8, 1.2),
                    h * rng.uniform(0.8, 1.2),
                    th + rng.normal(0, 0.1),
                )
                geo = q if task == "task1" else enclosing_box(q)[0]
                cls = int(labels[k]) if rng.random() < 0.8 else int(rng.integers(0, 3))
                dets[cls].append((i, float(rng.random()), geo))
                n_tp_like += 1
        for _ in range(3):  # background false positives
            q = rotated_rect(*rng.uniform(0, 120, 2), *rng.uniform(8, 40, 2), rng.uniform(0, np.pi))
            dets[int(rng.integers(0, 3))].append(
                (i, float(rng.random()), q if task == "task1" else enclosing_box(q)[0])
            )
    assert n_tp_like > 20
    res = evaluate_dota(gt, dets, ["a", "b", "c"], task=task, version=version)
    for c, name in enumerate(["a", "b", "c"]):
        expected = naive_devkit_ap(gt, dets[c], c, task, version)
        assert 0.1 < expected < 1.0  # a non-trivial curve
        assert res["per_class"][name] == pytest.approx(expected, abs=1e-12)
