"""Evaluate predictions with a domain's official metrics (its ``metrics``, a tuple of ``MetricSpec``).

Each ``MetricSpec`` of a domain names a ``protocol`` (an evaluator registered with
``benchmark.metrics.register_protocol``) and a ``key`` (the number it returns). ``evaluate_domain``
runs each protocol once and returns the metrics in the domain's order (the first is the primary one),
their directions, per-class values and the implementation of each, and the long-tail view
(``benchmark.metrics.long_tail``). Protocols are found by name on ``benchmark.metrics.PROTOCOLS``;
those that need the detector's dense maps (saliency) are registered with ``dense=True`` and the
protocol asks the detector for them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from benchmark.codehash import closure, code_hash
from benchmark.detectors.base import Prediction
from benchmark.metrics import PROTOCOLS, MetricProtocol
from benchmark.metrics.long_tail import long_tail, per_class_key
from domains.base import Domain, DomainDataset, SpecError


def get_protocol(name: str) -> tuple[MetricProtocol, bool]:
    """The metric protocol registered as ``name`` and whether it needs dense maps."""
    if name not in PROTOCOLS:
        raise SpecError(f"unknown metric protocol {name!r}; known: {', '.join(PROTOCOLS.names())}")
    proto = PROTOCOLS.get(name)
    return proto, proto.dense


@functools.lru_cache(maxsize=1)
def metrics_code_version() -> str:
    """Hash of the evaluation code (this module, the metric modules and what they import, docstrings
    and comments aside): cached results of an older metric implementation are never reused."""
    return code_hash(closure([__name__, "benchmark.metrics"]))


def needs_dense(domain: Domain) -> bool:
    """Whether any of the domain's metrics needs the detector's dense maps."""
    return any(get_protocol(m.protocol)[1] for m in domain.metrics)


def evaluate_domain(
    domain: Domain,
    test: DomainDataset,
    preds: Sequence[Prediction],
    class_counts: dict[str, int] | None = None,
    skip: set[str] | None = None,
) -> dict[str, Any]:
    """Official metrics of ``preds`` on ``test``; with the pool's ``class_counts``, also the AP of
    head / middle / tail classes (``long_tail``)."""
    if len(preds) != len(test):
        raise ValueError(f"{len(preds)} predictions for {len(test)} test samples")
    results: dict[str, tuple[dict[str, Any], str]] = {}
    metrics_used = [m for m in domain.metrics if m.name not in (skip or set())]
    for m in metrics_used:
        if m.protocol not in results:
            results[m.protocol] = get_protocol(m.protocol)[0](domain, test, preds)
    metrics = {m.name: float(results[m.protocol][0][m.key]) for m in metrics_used}
    primary = domain.metrics[0]
    per_class = results[primary.protocol][0].get("per_class", {})
    return {
        "metrics": metrics,
        "primary": primary.name,
        "higher_is_better": {m.name: m.higher_is_better for m in metrics_used},
        "per_class": per_class,
        "impl": {m.name: results[m.protocol][1] for m in metrics_used},
        "long_tail": (
            long_tail(per_class, class_counts, per_class_key(per_class), results[primary.protocol][0])
            if class_counts
            else {}
        ),
    }


def scoring_domain(domain: Domain, oriented: bool) -> Domain:
    """The domain as a run scores it: for an oriented detector, a domain that names an
    ``oriented_primary`` metric (DOTA: Task1) gets that metric first, so it is the record's primary
    metric (and its per-class and long-tail values); every other metric stays."""
    name = getattr(domain, "oriented_primary", None)
    if not oriented or name is None:
        return domain
    first = [m for m in domain.metrics if m.name == name]
    if not first:
        raise SpecError(f"{domain.name}: oriented_primary {name!r} is not one of its metrics")
    view = copy.copy(domain)
    view.metrics = (*first, *(m for m in domain.metrics if m.name != name))  # type: ignore[misc]
    return view
