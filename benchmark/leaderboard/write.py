"""``write_leaderboards``: a runs folder's records -> the CSV, markdown and plots of every domain and
``overall.md``, every file written atomically inside the output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.leaderboard.boards import CSV_COLUMNS, build_domain, to_frame
from benchmark.leaderboard.load import drop_stale, load_records, load_specs, registered_versions
from benchmark.leaderboard.markdown import coverage_text, domain_markdown, overall_markdown
from benchmark.leaderboard.plots import plot_curves
from benchmark.results import atomic_write_text


def _inside(path: Path, root: Path) -> Path:
    """``path`` when it resolves inside ``root`` (every output file of a leaderboard does)."""
    if not path.resolve().is_relative_to(root.resolve()):
        from domains.base import SpecError

        raise SpecError(f"refusing to write {path}: outside the output folder {root}")
    return path


def _csv_text(rows: list[dict[str, Any]]) -> str:
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    order = {"cell": 0, "paired": 1, "aubc": 2, "aubc_paired": 3, "pct_reference": 4, "compute": 5}
    df["_k"] = df["kind"].map(order)
    df["_b"] = pd.to_numeric(df["budget"], errors="coerce").fillna(-1)
    df = df.sort_values(["_k", "metric", "method", "_b"], kind="stable").drop(columns=["_k", "_b"])
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def validation_view(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records as scored on the pool's held-out validation part (``record["validation"]``), for
    choosing defaults without looking at the test split; records without one are left out (listed)."""
    out, skipped = [], []
    for r in records:
        v = r.get("validation")
        if not v:
            skipped.append(
                f"{r['domain']}/{r['method']}/seed{r['seed']} round {r['round']}: no validation scores"
            )
            continue
        out.append(
            {
                **r,
                "metrics": v["metrics"],
                "primary_metric": v["primary"],
                "per_class": {},
                "long_tail": {},
                "eval_split": "validation",
                "n_test": v["n"],
            }
        )
    return out, skipped


def write_leaderboards(
    runs: Path,
    out: Path,
    quiet: bool = False,
    check_versions: bool = True,
    plots: bool = True,
    split: str = "test",
) -> dict[str, Path]:
    """Write ``<domain>.csv``, ``<domain>.md``, ``overall.md`` and ``curves/<domain>.png`` for every
    domain found under ``runs``; returns domain -> markdown path. ``check_versions=False`` keeps records
    whose method version differs from the registered code (archived runs, the golden test)."""
    records, problems = load_records(runs)
    if split == "validation":
        records, skipped = validation_view(records)
        problems = problems + skipped
    elif split != "test":
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    if not records:
        raise FileNotFoundError(f"no valid results.jsonl records under {runs}; run `labelbudget run` first")
    fresh, dropped = drop_stale(records, registered_versions if check_versions else None)
    if not quiet:
        for p in problems:
            print(f"skipped: {p}")
        for d in dropped:
            print(f"stale: {d}")
    if not fresh:
        raise FileNotFoundError(f"every record under {runs} is stale; re-run the matrix")
    specs = load_specs(runs)
    df = to_frame(fresh)
    out = Path(out)
    boards, written = [], {}
    for domain in sorted(df["domain"].unique()):
        recs = [r for r in fresh if r["domain"] == domain]
        if all(r.get("reference", False) for r in recs):
            if not quiet:
                print(f"{domain}: only full-supervision reference records, no table written")
            continue
        version = recs[0]["dataset_version"]
        dspecs = [s for s in specs if s.get("dataset_version", version) == version]
        board = build_domain(domain, df[df["domain"] == domain], dspecs)
        boards.append(board)
        dom_dropped = [d for d in dropped if d.split(", ", 1)[1].startswith(f"{domain}/")]
        atomic_write_text(_inside(out / f"{domain}.csv", out), _csv_text(board.rows))
        atomic_write_text(
            _inside(out / f"{domain}.md", out), domain_markdown(board, recs, dom_dropped + problems)
        )
        if plots:
            plot_curves(board, _inside(out / "curves" / f"{domain}.png", out))
        written[domain] = out / f"{domain}.md"
    if not boards:
        raise FileNotFoundError(f"no benchmark records under {runs}, only full-supervision reference runs")
    atomic_write_text(out / "overall.md", overall_markdown(boards, fresh))
    if not quiet:
        print(coverage_text(boards))
    return written
