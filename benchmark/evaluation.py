"""Evaluate predictions with a domain's official metrics (DESIGN §5, the metrics table).

Each ``MetricSpec`` of a domain names a ``protocol`` (the evaluator) and a ``key`` (the number it
returns). ``evaluate_domain`` runs each protocol once and returns the metrics in the domain's order
(the first is the primary one), their directions, per-class values and the implementations used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmark.detectors.base import Prediction
from benchmark.metrics import coco
from domains.base import Domain, DomainDataset


def _coco(domain: Domain, test: DomainDataset, preds: Sequence[Prediction]) -> tuple[dict[str, Any], str]:
    return coco.evaluate_predictions(
        list(test), domain.classes, preds
    ), f"coco-bbox ({coco.implementation()})"


PROTOCOLS = {"coco": _coco}


def evaluate_domain(domain: Domain, test: DomainDataset, preds: Sequence[Prediction]) -> dict[str, Any]:
    if len(preds) != len(test):
        raise ValueError(f"{len(preds)} predictions for {len(test)} test samples")
    results: dict[str, tuple[dict[str, Any], str]] = {}
    for m in domain.metrics:
        if m.protocol not in results:
            results[m.protocol] = PROTOCOLS[m.protocol](domain, test, preds)
    metrics = {m.name: float(results[m.protocol][0][m.key]) for m in domain.metrics}
    primary = domain.metrics[0]
    per_class = results[primary.protocol][0].get("per_class", {})
    return {
        "metrics": metrics,
        "primary": primary.name,
        "higher_is_better": {m.name: m.higher_is_better for m in domain.metrics},
        "per_class": per_class,
        "impl": {m.name: results[m.protocol][1] for m in domain.metrics},
    }
