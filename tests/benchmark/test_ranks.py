"""Rank trust: ties from paired intervals, bootstrap rank intervals, seed-half Kendall τ."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.leaderboard.ranks import rank_analysis


def scores(means, noise, n_seeds, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, n_seeds)  # a shared per-seed effect (same initial labelled set)
    return {
        m: {s: mu + 0.5 * base[s] + rng.normal(0, noise) for s in range(n_seeds)} for m, mu in means.items()
    }


def test_clear_order_is_ranked_and_stable():
    per_seed = scores({"a": 0.9, "b": 0.6, "c": 0.3}, noise=0.01, n_seeds=8)
    r = rank_analysis(per_seed, higher_is_better=True)
    assert [r["methods"][m]["rank"] for m in "abc"] == [1, 2, 3]
    assert all(not r["methods"][m]["tied_with"] for m in "abc")
    assert r["kendall_tau"] == pytest.approx(1.0)
    assert r["halves"] == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert r["methods"]["a"]["rank_lo"] == r["methods"]["a"]["rank_hi"] == 1.0


def test_direction_lower_is_better():
    per_seed = scores({"a": 0.9, "b": 0.6, "c": 0.3}, noise=0.01, n_seeds=8)
    r = rank_analysis(per_seed, higher_is_better=False)
    assert [r["methods"][m]["rank"] for m in "abc"] == [3, 2, 1]
    assert r["kendall_tau"] == pytest.approx(1.0)


def test_noise_gives_ties_and_wide_rank_intervals():
    per_seed = scores({"a": 0.50, "b": 0.51, "c": 0.9}, noise=0.2, n_seeds=8, seed=3)
    r = rank_analysis(per_seed, higher_is_better=True)
    a, b, c = (r["methods"][m] for m in "abc")
    assert c["rank"] == 1 and a["rank"] == b["rank"] == 2  # a and b share a rank
    assert "b" in a["tied_with"] and "a" in b["tied_with"] and "a" not in c["tied_with"]
    assert a["rank_hi"] - a["rank_lo"] >= 1.0  # the bootstrap sees that a and b swap


def test_deterministic_and_touches_no_global_rng():
    per_seed = scores({"a": 0.5, "b": 0.52}, noise=0.1, n_seeds=6)
    state = np.random.get_state()[1].copy()
    assert rank_analysis(per_seed, True) == rank_analysis(per_seed, True)
    assert (np.random.get_state()[1] == state).all()


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_too_few_seeds_for_kendall(n_seeds):
    r = rank_analysis(scores({"a": 0.9, "b": 0.1}, 0.01, n_seeds), True)
    assert np.isnan(r["kendall_tau"]) and "needs at least 4 seeds" in r["note"]


def test_only_common_seeds_count():
    per_seed = {"a": {0: 1.0, 1: 0.9, 2: 0.8}, "b": {1: 0.1, 2: 0.2}}
    assert rank_analysis(per_seed, True)["seeds"] == [1, 2]


def test_tau_over_every_cut_of_the_seeds():
    """Four seeds cut into halves three ways: {0,1}|{2,3} agrees (τ = 1), the other two cuts swap
    a and b (τ = -1); the fixed cut alone would report 1."""
    per_seed = {"a": {0: 1.0, 1: 1.0, 2: 0.0, 3: 3.0}, "b": {0: 0.0, 1: 0.0, 2: 2.0, 3: 0.0}}
    r = rank_analysis(per_seed, higher_is_better=True)
    assert r["kendall_tau"] == pytest.approx(1.0)
    sp = r["tau_splits"]
    assert sp["n"] == 3
    assert sp["mean"] == pytest.approx(-1 / 3) and sp["min"] == -1.0 and sp["max"] == 1.0
    assert sp["share_ge_goal"] == pytest.approx(1 / 3)


def test_tau_cuts_count_each_pair_of_halves_once():
    r = rank_analysis(scores({"a": 0.9, "b": 0.6, "c": 0.3}, noise=0.01, n_seeds=8), True)
    assert r["tau_splits"] == {"n": 35, "mean": 1.0, "min": 1.0, "max": 1.0, "share_ge_goal": 1.0}
    odd = rank_analysis(scores({"a": 0.9, "b": 0.6, "c": 0.3}, noise=0.01, n_seeds=5), True)
    assert odd["halves"] == ([0, 1], [2, 3, 4]) and odd["tau_splits"]["n"] == 10  # C(5, 2)
    assert rank_analysis(scores({"a": 0.9, "b": 0.1}, 0.01, 3), True)["tau_splits"] == {}
