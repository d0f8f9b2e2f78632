"""Where a round's time goes: an SSL training step against a supervised one, and a whole
protocol round against the bare loop it wraps. Both ratios are measured in one run, on one process
with one torch thread (the matrices' setting), on synthetic DOTA (tiny) with ``tiny_fcos_xs``.

A step's time is the training time over the iterations, so an SSL method's burn-in (supervised-only
steps) is averaged in, as in a real round. Run with ``tox -e perf`` or
``pytest tests/perf/test_perf_round.py -o addopts="" -s``. The printed
ratios are the baseline that speed work is measured against (the profile before it: an SSL step
92 ms vs 25 ms supervised, i.e. about 3.7x; a protocol round 1.15-1.17x a bare loop).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

ITERATIONS = 60


def _ctx(pool, iterations):
    from baselines.base import ImageStore, TrainContext
    from benchmark.detectors import build_detector
    from benchmark.training import Schedule

    def new_detector():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_detector("tiny_fcos_xs", len(pool.classes))

    items = list(pool)
    return TrainContext(
        items[:16],
        [s.label_free() for s in items[16:]],
        ImageStore(pool.image),
        pool.classes,
        new_detector,
        Schedule(iterations=iterations, batch_size=8, warmup=5, ema_decay=0.99),
        torch.Generator().manual_seed(0),
        np.random.default_rng(0),
    )


def _train_time(method, pool, iterations) -> float:
    method.train(_ctx(pool, 2))  # warm-up: first-call allocations and imports
    t0 = time.perf_counter()
    method.train(_ctx(pool, iterations))
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_ssl_step_vs_supervised_step(dota_tiny_root, one_thread):
    from baselines.base import METHODS
    from domains.dota import DOTA

    pool = DOTA().load(dota_tiny_root, "pool")
    sup = _train_time(METHODS.get("supervised")(), pool, ITERATIONS) / ITERATIONS
    rows = [("supervised", sup)]
    for name in ("mean_teacher", "eucl", "dil", "sar_source_free", "triple_ema"):
        rows.append((name, _train_time(METHODS.get(name)(), pool, ITERATIONS) / ITERATIONS))
    print(f"\nper training step (batch 8, 1 thread, {ITERATIONS} steps):")
    for name, t in rows:
        print(f"  {name:16s} {1000 * t:7.1f} ms   x{t / sup:.2f} of supervised")
    assert all(t > 0 for _, t in rows)


def test_protocol_round_vs_bare_loop(dota_tiny_root, tmp_path, one_thread):
    """One round of ``run_cell`` (train, evaluate with every official metric, write the round) against
    the same training and test-set prediction and evaluation called directly."""
    from baselines.base import METHODS
    from benchmark.data import load_domain_data
    from benchmark.evaluation import evaluate_domain
    from benchmark.protocol import run_cell
    from benchmark.spec import load_matrix, with_version
    from benchmark.training import predict_all

    m = load_matrix("tiny", methods=["supervised+random"], budgets=[16])
    cell = replace(m.cells[0], schedule=replace(m.cells[0].schedule, iterations=ITERATIONS))
    data = load_domain_data(cell.domain, progress=False)
    cell = with_version(cell, data.version)
    pool, test = data.pool, data.test

    def bare():
        from baselines.base import ImageStore, TrainContext
        from benchmark.detectors import build_detector

        def new_detector():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return build_detector(cell.detector, len(pool.classes), **cell.detector_options)

        items = list(pool)
        ctx = TrainContext(
            items[:16],
            [s.label_free() for s in items[16:]],
            ImageStore(pool.image),
            pool.classes,
            new_detector,
            cell.schedule,
            torch.Generator().manual_seed(0),
            np.random.default_rng(0),
        )
        model = METHODS.get("supervised")().train(ctx)
        preds = predict_all(model, data.images.many(test.ids))
        return evaluate_domain(data.domain, test, preds)

    bare()  # warm-up
    t0 = time.perf_counter()
    bare()
    t_bare = time.perf_counter() - t0
    run_cell(cell, tmp_path / "warm", data)  # warm-up (a separate runs folder: nothing cached)
    t0 = time.perf_counter()
    run_cell(cell, tmp_path / "runs", data)
    t_round = time.perf_counter() - t0
    print(f"\none round, {ITERATIONS} iterations: protocol {t_round:.2f} s, bare loop {t_bare:.2f} s, "
          f"x{t_round / t_bare:.2f}")  # fmt: skip
    assert t_round > 0 and t_bare > 0
