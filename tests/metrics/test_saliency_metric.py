"""Saliency / foreground-map metrics on small hand-computed masks."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from benchmark.metrics.saliency import (
    adaptive_f,
    evaluate_saliency,
    f_measure_curve,
    mae,
    max_f,
    mean_f,
    pixel_accuracy,
    resize_map,
    s_measure,
)

EPS = np.finfo(np.float64).eps

# 2 x 2 example: values chosen so that floor(255 * v) is exact (255, 127, 63, 0)
PRED = np.array([[1.0, 0.5], [0.25, 0.0]])
GT = np.array([[1, 1], [0, 0]], dtype=bool)


def fb(p, r):
    return 1.3 * p * r / (0.3 * p + r)


def test_mae_and_pixel_accuracy():
    assert mae(PRED, GT) == pytest.approx((0 + 0.5 + 0.25 + 0) / 4)
    assert pixel_accuracy(PRED, GT) == 1.0  # 0.5 counts as foreground
    assert pixel_accuracy(np.array([[0.49, 0.5], [0.5, 0.0]]), GT) == 0.5
    assert mae(GT.astype(float), GT) == 0.0


def test_f_measure_curve_by_hand():
    curve = f_measure_curve(PRED, GT)
    assert curve.shape == (256,)
    # t = 255..128 (128 thresholds): only the 255 pixel -> P 1, R 1/2
    np.testing.assert_allclose(curve[:128], fb(1, 0.5))
    # t = 127..64 (64): both foreground pixels -> F 1
    np.testing.assert_allclose(curve[128:192], 1.0)
    # t = 63..1 (63): three pixels -> P 2/3, R 1
    np.testing.assert_allclose(curve[192:255], fb(2 / 3, 1))
    # t = 0: every pixel -> P 1/2
    assert curve[255] == pytest.approx(fb(0.5, 1))
    assert max_f(PRED, GT) == pytest.approx(1.0)
    expected_mean = (128 * 0.8125 + 64 * 1.0 + 63 * fb(2 / 3, 1) + fb(0.5, 1)) / 256
    assert mean_f(PRED, GT) == pytest.approx(expected_mean, rel=1e-12)


def test_adaptive_f():
    # mean 0.4375 -> threshold 0.875 -> only the 1.0 pixel: P 1, R 1/2 -> 1.3 * 0.5 / 0.8
    assert adaptive_f(PRED, GT) == pytest.approx(0.8125)
    # threshold capped at 1: a map of 0.9 and 1.0 values gives threshold 1
    assert adaptive_f(np.array([[1.0, 0.9], [0.9, 0.9]]), GT) == pytest.approx(fb(1, 0.5))
    # no true positive -> 0
    assert adaptive_f(np.array([[0.0, 0.0], [1.0, 0.0]]), GT) == 0.0
    assert max_f(PRED, np.zeros((2, 2), dtype=bool)) == 0.0


def test_s_measure_special_cases():
    bg = np.zeros((3, 3), dtype=bool)
    p = np.full((3, 3), 0.2)
    assert s_measure(p, bg) == pytest.approx(0.8)  # all background: 1 - mean(pred)
    assert s_measure(p, ~bg) == pytest.approx(0.2)  # all foreground: mean(pred)
    assert s_measure(GT.astype(float), GT) == pytest.approx(1.0, abs=1e-12)


def test_s_measure_uniform_prediction():
    gt = np.zeros((4, 4), dtype=bool)
    gt[:2, :2] = True  # centroid 0.5 (0-based) -> 1.5 (1-based) -> MATLAB round -> X = Y = 2
    p = np.full((4, 4), 0.5)
    # object: FG and BG both mean 0.5, std 0 -> 2 * .5 / (.25 + 1) = 0.8 each -> 0.8
    # region: the four 2 x 2 quadrants have a constant prediction and a constant mask
    #   -> sigma = 0, alpha = beta = 0 -> 1 each -> 1
    assert s_measure(p, gt) == pytest.approx(0.5 * 0.8 + 0.5 * 1.0, abs=1e-12)
    # one FG pixel more moves the split to X = 2, Y = 1 (rows 0,0,1,1,0 -> 1.4): RB = [1:, 2:] is still
    # constant, RT = [:1, 2:] holds FG (0,2) and BG (0,3) -> alpha 0, beta != 0 (mask varies) -> 0
    gt[0, 2] = True
    lt, rt, lb, rb = 1.0, 0.0, 0.0, 1.0  # LB = [1:, :2] mixes FG (1,0), (1,1) with BG -> 0
    expected_obj = 5 / 16 * 0.8 + 11 / 16 * 0.8
    expected_reg = 2 / 16 * lt + 2 / 16 * rt + 6 / 16 * lb + 6 / 16 * rb
    assert s_measure(p, gt) == pytest.approx(0.5 * expected_obj + 0.5 * expected_reg, abs=1e-12)


def test_s_measure_4x4_by_hand():
    gt = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    p = np.array([[0.9, 0.8, 0.6, 0.1], [0.7, 0.5, 0.2, 0.0], [0.1, 0.0, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0]])

    def obj(values):  # MATLAB std is the sample std
        mu, sd = statistics.mean(values), statistics.stdev(values)
        return 2 * mu / (mu * mu + 1 + sd + EPS)

    fg = [0.9, 0.8, 0.6, 0.7, 0.5]
    bg = [1 - v for v in (0.1, 0.2, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0)]
    s_obj = 5 / 16 * obj(fg) + 11 / 16 * obj(bg)

    def ssim(pv, gv):
        n = len(pv)
        x, y = statistics.mean(pv), statistics.mean(gv)
        sx2 = sum((a - x) ** 2 for a in pv) / (n - 1 + EPS)
        sy2 = sum((b - y) ** 2 for b in gv) / (n - 1 + EPS)
        sxy = sum((a - x) * (b - y) for a, b in zip(pv, gv, strict=True)) / (n - 1 + EPS)
        alpha, beta = 4 * x * y * sxy, (x * x + y * y) * (sx2 + sy2)
        return alpha / (beta + EPS) if alpha != 0 else (1.0 if beta == 0 else 0.0)

    # FG columns 0,1,2,0,1 -> mean 0.8 -> 1.8 (1-based) -> X = 2; rows 0,0,0,1,1 -> 1.4 -> Y = 1
    lt = ssim([0.9, 0.8], [1, 1])  # alpha 0 (sxy 0), beta != 0 -> 0
    rt = ssim([0.6, 0.1], [1, 0])
    lb = ssim([0.7, 0.5, 0.1, 0.0, 0.0, 0.3], [1, 1, 0, 0, 0, 0])
    rb = ssim([0.2, 0.0, 0.0, 0.0, 0.0, 0.0], [0] * 6)  # alpha 0, beta != 0 -> 0
    assert lt == 0.0 and rb == 0.0
    s_reg = 2 / 16 * lt + 2 / 16 * rt + 6 / 16 * lb + 6 / 16 * rb
    assert s_measure(p, gt) == pytest.approx(0.5 * s_obj + 0.5 * s_reg, abs=1e-12)
    assert s_measure(p, gt) == pytest.approx(
        0.644560, abs=1e-6
    )  # worked out on paper: 0.5 * 0.915882 + 0.5 * 0.373237


def test_s_measure_matlab_round_on_half_centroid():
    # FG (0,0), (0,1): column centroid 0.5 -> 1.5 (1-based) -> MATLAB round -> X = 2, so the split is
    # LT = row 0 (alpha 0, beta != 0 -> 0) and LB = row 1 (-> 0), S_region = 0.
    # (Rounding half to even would give X = 1 and S_region = 1.)
    fg_obj = 2 * 0.75 / (0.75**2 + 1 + statistics.stdev([1.0, 0.5]) + EPS)
    bg_obj = 2 * 0.875 / (0.875**2 + 1 + statistics.stdev([0.75, 1.0]) + EPS)
    assert s_measure(PRED, GT) == pytest.approx(0.5 * (0.5 * fg_obj + 0.5 * bg_obj), abs=1e-12)


def test_s_measure_clipped_at_zero():
    gt = np.add.outer(np.arange(4), np.arange(4)) % 2 == 0  # checkerboard
    assert s_measure(1.0 - gt, gt) == 0.0  # inverted map: negative structure similarity, clipped


def test_resize_map_bilinear():
    m = np.array([[0.0, 1.0], [0.0, 1.0]])
    out = resize_map(m, (4, 4))
    assert out.shape == (4, 4) and out.dtype == np.float64
    # pixel-centre alignment: source x = (i + .5) / 2 - .5 = -.25, .25, .75, 1.25 -> clamped
    np.testing.assert_allclose(out, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    np.testing.assert_allclose(resize_map(np.full((3, 5), 0.3), (6, 2)), np.full((6, 2), 0.3), atol=1e-7)
    assert resize_map(m, (2, 2)) is not m


def test_evaluate_saliency_averages():
    perfect = GT.astype(float)
    res = evaluate_saliency([PRED, perfect], [GT, GT])
    assert res["MAE"] == pytest.approx(0.1875 / 2)
    assert res["PixelAcc"] == 1.0
    assert res["adpF"] == pytest.approx((0.8125 + 1.0) / 2)
    assert res["S"] == pytest.approx((s_measure(PRED, GT) + s_measure(perfect, GT)) / 2)
    # maxF / meanF from the image-averaged curve
    curve = (f_measure_curve(PRED, GT) + f_measure_curve(perfect, GT)) / 2
    assert res["maxF"] == pytest.approx(curve.max()) and res["maxF"] == pytest.approx(1.0)
    assert res["meanF"] == pytest.approx(curve.mean())
    # mappings, 0/255 masks and a prediction of another size
    res2 = evaluate_saliency({"b": perfect, "a": PRED}, {"a": GT.astype(np.uint8) * 255, "b": GT})
    assert res2 == pytest.approx(res)
    big = evaluate_saliency([np.full((8, 8), 0.3)], [np.ones((4, 4), dtype=bool)])
    assert big["MAE"] == pytest.approx(0.7) and big["S"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        evaluate_saliency([PRED], [GT, GT])


def test_normalize_option():
    p = np.array([[0.6, 0.4], [0.2, 0.2]])
    assert evaluate_saliency([p], [GT])["MAE"] == pytest.approx((0.4 + 0.6 + 0.2 + 0.2) / 4)
    # min-max normalised: [[1, .5], [0, 0]]
    assert evaluate_saliency([p], [GT], normalize=True)["MAE"] == pytest.approx(0.5 / 4)
