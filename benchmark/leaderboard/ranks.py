"""How far a domain's ranking of methods can be trusted: ties from paired intervals, bootstrap rank
intervals and the agreement of the rankings that two halves of the seeds give.

Input: one score per (method, seed), here the AUBC of the domain's primary metric, where every method
of a seed starts from the same initial labelled set (so seeds pair the methods). Only the seeds that
every ranked method has are used.

* **Rank with ties**: a method's rank is 1 + the number of methods that are *significantly* better
  than it, i.e. whose paired difference (per seed, then the 95 % Student-t interval of the mean
  difference) excludes 0 in their favour. Methods that no interval separates share a rank instead of
  being ranked apart by noise; ``tied_with`` lists, for each method, the methods its paired interval
  does not separate it from.
* **Bootstrap rank interval**: the seeds are resampled with replacement (the same resample for every
  method, keeping the pairing), each resample ranks the methods by their mean score (ties share the
  average rank), and the 2.5 and 97.5 percentiles of each method's rank over ``n_boot`` resamples are
  reported. The resampling uses its own seeded generator: the same records give the same interval.
* **Kendall τ between seed halves**: the seeds (sorted) are cut into a first and a second half; each
  half ranks the methods by mean score, and Kendall's τ-b compares the two rankings (1: identical, 0:
  unrelated). It needs at least two seeds per half and two methods. One fixed cut is one draw of a
  noisy statistic, so the same τ is also computed for every way of cutting the seeds into two halves
  of those sizes (each unordered pair of halves once: 35 for 8 seeds) and summarised by its mean,
  minimum, maximum and the share of cuts with τ ≥ ``TAU_GOAL``.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

N_BOOT = 2000
BOOT_SEED = 20261202
MIN_SEEDS_PER_HALF = 2
TAU_GOAL = 0.7  # the rank-stability goal the leaderboard reports against


def _t_ci(d: np.ndarray) -> tuple[float, float]:
    n = d.size
    if n < 2:
        return float("nan"), float("nan")
    from scipy.stats import t

    m, s = float(d.mean()), float(d.std(ddof=1))
    hw = float(t.ppf(0.975, n - 1)) * s / math.sqrt(n)
    return m - hw, m + hw


def _ranks(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank 1 = best along axis 0 (methods); ties share the average rank."""
    from scipy.stats import rankdata

    return rankdata(-scores if higher_is_better else scores, method="average", axis=0)


def rank_analysis(
    per_seed: dict[str, dict[int, float]],
    higher_is_better: bool,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> dict[str, Any]:
    """Ranks with ties, bootstrap rank intervals and the seed-half Kendall τ (module docstring).

    ``per_seed``: method -> seed -> score. Returns ``{"seeds": [...], "methods": {method: {"mean",
    "rank", "tied_with", "rank_lo", "rank_hi"}}, "kendall_tau": float (NaN when not computable),
    "halves": ([seeds], [seeds]), "tau_splits": {"n", "mean", "min", "max", "share_ge_goal"} (every cut
    into halves; empty when τ is not computable), "note": str}``.
    """
    methods = sorted(m for m, v in per_seed.items() if v)
    seeds = sorted(set.intersection(*(set(per_seed[m]) for m in methods))) if methods else []
    out: dict[str, Any] = {
        "seeds": seeds,
        "methods": {},
        "kendall_tau": float("nan"),
        "halves": ([], []),
        "tau_splits": {},
    }
    if not methods or not seeds:
        out["note"] = "no seed that every method has"
        return out
    X = np.array([[per_seed[m][s] for s in seeds] for m in methods], dtype=np.float64)  # (M, S)
    sign = 1.0 if higher_is_better else -1.0
    better = np.zeros((len(methods), len(methods)), dtype=bool)  # better[j, i]: j significantly beats i
    for i in range(len(methods)):
        for j in range(len(methods)):
            if i != j:
                lo, hi = _t_ci(sign * (X[j] - X[i]))
                better[j, i] = math.isfinite(lo) and lo > 0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
    boot = _ranks(X[:, idx].mean(axis=2), higher_is_better)  # (M, n_boot)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
    for k, m in enumerate(methods):
        out["methods"][m] = {
            "mean": float(X[k].mean()),
            "rank": int(1 + better[:, k].sum()),
            "tied_with": [
                methods[j] for j in range(len(methods)) if j != k and not better[j, k] and not better[k, j]
            ],
            "rank_lo": float(lo[k]),
            "rank_hi": float(hi[k]),
        }
    half = len(seeds) // 2
    first, second = seeds[:half], seeds[half:]
    out["halves"] = (first, second)
    if len(methods) < 2:
        out["note"] = "one method: nothing to rank"
    elif half < MIN_SEEDS_PER_HALF:
        out["note"] = f"Kendall τ needs at least {2 * MIN_SEEDS_PER_HALF} seeds ({len(seeds)} here)"
    else:
        from scipy.stats import kendalltau

        def tau_of(cols: tuple[int, ...]) -> float:
            rest = [i for i in range(len(seeds)) if i not in cols]
            t = kendalltau(sign * X[:, list(cols)].mean(axis=1), sign * X[:, rest].mean(axis=1)).statistic
            return float(t) if t is not None and np.isfinite(t) else float("nan")

        out["kendall_tau"] = tau_of(tuple(range(half)))
        # every cut once: with equal halves, the cuts whose first half holds seed index 0
        cuts = [c for c in combinations(range(len(seeds)), half) if len(seeds) != 2 * half or 0 in c]
        taus = np.array([tau_of(c) for c in cuts])
        taus = taus[np.isfinite(taus)]
        if taus.size:
            out["tau_splits"] = {
                "n": int(taus.size),
                "mean": float(taus.mean()),
                "min": float(taus.min()),
                "max": float(taus.max()),
                "share_ge_goal": float((taus >= TAU_GOAL).mean()),
            }
        out["note"] = ""
    return out
