"""Contract tests inherited by every registered method and acquisition strategy.

Adding a method or strategy to a registry adds it here: no exceeding the budget, ids disjoint from
the labelled set and from each other and inside the pool, same seed -> same ids, global RNG state
untouched, images with zero predictions handled, the model passed to ``select`` not mutated; every
method (with its default strategy) and every strategy (with the supervised trainer) completes two
rounds of the ``tiny`` matrix, and its records validate against the leaderboard's schema.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from contexts import query_context as qctx

from baselines.base import METHODS, STRATEGIES
from benchmark.detectors import build_detector
from benchmark.leaderboard import load_records
from benchmark.runner import run_matrix
from benchmark.spec import load_matrix
from domains.dota import DOTA


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def model_for(pool, score_thresh=0.05):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_detector("tiny_fcos_xs", len(pool.classes), score_thresh=score_thresh).eval()


def rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy()


@pytest.mark.parametrize("name", STRATEGIES.names())
@pytest.mark.parametrize("score_thresh", [0.05, 1.01])  # 1.01: the model predicts nothing at all
def test_strategy_contract(pool, name, score_thresh):
    model = model_for(pool, score_thresh)
    before = copy.deepcopy(model.state_dict())
    strat = STRATEGIES.get(name)()
    t0, n0 = rng_state()
    ctx = qctx(pool, model)
    picks = strat.select(ctx, 10)
    t1, n1 = rng_state()
    assert torch.equal(t0, t1) and (n0 == n1).all(), "global RNG state changed"
    assert len(picks) == 10 and len(set(picks)) == 10
    unl = {s.id for s in ctx.unlabelled}
    assert set(picks) <= unl and not set(picks) & {s.id for s in ctx.labelled}
    assert picks == strat.select(qctx(pool, model), 10), "same seed, different ids"
    assert strat.select(qctx(pool, model), 0) == []
    assert len(strat.select(qctx(pool, model), 10_000)) == len(unl)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"select mutated the model ({k})"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(pool, name, make_train_context):
    method = METHODS.get(name)()
    assert method.default_strategy in STRATEGIES
    assert method.paradigm in ("supervised", "ssl", "sfda")
    assert METHODS.get(name).__doc__ and METHODS.get(name).__module__
    import sys

    assert sys.modules[METHODS.get(name).__module__].__doc__, "a method module opens with its card"

    def new_detector():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_detector("tiny_fcos_xs", len(pool.classes))

    def ctx():
        return make_train_context(pool, new_detector)

    t0, n0 = rng_state()
    a = method.train(ctx())
    t1, n1 = rng_state()
    assert torch.equal(t0, t1) and (n0 == n1).all(), "global RNG state changed"
    b = method.train(ctx())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), f"same seed, different weights ({k})"
    assert not a.training


def _tiny_two_rounds(tmp_path, method: str) -> list[dict]:
    m = load_matrix("tiny", methods=[method])
    run_matrix(m, tmp_path, launcher="serial", progress=False)
    recs, problems = load_records(tmp_path)
    assert not problems, problems
    return sorted(recs, key=lambda r: r["round"])


def _check_tiny(recs: list[dict], method: str) -> None:
    assert [r["round"] for r in recs] == [0, 1], "two rounds of the tiny matrix"
    assert all(r["method"] == method for r in recs)
    assert [r["n_labelled"] for r in recs] == [8, 16]
    assert recs[0]["n_acquired"] == 8
    for r in recs:
        assert 0.0 <= r["metrics"]["mAP50"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS.names())
def test_method_completes_tiny_matrix(tmp_path, name):
    method = f"{name}+{METHODS.get(name).default_strategy}"
    _check_tiny(_tiny_two_rounds(tmp_path, method), method)


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_completes_tiny_matrix(tmp_path, name):
    method = f"supervised+{name}"
    _check_tiny(_tiny_two_rounds(tmp_path, method), method)
