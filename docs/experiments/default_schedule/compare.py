"""Paired comparison of two runs folders of the same grid, as used for docs/experiments/default_schedule.md:
per domain, method and round, the mean primary metric of each arm and the paired difference (A - B)
over seeds with its 95 % t-interval, on the validation part (default) or the test split.

    python docs/experiments/default_schedule/compare.py runs/warm runs/cold [--split test]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats


def load(root: Path, split: str) -> dict[tuple, tuple[float, bool, str]]:
    """(domain, method, seed, round) -> (primary metric, higher is better, metric name)."""
    out = {}
    for f in root.glob("*/*/seed*/*/results.jsonl"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if split == "validation":
                v = r["validation"]
                value, name = v["metrics"][v["primary"]], v["primary"]
            else:
                value, name = r["metrics"][r["primary_metric"]], r["primary_metric"]
            out[(r["domain"], r["method"], r["seed"], r["round"])] = (
                value,
                r["higher_is_better"][r["primary_metric"]],
                name,
            )
    return out


def paired(diffs: list[float]) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width (nan for one seed)."""
    d = np.asarray(diffs, np.float64)
    if len(d) < 2:
        return float(d.mean()), float("nan")
    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    args = ap.parse_args()
    a, b = load(args.a, args.split), load(args.b, args.split)
    for key in sorted({k[:2] + (k[3],) for k in a}):
        dom, meth, rnd = key
        ks = sorted(k for k in a if (k[0], k[1], k[3]) == key and k in b)
        if not ks:
            continue
        m, h = paired([a[k][0] - b[k][0] for k in ks])
        va, vb = np.mean([a[k][0] for k in ks]), np.mean([b[k][0] for k in ks])
        better = "higher" if a[ks[0]][1] else "lower"
        print(
            f"{dom} {meth} round {rnd} ({a[ks[0]][2]}, {better} is better, n={len(ks)}): "
            f"A {va:.3f}  B {vb:.3f}  A-B {m:+.3f} [{m - h:+.3f}, {m + h:+.3f}]"
        )


if __name__ == "__main__":
    main()
