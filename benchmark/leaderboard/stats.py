"""The statistics of a leaderboard cell: mean, sample standard deviation, standard error and the 95 %
Student-t interval over seeds; ranks with averaged ties; whether one interval lies wholly on the
better side of another."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def t_halfwidth(std: float, n: int, level: float = 0.95) -> float:
    """Half-width of the t confidence interval of a mean (NaN for n < 2)."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def describe(values: Iterable[float]) -> dict[str, float | int]:
    """n, mean, sample std (ddof = 1), standard error and the 95 % t interval of ``values``."""
    v = np.asarray(list(values), dtype=np.float64)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "se": nan, "ci95": nan, "ci_lo": nan, "ci_hi": nan}
    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if n > 1 else float("nan")
    se = std / math.sqrt(n) if n > 1 else float("nan")
    hw = t_halfwidth(std, n)
    return {"n": n, "mean": mean, "std": std, "se": se, "ci95": hw, "ci_lo": mean - hw, "ci_hi": mean + hw}


def rank_scores(scores: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; tied scores share the average of their ranks (ties compared at 1e-9)."""
    if not scores:
        return {}
    s = pd.Series({k: round(v, 9) for k, v in scores.items()}, dtype=float)
    return {k: float(r) for k, r in s.rank(method="average", ascending=not higher_is_better).items()}


def ci_better(a: dict[str, Any], b: dict[str, Any], higher_is_better: bool) -> bool:
    """Whether a's 95 % CI lies wholly on the better side of b's (never with an undefined CI)."""
    vals = (a["ci_lo"], a["ci_hi"], b["ci_lo"], b["ci_hi"])
    if not all(math.isfinite(x) for x in vals):
        return False
    return a["ci_lo"] > b["ci_hi"] if higher_is_better else a["ci_hi"] < b["ci_lo"]
