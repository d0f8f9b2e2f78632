"""The validation sweep's comparison (docs/experiments/thresholds.md): every variant against its
method's current default, paired by seed, on the validation part (the test split is never read
here). Per domain: the mean paired difference with its 95 % t-interval, signed so that positive is
better (MR⁻² is lower-better); then the mean over domains, which decides (the rule is in the doc).

    python docs/experiments/thresholds/compare.py runs/thresholds
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats


def load(root: Path) -> dict[tuple[str, str, int], tuple[float, bool]]:
    """(domain, method, seed) -> (validation primary metric at round 0, higher is better)."""
    out = {}
    for f in sorted(root.glob("*/*/seed*/*/results.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["round"] != 0:
                continue
            v = r["validation"]
            out[(r["domain"], r["method"], r["seed"])] = (
                v["metrics"][v["primary"]],
                r["higher_is_better"][v["primary"]],
            )
    return out


def family(method: str) -> tuple[str, str]:
    """'eucl[threshold=0.7]+random' -> ('eucl', 'eucl+random'): the method and its default's label."""
    trainer, _, strategy = method.partition("+")
    name = trainer.split("[", 1)[0]
    return name, f"{name}+{strategy}" if strategy else name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    args = ap.parse_args()
    res = load(args.runs)
    domains = sorted({d for d, _, _ in res})
    methods = sorted({m for _, m, _ in res})
    overall: dict[str, list[float]] = defaultdict(list)
    print("| variant | default | " + " | ".join(domains) + " | mean over domains |")
    print("|---|---|" + "---|" * (len(domains) + 1))
    for m in methods:
        _, base = family(m)
        if base == m or not any(k[1] == base for k in res):
            continue
        cells = []
        for d in domains:
            seeds = sorted(s for dd, mm, s in res if dd == d and mm == m and (d, base, s) in res)
            if not seeds:
                cells.append("—")
                continue
            sign = 1.0 if res[(d, m, seeds[0])][1] else -1.0
            diff = np.array([sign * (res[(d, m, s)][0] - res[(d, base, s)][0]) for s in seeds])
            mean = float(diff.mean())
            half = (
                float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
                if len(diff) > 1
                else float("nan")
            )
            overall[m].append(mean)
            cells.append(f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] (n={len(diff)})")
        avg = float(np.mean(overall[m])) if overall[m] else float("nan")
        print(f"| `{m}` | `{base}` | " + " | ".join(cells) + f" | **{avg:+.4f}** |")
    print()
    for d in domains:
        row = [f"{m}={np.mean([res[k][0] for k in res if k[0] == d and k[1] == m]):.3f}" for m in methods]
        print(f"{d} (validation means): " + ", ".join(row))


if __name__ == "__main__":
    main()
