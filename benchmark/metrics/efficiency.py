"""Label-efficiency summaries of a metric-vs-label-budget curve.

Protocol: area under the budget curve (AUBC, the summary used in active-learning benchmarks such as Zhan
et al.'s comparative survey of deep active learning; here the trapezoid area is divided by the budget range
so that it stays in the metric's units), percentage of a
reference (e.g. the fully supervised) result, and labels needed to reach a target by linear interpolation
between measured budgets. Checked against hand-computed values in ``tests/metrics/test_efficiency_metric.py``.

Curves are given as budgets (any order, no duplicates) and the metric at each budget; they are sorted by
budget first. NaN values raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["aubc", "percent_of_reference", "labels_to_reach"]


def _curve(budgets: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(budgets, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if b.shape != v.shape:
        raise ValueError(f"{b.size} budgets for {v.size} values")
    if b.size == 0:
        raise ValueError("empty curve")
    if np.isnan(b).any() or np.isnan(v).any():
        raise ValueError("NaN in the curve")
    order = np.argsort(b, kind="stable")
    b, v = b[order], v[order]
    if np.any(np.diff(b) == 0):
        raise ValueError("duplicate budgets")
    return b, v


def aubc(budgets: Any, values: Any) -> float:
    """Trapezoid area under the metric-vs-budget curve divided by the budget range
    ``max(budgets) - min(budgets)``, i.e. the mean of the piecewise-linear curve over the measured range
    (in the metric's units; a constant curve gives that constant). A single point gives its value."""
    b, v = _curve(budgets, values)
    if b.size == 1:
        return float(v[0])
    area = float(np.sum((b[1:] - b[:-1]) * (v[1:] + v[:-1]) / 2.0))
    return area / float(b[-1] - b[0])


def percent_of_reference(values: Any, reference: float) -> Any:
    """``100 * values / reference`` (a float for a scalar, an array otherwise). A zero reference gives
    NaN (``inf`` would only suggest a meaning). For lower-is-better metrics this is still the plain ratio
    (e.g. 120 means 20 % more error than the reference)."""
    v = np.asarray(values, dtype=np.float64)
    ref = float(reference)
    out = np.full(v.shape, np.nan) if ref == 0 else 100.0 * v / ref
    return float(out) if out.ndim == 0 else out


def labels_to_reach(budgets: Any, values: Any, target: float, higher_is_better: bool = True) -> float | None:
    """Smallest budget at which the piecewise-linear curve first reaches ``target``.

    "Reaches" is ``value >= target`` (``<=`` when ``higher_is_better=False``). Walking budgets in
    increasing order, the answer is the first measured budget that reaches the target when it is the
    first point, otherwise the linear interpolation inside the first segment that crosses from not
    reaching to reaching; later dips and re-crossings are ignored (the *first* crossing counts, so a
    non-monotone curve is never credited with an earlier budget than it actually hit). Returns None when
    no measured point reaches the target (no extrapolation beyond the largest budget).
    """
    b, v = _curve(budgets, values)
    t = float(target)
    if not higher_is_better:
        v, t = -v, -t
    hit = np.nonzero(v >= t)[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(b[0])
    b0, b1, v0, v1 = b[i - 1], b[i], v[i - 1], v[i]
    return float(b0 + (t - v0) / (v1 - v0) * (b1 - b0))
