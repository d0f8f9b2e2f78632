"""Records -> leaderboard tables: ``<domain>.csv`` (long, machine-readable) and ``<domain>.md``.

Per (domain, method, budget) over seeds: n, mean, sample standard deviation (ddof = 1) and the
95 % confidence half-width from Student's t (n - 1 degrees of freedom). The markdown table has one
row per method and one column per budget, cells ``mean ± std (n)`` of the domain's primary metric,
then one table per other official metric. The header (commit, matrix, device, packages) comes from
the records, never from the clock, so the same runs give the same bytes.

Records whose ``schema_version`` is unknown are
reported and skipped, never mixed in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.results import atomic_write_text
from benchmark.spec import SCHEMA_VERSION


def load_records(runs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record of every ``results.jsonl`` under ``runs`` (sorted for stable output), and the
    problems found (unreadable lines, unknown schema versions)."""
    records, problems = [], []
    for f in sorted(Path(runs).rglob("results.jsonl")):
        for i, line in enumerate(f.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{f}:{i}: not JSON ({exc})")
                continue
            if rec.get("schema_version") != SCHEMA_VERSION:
                problems.append(f"{f}:{i}: schema version {rec.get('schema_version')!r} != {SCHEMA_VERSION}")
                continue
            records.append(rec)
    records.sort(key=lambda r: (r["domain"], r["method"], r["seed"], r["round"], r["run_id"]))
    return records, problems


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for rec in records:
        for name, value in rec["metrics"].items():
            rows.append(
                {
                    "domain": rec["domain"],
                    "method": rec["method"],
                    "trainer": rec["trainer"],
                    "strategy": rec["strategy"],
                    "seed": rec["seed"],
                    "round": rec["round"],
                    "budget_unit": rec["budget_unit"],
                    "budget": rec["budget_target"],
                    "n_labelled": rec["n_labelled"],
                    "n_labelled_boxes": rec["n_labelled_boxes"],
                    "metric": name,
                    "value": float(value),
                    "higher_is_better": bool(rec["higher_is_better"][name]),
                    "primary": name == rec["primary_metric"],
                    "run_id": rec["run_id"],
                    "train_s": rec.get("timing", {}).get("train_s", float("nan")),
                }
            )
    return pd.DataFrame(rows)


def t_halfwidth(std: float, n: int, level: float = 0.95) -> float:
    """Half-width of the t confidence interval of a mean (NaN for n < 2)."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["domain", "metric", "method", "budget_unit", "budget"]
    out = []
    for k, g in df.groupby(keys, sort=True):
        vals = g["value"].to_numpy(dtype=float)
        n = len(vals)
        std = float(np.std(vals, ddof=1)) if n > 1 else float("nan")
        out.append(
            {
                **dict(zip(keys, k, strict=True)),
                "n": n,
                "mean": float(np.mean(vals)),
                "std": std,
                "ci95": t_halfwidth(std, n),
                "higher_is_better": bool(g["higher_is_better"].iloc[0]),
                "primary": bool(g["primary"].iloc[0]),
                "seeds": " ".join(str(s) for s in sorted(g["seed"])),
                "mean_n_labelled_boxes": float(g["n_labelled_boxes"].mean()),
                "mean_train_s": float(g["train_s"].mean()),
            }
        )
    return pd.DataFrame(out)


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


def _header(records: list[dict[str, Any]], domain: str) -> list[str]:
    recs = [r for r in records if r["domain"] == domain]
    commits = sorted({r["provenance"]["git_commit"] for r in recs})
    matrices = sorted({r["matrix"] for r in recs})
    devices = sorted({r["provenance"]["device"] for r in recs})
    packages = recs[0]["provenance"]["packages"] if recs else {}
    versions = sorted({r["dataset_version"] for r in recs})
    pk = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
    return [
        f"- matrix: {', '.join(matrices)}; dataset version: {', '.join(versions)}",
        f"- commit: {', '.join(commits)}; device: {', '.join(devices)}",
        f"- packages: {pk}",
    ]


def domain_markdown(
    summary: pd.DataFrame, records: list[dict[str, Any]], domain: str, n_expected: int
) -> str:
    s = summary[summary["domain"] == domain]
    lines = [f"# {domain}", "", *_header(records, domain), ""]
    lines.append(
        "Cells: mean ± sample standard deviation (ddof = 1) over seeds, (n) = number of seeds; "
        "`—` marks a missing cell with n/N seeds present."
    )
    metrics = list(dict.fromkeys(s.sort_values("primary", ascending=False, kind="stable")["metric"]))
    for metric in metrics:
        m = s[s["metric"] == metric]
        hib = bool(m["higher_is_better"].iloc[0])
        tag = " (primary)" if bool(m["primary"].iloc[0]) else ""
        unit = m["budget_unit"].iloc[0]
        budgets = sorted(m["budget"].unique())
        lines += ["", f"## {metric}{tag} — {'higher' if hib else 'lower'} is better", ""]
        lines.append("| method | " + " | ".join(f"{b} {unit}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        for method in sorted(m["method"].unique()):
            cells = []
            for b in budgets:
                row = m[(m["method"] == method) & (m["budget"] == b)]
                if row.empty:
                    cells.append(f"— (0/{n_expected})")
                    continue
                r = row.iloc[0]
                cell = f"{r['mean']:.3f} ± {_fmt(r['std'])} ({r['n']})"
                if r["n"] < n_expected:
                    cell = f"{cell} — {r['n']}/{n_expected} seeds"
                cells.append(cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboards(runs: Path, out: Path, quiet: bool = False) -> dict[str, Path]:
    """Write ``<domain>.csv`` and ``<domain>.md`` for every domain found under ``runs``."""
    records, problems = load_records(runs)
    if not quiet:
        for p in problems:
            print(f"skipped: {p}")
    if not records:
        raise FileNotFoundError(f"no results.jsonl records under {runs}; run `labelbudget run` first")
    summary = summarise(to_frame(records))
    out = Path(out)
    written = {}
    for domain in sorted(summary["domain"].unique()):
        seeds = {r["seed"] for r in records if r["domain"] == domain}
        csv = summary[summary["domain"] == domain].to_csv(
            index=False, float_format="%.6g", lineterminator="\n"
        )
        atomic_write_text(out / f"{domain}.csv", csv)
        atomic_write_text(out / f"{domain}.md", domain_markdown(summary, records, domain, len(seeds)))
        written[domain] = out / f"{domain}.md"
    return written
