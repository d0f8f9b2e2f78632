"""Evaluate predictions with a domain's official metrics (DESIGN §5, the metrics table).

Each ``MetricSpec`` of a domain names a ``protocol`` (an evaluator registered here with
``@register_protocol``) and a ``key`` (the number it returns). ``evaluate_domain`` runs each protocol
once and returns the metrics in the domain's order (the first is the primary one), their directions,
per-class values and the implementation of each.

A protocol is ``fn(domain, test, preds) -> (results dict, implementation string)``; protocols that
need the detector's dense maps (saliency) are registered with ``dense=True`` and the protocol asks
the detector for them.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from benchmark.detectors.base import Prediction
from domains.base import Domain, DomainDataset, SpecError

ProtocolFn = Callable[[Domain, DomainDataset, Sequence[Prediction]], tuple[dict[str, Any], str]]
PROTOCOLS: dict[str, tuple[ProtocolFn, bool]] = {}
# modules whose import registers protocols (kept lazy: metric code imports only when used)
PROTOCOL_MODULES = ("benchmark.metrics.coco", "benchmark.metrics.dota", "benchmark.metrics.pedestrian",
                    "benchmark.metrics.saliency", "benchmark.metrics.voc")  # fmt: skip


def register_protocol(name: str, dense: bool = False) -> Callable[[ProtocolFn], ProtocolFn]:
    def deco(fn: ProtocolFn) -> ProtocolFn:
        PROTOCOLS[name] = (fn, dense)
        return fn

    return deco


def get_protocol(name: str) -> tuple[ProtocolFn, bool]:
    if name not in PROTOCOLS:
        for mod in PROTOCOL_MODULES:
            importlib.import_module(mod)
    if name not in PROTOCOLS:
        raise SpecError(f"unknown metric protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


@functools.lru_cache(maxsize=1)
def metrics_code_version() -> str:
    """Hash of the evaluation code (this module, the metric modules and what they import, docstrings
    and comments aside): cached results of an older metric implementation are never reused."""
    from benchmark.codehash import closure, code_hash

    return code_hash(closure([__name__, *PROTOCOL_MODULES]))


def needs_dense(domain: Domain) -> bool:
    """Whether any of the domain's metrics needs the detector's dense maps."""
    return any(get_protocol(m.protocol)[1] for m in domain.metrics)


def long_tail(
    per_class: dict[str, Any], class_counts: dict[str, int], key: str, primary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """AP of head / middle / tail classes (terciles of the pool's class frequency; DOTA devkit
    grouping of ``benchmark.metrics.dota.class_groups``) from per-class values ``per_class[c][key]``;
    with the devkit protocol's per-class final recall and positives (``primary``), also the pooled
    recall of the tail classes (``tail_recall`` = sum TP / sum positives over the tail classes)."""
    from benchmark.metrics.dota import class_groups, group_ap

    counts = {c: n for c, n in class_counts.items() if n > 0}
    groups = class_groups(counts) if counts else {}
    ap = {c: float(v[key]) if float(v[key]) >= 0 else float("nan") for c, v in per_class.items() if key in v}
    out: dict[str, Any] = {"metric": key, "groups": groups, **group_ap(ap, groups)}
    rec, npos = (primary or {}).get("per_class_recall"), (primary or {}).get("npos")
    if rec and npos:
        tail = [c for c, g in groups.items() if g == "tail" and npos.get(c, 0) > 0]
        n = sum(npos[c] for c in tail)
        out["tail_recall"] = sum(rec[c] * npos[c] for c in tail) / n if n else float("nan")
    return out


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
            long_tail(per_class, class_counts, _per_class_key(per_class), results[primary.protocol][0])
            if class_counts
            else {}
        ),
    }


def _per_class_key(per_class: dict[str, Any]) -> str:
    """The per-class number the long-tail groups average (AP50 where the protocol reports it)."""
    first = next(iter(per_class.values()), {})
    return "AP50" if "AP50" in first else next(iter(first), "AP50")


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
