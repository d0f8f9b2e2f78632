"""A domain's board: the long table of every (record, metric), and every statistic the tables,
the CSV and the plots show (cells over seeds, paired differences to the baseline, AUBC, ranks, %
of the full-supervision reference, compute per run), as the rows of the long CSV."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.leaderboard.ranks import rank_analysis
from benchmark.leaderboard.stats import describe
from benchmark.metrics.efficiency import aubc, percent_of_reference

BASELINE = "supervised+random"
TRACKS = ("baseline", "AL-only", "SSL-only", "AL+SSL", "SFDA")

CSV_COLUMNS = [
    "kind", "domain", "track", "method", "metric", "higher_is_better", "primary", "budget_unit",
    "budget", "n", "n_expected", "mean", "std", "se", "ci95", "ci_lo", "ci_hi", "seeds",
    "mean_n_labelled", "mean_n_labelled_boxes", "mean_train_s", "mean_images_seen",
    "rank", "rank_lo", "rank_hi", "tied_with",
]  # fmt: skip

_NUMERIC = set(CSV_COLUMNS[CSV_COLUMNS.index("budget") :]) - {"seeds", "tied_with"}


def track_of(paradigm: dict[str, str]) -> str:
    """The leaderboard track of a (trainer paradigm, strategy paradigm) pair."""
    trainer, strategy = paradigm.get("trainer", "supervised"), paradigm.get("strategy", "passive")
    if trainer == "sfda":
        return "SFDA"
    active = strategy != "passive"
    if trainer == "ssl":
        return "AL+SSL" if active else "SSL-only"
    return "AL-only" if active else "baseline"


def charged_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record's timing, where a round 0 reused from the round-0 cache is charged the train
    seconds and images seen of the record that trained it (same domain, trainer, seed, labels)."""

    def key(r: dict[str, Any]) -> tuple:
        return (r["domain"], r["trainer"], r["seed"], r.get("labelled_sha256"), r["method_version"])

    trained = {
        key(r): r["timing"]
        for r in records
        if r["round"] == 0 and not r["timing"].get("round0_reused", False)
    }
    out = []
    for r in records:
        t = dict(r["timing"])
        src = trained.get(key(r)) if r["round"] == 0 and t.get("round0_reused", False) else None
        if src is not None:
            t.update(
                train_s=src.get("train_s", float("nan")), images_seen=src.get("images_seen", float("nan"))
            )
        out.append(t)
    return out


def _long_tail_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """The record's head / middle / tail class AP as extra (non-primary, higher-is-better) metrics."""
    lt = rec.get("long_tail") or {}
    out = {}
    for g in ("head", "middle", "tail"):
        v = lt.get(g)
        if v is not None and math.isfinite(float(v)):
            out[f"{lt.get('metric', 'AP')} {g} classes"] = float(v)
    return out


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, metric): the long table every statistic is computed from (timings as
    charged by ``charged_timing``)."""
    rows = []
    for rec, timing in zip(records, charged_timing(records), strict=True):
        extra = _long_tail_metrics(rec)
        for name, value in {**rec["metrics"], **extra}.items():
            rows.append(
                {
                    "domain": rec["domain"],
                    "method": rec["method"],
                    "trainer": rec["trainer"],
                    "strategy": rec["strategy"],
                    "track": track_of(rec["paradigm"]),
                    "reference": bool(rec.get("reference", False)),
                    "seed": rec["seed"],
                    "round": rec["round"],
                    "budget_unit": rec["budget_unit"],
                    "budget": rec["budget_target"],
                    "n_labelled": rec["n_labelled"],
                    "n_labelled_boxes": rec["n_labelled_boxes"],
                    "metric": name,
                    "value": float(value),
                    "higher_is_better": bool(rec["higher_is_better"].get(name, True)),
                    "primary": name == rec["primary_metric"],
                    "run_id": rec["run_id"],
                    "train_s": float(timing.get("train_s", float("nan"))),
                    "query_s": float(timing.get("query_s", float("nan"))),
                    "eval_s": float(timing.get("eval_s", float("nan"))),
                    "images_seen": float(timing.get("images_seen", float("nan"))),
                }
            )
    return pd.DataFrame(rows)


@dataclass
class DomainBoard:
    """Everything computed for one domain."""

    domain: str
    unit: str
    budgets: list[int]
    seeds: list[int]
    methods: list[str]
    tracks: dict[str, str]
    metrics: list[str]  # primary first
    hib: dict[str, bool]
    present: dict[tuple[str, int], list[int]]  # (method, budget) -> seeds with a record
    rows: list[dict[str, Any]] = field(default_factory=list)  # the long CSV rows
    complete: dict[str, bool] = field(default_factory=dict)
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> describe()
    ranking: dict[str, Any] = field(default_factory=dict)  # ranks.rank_analysis of the primary AUBC

    @property
    def n_expected(self) -> int:
        return len(self.seeds)

    def get(self, kind: str, method: str, metric: str, budget: int | None = None) -> dict[str, Any] | None:
        for r in self.rows:
            if r["kind"] == kind and r["method"] == method and r["metric"] == metric:
                if budget is None or r["budget"] == budget:
                    return r
        return None


def _row(kind: str, board: DomainBoard, method: str, metric: str, budget: Any, stats: dict, **extra) -> dict:
    row: dict[str, Any] = {c: (float("nan") if c in _NUMERIC else "") for c in CSV_COLUMNS}
    row.update(
        kind=kind,
        domain=board.domain,
        track=board.tracks.get(method, ""),
        method=method,
        metric=metric,
        higher_is_better=board.hib.get(metric, ""),
        primary=metric == board.metrics[0] if metric in board.hib else "",
        budget_unit=board.unit,
        budget=budget,
        n_expected=board.n_expected,
        **stats,
        **extra,
    )
    return row


def build_domain(domain: str, df: pd.DataFrame, specs: list[dict[str, Any]]) -> DomainBoard:
    """All statistics of one domain (``df``: the fresh long table of that domain)."""
    main = df[~df["reference"]]
    ref = df[df["reference"]]
    unit = str(main["budget_unit"].iloc[0]) if len(main) else str(df["budget_unit"].iloc[0])
    dom_specs = [s for s in specs if s["domain"] == domain and not s.get("reference", False)]
    budgets = sorted(set(int(b) for b in main["budget"]) | {int(b) for s in dom_specs for b in s["budgets"]})
    seeds = sorted(set(int(s) for s in main["seed"]) | {int(s["seed"]) for s in dom_specs})
    methods = sorted(set(main["method"]) | {f"{s['trainer']}+{s['strategy']}" for s in dom_specs})
    first = df.drop_duplicates("metric")
    primary = [m for m in first["metric"] if bool(first[first["metric"] == m]["primary"].iloc[0])]
    # the official metrics in record order (primary first), then the derived long-tail groups
    metrics = primary + [m for m in first["metric"] if m not in primary and not m.endswith(" classes")]
    metrics += [m for m in first["metric"] if m.endswith(" classes")]
    hib = {m: bool(first[first["metric"] == m]["higher_is_better"].iloc[0]) for m in metrics}
    tracks = dict(zip(main["method"], main["track"], strict=False))
    present: dict[tuple[str, int], list[int]] = {}
    g = main[main["metric"] == metrics[0]]
    for (method, budget), part in g.groupby(["method", "budget"]):
        present[(str(method), int(budget))] = sorted(int(s) for s in part["seed"])
    board = DomainBoard(domain, unit, budgets, seeds, methods, tracks, metrics, hib, present)
    board.complete = {
        m: all(present.get((m, b), []) == seeds for b in budgets) and bool(budgets) for m in methods
    }

    # per (method, budget, metric) cells
    for (method, metric, budget), part in main.groupby(["method", "metric", "budget"], sort=True):
        stats = describe(part["value"])
        board.rows.append(
            _row(
                "cell",
                board,
                str(method),
                str(metric),
                int(budget),
                stats,
                seeds=" ".join(str(s) for s in sorted(part["seed"])),
                mean_n_labelled=float(part["n_labelled"].mean()),
                mean_n_labelled_boxes=float(part["n_labelled_boxes"].mean()),
                mean_train_s=float(part["train_s"].mean()),
                mean_images_seen=float(part["images_seen"].mean()),
            )
        )
    # paired differences to the baseline, per budget
    base = main[main["method"] == BASELINE].set_index(["metric", "budget", "seed"])["value"]
    for (method, metric, budget), part in main.groupby(["method", "metric", "budget"], sort=True):
        if method == BASELINE or base.empty:
            continue
        pairs = [
            (int(s), v - base[(metric, budget, s)])
            for s, v in zip(part["seed"], part["value"], strict=True)
            if (metric, budget, s) in base.index
        ]
        if pairs:
            board.rows.append(
                _row(
                    "paired",
                    board,
                    str(method),
                    str(metric),
                    int(budget),
                    describe(d for _, d in pairs),
                    seeds=" ".join(str(s) for s, _ in sorted(pairs)),
                )
            )
    # AUBC per seed over complete curves, then over seeds; paired to the baseline
    curves: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for (method, metric, seed), part in main.groupby(["method", "metric", "seed"], sort=True):
        if sorted(int(b) for b in part["budget"]) == budgets and bool(part["value"].notna().all()):
            curves[(str(method), str(metric))][int(seed)] = aubc(part["budget"], part["value"])
    for (method, metric), per_seed in sorted(curves.items()):
        board.rows.append(
            _row(
                "aubc",
                board,
                method,
                metric,
                float("nan"),
                describe(per_seed.values()),
                seeds=" ".join(str(s) for s in sorted(per_seed)),
            )
        )
        base_curve = curves.get((BASELINE, metric), {})
        if method != BASELINE and base_curve:
            common = sorted(set(per_seed) & set(base_curve))
            if common:
                board.rows.append(
                    _row(
                        "aubc_paired",
                        board,
                        method,
                        metric,
                        float("nan"),
                        describe(per_seed[s] - base_curve[s] for s in common),
                        seeds=" ".join(str(s) for s in common),
                    )
                )
    # ranks with ties, bootstrap rank intervals, seed-half agreement (complete methods, primary AUBC)
    primary_curves = {m: curves.get((m, metrics[0]), {}) for m in methods if board.complete.get(m)}
    board.ranking = rank_analysis(primary_curves, hib[metrics[0]])
    for m, r in board.ranking["methods"].items():
        board.rows.append(
            _row(
                "rank",
                board,
                m,
                metrics[0],
                float("nan"),
                {"n": len(board.ranking["seeds"]), "mean": r["mean"]},
                seeds=" ".join(str(s) for s in board.ranking["seeds"]),
                rank=r["rank"],
                rank_lo=r["rank_lo"],
                rank_hi=r["rank_hi"],
                tied_with=" ".join(r["tied_with"]),
            )
        )
    if board.ranking["methods"]:
        h1, h2 = board.ranking["halves"]
        board.rows.append(
            _row(
                "rank_stability",
                board,
                "",
                metrics[0],
                float("nan"),
                {"n": len(board.ranking["seeds"]), "mean": board.ranking["kendall_tau"]},
                seeds=" ".join(map(str, h1)) + " | " + " ".join(map(str, h2)),
            )
        )
        sp = board.ranking.get("tau_splits") or {}
        if sp:
            board.rows.append(
                _row(
                    "rank_stability_cuts",
                    board,
                    "",
                    metrics[0],
                    float("nan"),
                    {"n": sp["n"], "mean": sp["mean"], "ci_lo": sp["min"], "ci_hi": sp["max"]},
                    seeds=" ".join(str(s) for s in board.ranking["seeds"]),
                )
            )
    # percent of the full-supervision reference
    for metric, part in ref.groupby("metric", sort=True):
        board.reference[str(metric)] = {
            **describe(part["value"]),
            "n_labelled": float(part["n_labelled"].mean()),
        }
    for metric, refstats in board.reference.items():
        for r in [r for r in board.rows if r["kind"] == "cell" and r["metric"] == metric]:
            pct = percent_of_reference(r["mean"], refstats["mean"])
            board.rows.append(
                _row(
                    "pct_reference",
                    board,
                    r["method"],
                    metric,
                    r["budget"],
                    {"n": r["n"], "mean": pct},
                    seeds=r["seeds"],
                )
            )
    # compute: totals per complete run (every budget present), over seeds
    prim = main[main["metric"] == metrics[0]]
    n_rounds = prim.groupby(["method", "seed"])["budget"].transform("nunique")
    per_run = prim[n_rounds == len(budgets)].groupby(["method", "seed"], sort=True)
    totals = per_run[["train_s", "query_s", "eval_s", "images_seen"]].sum(min_count=1).reset_index()
    for method, part in totals.groupby("method", sort=True):
        for col in ("train_s", "query_s", "eval_s", "images_seen"):
            board.rows.append(
                _row(
                    "compute",
                    board,
                    str(method),
                    f"{col}_per_run",
                    float("nan"),
                    describe(part[col]),
                    seeds=" ".join(str(s) for s in sorted(part["seed"])),
                )
            )
    return board
