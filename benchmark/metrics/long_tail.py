"""Head / middle / tail classes: the long-tail view of a round's per-class AP.

Classes are grouped by terciles of their frequency in the pool (``class_groups``, the DOTA devkit
papers' grouping); ``group_ap`` averages the per-class AP of each group, and ``long_tail`` builds the
record's ``long_tail`` entry from a protocol's per-class values (``benchmark.evaluation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def class_groups(train_counts: Mapping[str, float]) -> dict[str, str]:
    """Head / middle / tail classes by terciles of training frequency.

    Classes are ranked by count, most frequent first; a class's rank is the number of classes with a
    strictly larger count ("competition" ranking, so tied classes share the better rank). With ``n``
    classes, rank ``< n/3`` is "head", ``< 2n/3`` is "middle", the rest "tail". Without ties this splits
    15 classes 5/5/5 and 16 classes 6/5/5; tied classes always fall in the same group, the more frequent
    one when the tie straddles a boundary (so with many ties the tail can be smaller than a third, or
    empty when all counts are equal).
    """
    names = list(train_counts)
    counts = np.array([float(train_counts[k]) for k in names])
    n = len(names)
    out = {}
    for name, c in zip(names, counts, strict=True):
        rank = int(np.sum(counts > c))
        out[name] = "head" if rank < n / 3 else ("middle" if rank < 2 * n / 3 else "tail")
    return out


def group_ap(per_class_ap: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """Mean AP per group ("head", "middle", "tail") over the classes of ``groups`` whose AP in
    ``per_class_ap`` is finite (classes without ground truth have NaN AP and are skipped). A group with
    no such class gets NaN."""
    out = {}
    for g in ("head", "middle", "tail"):
        vals = [float(per_class_ap[n]) for n, gg in groups.items() if gg == g and n in per_class_ap]
        vals = [v for v in vals if np.isfinite(v)]
        out[g] = float(np.mean(vals)) if vals else float("nan")
    return out


def long_tail(
    per_class: dict[str, Any], class_counts: dict[str, int], key: str, primary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """AP of head / middle / tail classes (terciles of the pool's class frequency; DOTA devkit
    grouping of ``class_groups``) from per-class values ``per_class[c][key]``;
    with the devkit protocol's per-class final recall and positives (``primary``), also the pooled
    recall of the tail classes (``tail_recall`` = sum TP / sum positives over the tail classes)."""
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


def per_class_key(per_class: dict[str, Any]) -> str:
    """The per-class number the long-tail groups average (AP50 where the protocol reports it)."""
    first = next(iter(per_class.values()), {})
    return "AP50" if "AP50" in first else next(iter(first), "AP50")
