"""Benchmark: ``poly_iou`` (numpy, AABB prefilter + float64 Sutherland-Hodgman) against shapely's
``STRtree.query(predicate="intersects")`` + ``intersection`` on 1,000 x 1,000 DOTA-like oriented boxes
(1024 px tile, sides 10-80 px, random angles; about 1 % of the pairs intersect).

Run alone (it times things): ``pytest tests/perf/test_perf_polygon_iou.py -s -p no:cacheprovider``.
The shapely route is timed in the same run (best of 5, ``time.perf_counter``) and the ratio is printed
and stored in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import time

import numpy as np
import shapely

from benchmark.metrics.dota import poly_iou

N = 1000


def dota_like(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = rng.uniform(0, 1024, (n, 2))
    wh = rng.uniform(10, 80, (n, 2))
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    dx = np.array([-0.5, 0.5, 0.5, -0.5])[None, :] * wh[:, :1]
    dy = np.array([-0.5, -0.5, 0.5, 0.5])[None, :] * wh[:, 1:]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    x = centre[:, :1] + c * dx - s * dy
    y = centre[:, 1:] + s * dx + c * dy
    return np.stack([x, y], axis=-1).reshape(n, 8)


def shapely_strtree_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa = shapely.polygons(a.reshape(-1, 4, 2))
    pb = shapely.polygons(b.reshape(-1, 4, 2))
    tree = shapely.STRtree(pb)
    ia, ib = tree.query(pa, predicate="intersects")
    inter = shapely.area(shapely.intersection(pa[ia], pb[ib]))
    union = shapely.area(pa)[ia] + shapely.area(pb)[ib] - inter
    out = np.zeros((a.shape[0], b.shape[0]))
    out[ia, ib] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def _best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def test_perf_poly_iou_vs_shapely_strtree(benchmark):
    rng = np.random.default_rng(2024)
    a, b = dota_like(rng, N), dota_like(rng, N)

    t_shapely, ref = _best_of(lambda: shapely_strtree_iou(a, b), repeat=5)
    got = benchmark.pedantic(poly_iou, args=(a, b), rounds=10, iterations=1, warmup_rounds=1)

    assert got.shape == (N, N)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert np.array_equal(got > 0, ref > 0)

    if benchmark.stats is not None:  # None under --benchmark-disable
        t_ours = benchmark.stats.stats.min
    else:
        t_ours, _ = _best_of(lambda: poly_iou(a, b), repeat=5)
    ratio = t_shapely / t_ours
    n_pairs = int((ref > 0).sum())
    benchmark.extra_info.update(
        {
            "shapely_strtree_s": t_shapely,
            "poly_iou_s": t_ours,
            "speedup": ratio,
            "intersecting_pairs": n_pairs,
        }
    )
    print(
        f"\npoly_iou {N}x{N} DOTA-like ({n_pairs} intersecting pairs): numpy {t_ours * 1e3:.1f} ms, "
        f"shapely STRtree {t_shapely * 1e3:.1f} ms -> {ratio:.2f}x"
    )
