"""Records -> leaderboards people can trust: statistics over seeds, paired comparisons, ranks, curves.

Input: every ``results.jsonl`` under a runs folder (one self-describing record per run and round,
written by ``benchmark.protocol.run_cell``). Output, in the ``out`` folder:

* ``<domain>.csv``: one long, machine-readable table. Column ``kind`` says what a row is:
  ``cell`` (a metric at one budget over seeds), ``paired`` (the paired difference to the
  ``supervised+random`` baseline over the seeds both have), ``aubc`` / ``aubc_paired`` (area under the
  budget curve, ``benchmark.metrics.efficiency.aubc``, per seed then over seeds), ``pct_reference``
  (percent of a full-supervision reference run) and ``compute`` (training/query seconds and images
  seen per run);
* ``<domain>.md``: a provenance header, the coverage matrix, one table per official metric (primary
  first; budgets as columns; cells ``mean ± 95 % CI (n)``), the paired differences, AUBC, % of full
  supervision and compute;
* ``overall.md``: mean rank across domains (ties averaged; a method is ranked only on domains where it
  is complete), the same per track, and the pairwise win/loss matrix;
* ``curves/<domain>.png``: each metric vs labelled images (or boxes), one line per method with its
  95 % CI band.

Statistics: per (domain, metric, method, budget) over seeds, n, mean, sample standard deviation
(ddof = 1), standard error and the 95 % confidence interval from Student's t with n - 1 degrees of
freedom. Every method of a seed starts from the same initial labelled set as ``supervised+random``,
so the paired difference (per seed, then the same t machinery) is far tighter than comparing two
unpaired intervals. Directions come from each record's ``higher_is_better`` (MR⁻², MAE: lower first).
Raw metric values are never averaged across domains: the overall summary uses ranks only.

Trust rules: records are validated against the schema (a bad line is reported with file and line
and skipped); records whose method/strategy version differs from the current registered code, or
whose dataset version is not the domain's newest in the folder, are stale: dropped and reported,
never mixed in; a (domain, method, seed) run by two different run ids keeps the newest run and
reports the other. Missing cells show ``—`` with ``n/N seeds``. The header (commit, date, matrix,
device, packages) comes from the records, never from the clock, so the same runs give the same bytes.

Reference runs: a record with ``"reference": true`` is a full-supervision result of its domain; "%
of full supervision" appears where one exists and is stated as absent otherwise (no built-in matrix
declares one yet).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.metrics.efficiency import aubc, labels_to_reach, percent_of_reference
from benchmark.ranks import N_BOOT, rank_analysis
from benchmark.results import atomic_write_text
from benchmark.spec import SCHEMA_VERSION

BASELINE = "supervised+random"
TRACKS = ("baseline", "AL-only", "SSL-only", "AL+SSL", "SFDA")
PM = "±"
CSV_COLUMNS = [
    "kind", "domain", "track", "method", "metric", "higher_is_better", "primary", "budget_unit",
    "budget", "n", "n_expected", "mean", "std", "se", "ci95", "ci_lo", "ci_hi", "seeds",
    "mean_n_labelled", "mean_n_labelled_boxes", "mean_train_s", "mean_images_seen",
    "rank", "rank_lo", "rank_hi", "tied_with",
]  # fmt: skip

_NUMERIC = set(CSV_COLUMNS[CSV_COLUMNS.index("budget") :]) - {"seeds", "tied_with"}

# field -> accepted types; a record missing one of these, or with a wrong type, is not used
_INT = (int,)
_STR = (str,)
_DICT = (dict,)
SCHEMA: dict[str, tuple[type, ...]] = {
    "schema_version": _INT,
    "run_id": _STR,
    "matrix": _STR,
    "domain": _STR,
    "dataset_version": _STR,
    "method": _STR,
    "trainer": _STR,
    "strategy": _STR,
    "paradigm": _DICT,
    "method_version": _STR,
    "strategy_version": _STR,
    "seed": _INT,
    "round": _INT,
    "budget_unit": _STR,
    "budget_target": _INT,
    "n_labelled": _INT,
    "n_labelled_boxes": _INT,
    "metrics": _DICT,
    "primary_metric": _STR,
    "higher_is_better": _DICT,
    "timing": _DICT,
    "provenance": _DICT,
}


# ------------------------------------------------------------------------------------- statistics


def t_halfwidth(std: float, n: int, level: float = 0.95) -> float:
    """Half-width of the t confidence interval of a mean (NaN for n < 2)."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def describe(values: Iterable[float]) -> dict[str, float | int]:
    """n, mean, sample std (ddof = 1), standard error and the 95 % t interval of ``values``."""
    v = np.asarray(list(values), dtype=np.float64)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "se": nan, "ci95": nan, "ci_lo": nan, "ci_hi": nan}
    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if n > 1 else float("nan")
    se = std / math.sqrt(n) if n > 1 else float("nan")
    hw = t_halfwidth(std, n)
    return {"n": n, "mean": mean, "std": std, "se": se, "ci95": hw, "ci_lo": mean - hw, "ci_hi": mean + hw}


def rank_scores(scores: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; tied scores share the average of their ranks (ties compared at 1e-9)."""
    if not scores:
        return {}
    s = pd.Series({k: round(v, 9) for k, v in scores.items()}, dtype=float)
    return {k: float(r) for k, r in s.rank(method="average", ascending=not higher_is_better).items()}


def ci_better(a: dict[str, Any], b: dict[str, Any], higher_is_better: bool) -> bool:
    """Whether a's 95 % CI lies wholly on the better side of b's (never with an undefined CI)."""
    vals = (a["ci_lo"], a["ci_hi"], b["ci_lo"], b["ci_hi"])
    if not all(math.isfinite(x) for x in vals):
        return False
    return a["ci_lo"] > b["ci_hi"] if higher_is_better else a["ci_hi"] < b["ci_lo"]


def track_of(paradigm: dict[str, str]) -> str:
    """The leaderboard track of a (trainer paradigm, strategy paradigm) pair."""
    trainer, strategy = paradigm.get("trainer", "supervised"), paradigm.get("strategy", "passive")
    if trainer == "sfda":
        return "SFDA"
    active = strategy != "passive"
    if trainer == "ssl":
        return "AL+SSL" if active else "SSL-only"
    return "AL-only" if active else "baseline"


# ---------------------------------------------------------------------------------------- loading


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _inside(path: Path, root: Path) -> Path:
    """``path`` when it resolves inside ``root`` (every output file of a leaderboard does)."""
    if not path.resolve().is_relative_to(root.resolve()):
        from domains.base import SpecError

        raise SpecError(f"refusing to write {path}: outside the output folder {root}")
    return path


def validate_record(rec: Any) -> str | None:
    """Why ``rec`` does not follow the record schema (``SCHEMA`` and the cross-field rules), or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if rec.get("schema_version") != SCHEMA_VERSION:
        return f"schema version {rec.get('schema_version')!r} != {SCHEMA_VERSION}"
    for key, types in SCHEMA.items():
        if key not in rec:
            return f"field {key!r} missing"
        if not isinstance(rec[key], types) or isinstance(rec[key], bool):
            return f"field {key!r} is {type(rec[key]).__name__}, expected {types[0].__name__}"
    if not _SAFE_NAME.fullmatch(rec["domain"]):  # it names output files: <out>/<domain>.md
        return f"domain {rec['domain'][:80]!r} is not a valid name ([A-Za-z0-9_.-]+, no leading dot)"
    if rec["budget_unit"] not in ("images", "boxes"):
        return f"budget_unit {rec['budget_unit']!r} is neither 'images' nor 'boxes'"
    if not rec["metrics"]:
        return "no metrics"
    for name, value in rec["metrics"].items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"metric {name!r} is not a number"
        if not isinstance(rec["higher_is_better"].get(name), bool):
            return f"higher_is_better of metric {name!r} missing"
    if rec["primary_metric"] not in rec["metrics"]:
        return f"primary metric {rec['primary_metric']!r} not among the metrics"
    if rec["method"] != f"{rec['trainer']}+{rec['strategy']}":
        return f"method {rec['method']!r} is not trainer+strategy"
    return None


def load_records(runs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every valid record of every ``results.jsonl`` under ``runs`` (sorted for stable output), and
    the problems found (``path:line: reason`` for unreadable or invalid lines; paths relative to
    ``runs``)."""
    runs = Path(runs)
    records, problems = [], []
    for f in sorted(runs.rglob("results.jsonl")):
        rel = f.relative_to(runs).as_posix()
        for i, line in enumerate(f.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{rel}:{i}: not JSON ({exc})")
                continue
            why = validate_record(rec)
            if why is not None:
                problems.append(f"{rel}:{i}: {why}")
                continue
            records.append(rec)
    records.sort(key=lambda r: (r["domain"], r["method"], r["seed"], r["round"], r["run_id"]))
    return records, problems


def load_specs(runs: Path) -> list[dict[str, Any]]:
    """The ``spec.json`` of every run folder (runs that never finished a round still count as
    expected in the coverage matrix)."""
    out = []
    for f in sorted(Path(runs).rglob("spec.json")):
        try:
            spec = json.loads(f.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if isinstance(spec, dict) and {"domain", "trainer", "strategy", "seed", "budgets"} <= set(spec):
            out.append(spec)
    return out


def registered_versions(rec: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(method version, strategy version, why-not) of the code registered now, built with the
    record's hyper-parameters (so only a code or default change makes a record stale)."""
    from benchmark.registry import METHODS, STRATEGIES
    from domains.base import SpecError

    hp = rec.get("hparams") or {}
    out: list[str | None] = []
    for reg, name, h in (
        (METHODS, rec["trainer"], hp.get("trainer", {})),
        (STRATEGIES, rec["strategy"], hp.get("strategy", {})),
    ):
        if name not in reg:
            return None, None, f"{reg.kind} {name!r} is no longer registered"
        try:
            out.append(reg.get(name)(**h).version())
        except (SpecError, TypeError, ValueError) as exc:
            return (
                None,
                None,
                f"cannot rebuild {reg.kind} {name!r} with the record's hyper-parameters ({exc})",
            )
    return out[0], out[1], ""


VersionFn = Callable[[dict[str, Any]], tuple[str | None, str | None, str]]


def drop_stale(
    records: list[dict[str, Any]], versions: VersionFn | None = registered_versions
) -> tuple[list[dict[str, Any]], list[str]]:
    """Split records into fresh ones and a report of dropped ones.

    Dropped: a method/strategy version that differs from ``versions(rec)`` (the registered code; pass
    None to skip this check, e.g. for archived runs); a dataset version other than the domain's newest
    in the folder (newest = latest ``finished_at``); and every run but the newest of a (domain, method,
    seed) run under several run ids (different schedules or budgets must never be mixed).
    """
    cache: dict[tuple[str, str, str], tuple[str | None, str | None, str]] = {}
    kept = []
    counts: dict[str, int] = defaultdict(int)
    for rec in records:
        if versions is not None:
            key = (rec["trainer"], rec["strategy"], json.dumps(rec.get("hparams"), sort_keys=True))
            if key not in cache:
                cache[key] = versions(rec)
            mv, sv, why = cache[key]
            if why:
                counts[f"{rec['domain']}/{rec['method']}: {why}"] += 1
                continue
            if rec["method_version"] != mv:
                counts[
                    f"{rec['domain']}/{rec['method']}: method version {rec['method_version']} != current {mv}"
                ] += 1
                continue
            if rec["strategy_version"] != sv:
                why = f"strategy version {rec['strategy_version']} != current {sv}"
                counts[f"{rec['domain']}/{rec['method']}: {why}"] += 1
                continue
        kept.append(rec)
    # newest dataset version per domain
    latest: dict[str, dict[str, str]] = defaultdict(dict)
    for rec in kept:
        fin = str(rec["provenance"].get("finished_at", ""))
        d = latest[rec["domain"]]
        d[rec["dataset_version"]] = max(d.get(rec["dataset_version"], ""), fin)
    newest = {dom: max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for dom, v in latest.items()}
    fresh = []
    for rec in kept:
        if rec["dataset_version"] != newest[rec["domain"]]:
            counts[
                f"{rec['domain']}/{rec['method']}: dataset version {rec['dataset_version']} "
                f"!= newest {newest[rec['domain']]}"
            ] += 1
            continue
        fresh.append(rec)
    # one run id per (domain, method, seed): keep the newest run
    runs: dict[tuple[str, str, int, bool], dict[str, str]] = defaultdict(dict)
    for rec in fresh:
        fin = str(rec["provenance"].get("finished_at", ""))
        d = runs[(rec["domain"], rec["method"], rec["seed"], bool(rec.get("reference", False)))]
        d[rec["run_id"]] = max(d.get(rec["run_id"], ""), fin)
    keep_run = {k: max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for k, v in runs.items()}
    out, seen = [], set()
    for rec in fresh:
        k = (rec["domain"], rec["method"], rec["seed"], bool(rec.get("reference", False)))
        if rec["run_id"] != keep_run[k]:
            counts[f"{rec['domain']}/{rec['method']}: run {rec['run_id']} superseded by {keep_run[k]}"] += 1
            continue
        if (rec["run_id"], rec["round"]) in seen:
            counts[f"{rec['domain']}/{rec['method']}: duplicate record of run {rec['run_id']}"] += 1
            continue
        seen.add((rec["run_id"], rec["round"]))
        out.append(rec)
    report = [f"{n} record(s) dropped, {why}" for why, n in sorted(counts.items())]
    return out, report


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


LONG_TAIL_NOTE = (
    "Mean per-class AP of the head / middle / tail classes (terciles of the pool's class frequency, "
    "benchmark.metrics.dota.class_groups), from the primary metric's per-class values."
)


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


# ------------------------------------------------------------------------------------ aggregation


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
    ranking: dict[str, Any] = field(default_factory=dict)  # benchmark.ranks.rank_analysis of the primary AUBC

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


# ---------------------------------------------------------------------------------------- markdown


def _fmt(x: Any, digits: int = 3, sign: bool = False) -> str:
    """Fixed decimals (``n/a`` when undefined); a value that rounds to zero never shows a minus."""
    if x is None or x == "" or not math.isfinite(float(x)):
        return "n/a"
    text = f"{float(x):{'+' if sign else ''}.{digits}f}"
    if float(text) == 0:
        text = text.replace("-", "+" if sign else "")
    return text


def _fmt_num(x: Any) -> str:
    """Large counts and seconds: no needless decimals."""
    if x is None or x == "" or not math.isfinite(float(x)):
        return "n/a"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def _real_data(r: dict[str, Any]) -> str:
    """A real dataset as the records name it: the matrix's label, the adapter options (DOTA version,
    fog beta, ...), the root's folder name and the content hash."""
    d = r["data"]
    opts = ", ".join(f"{k}={v}" for k, v in sorted((r.get("domain_options") or {}).items()) if v is not None)
    where = f"folder {d['root']}; version {r['dataset_version']}"
    return f"{d.get('dataset', r['domain'])} ({opts + '; ' if opts else ''}{where})"


def header_lines(records: list[dict[str, Any]]) -> list[str]:
    """Provenance from the records themselves: commit, date, matrix, device and packages."""
    commits = sorted({str(r["provenance"].get("git_commit", "unknown")) for r in records})
    matrices = sorted({r["matrix"] for r in records})
    devices = sorted({str(r["provenance"].get("device", "unknown")) for r in records})
    launchers = sorted({str(r["provenance"].get("launcher", "unknown")) for r in records})
    finished = sorted(
        str(r["provenance"].get("finished_at", "")) for r in records if r["provenance"].get("finished_at")
    )
    versions = sorted({r["dataset_version"] for r in records})
    packages: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for k, v in (r["provenance"].get("packages") or {}).items():
            packages[k].add(str(v))
    pk = ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items()))
    date = f"{finished[0]} … {finished[-1]}" if finished else "unknown"
    real = sorted({_real_data(r) for r in records if "root" in (r.get("data") or {})})
    return [
        f"- matrix: {', '.join(matrices)}; dataset version: {', '.join(versions)}",
        *([f"- real data: {'; '.join(real)}"] if real else []),
        f"- commit: {', '.join(commits)}",
        f"- runs finished: {date} (from the records)",
        f"- device: {', '.join(devices)}; launcher: {', '.join(launchers)}",
        f"- packages: {pk}",
    ]


def _cell_text(r: dict[str, Any] | None, n_expected: int, bold: bool = False) -> str:
    if r is None:
        return f"— (0/{n_expected} seeds)"
    n = int(r["n"])
    count = f"({n})" if n >= n_expected else f"({n}/{n_expected} seeds)"
    mean = _fmt(r["mean"])
    if bold:
        mean = f"**{mean}**"
    return f"{mean} {PM} {_fmt(r['ci95'])} {count}"


def _best(cands: list[dict[str, Any]], hib: bool) -> dict[str, Any] | None:
    """The best cell by mean if its CI does not overlap the runner-up's, else None."""
    cands = [c for c in cands if math.isfinite(float(c["mean"]))]
    if len(cands) < 2:
        return None
    order = sorted(cands, key=lambda c: (-c["mean"] if hib else c["mean"], c["method"]))
    best, second = order[0], order[1]
    return best if ci_better(best, second, hib) else None


def coverage_lines(board: DomainBoard) -> list[str]:
    n = board.n_expected
    lines = [
        f"Seeds with a record / expected seeds ({', '.join(str(s) for s in board.seeds)}) per budget.",
        "",
        "| method | track | " + " | ".join(f"{b} {board.unit}" for b in board.budgets) + " | complete |",
        "|---|---|" + "---|" * len(board.budgets) + "---|",
    ]
    for m in board.methods:
        cells = [f"{len(board.present.get((m, b), []))}/{n}" for b in board.budgets]
        lines.append(
            f"| {m} | {board.tracks.get(m, '?')} | "
            + " | ".join(cells)
            + f" | {'yes' if board.complete[m] else 'no'} |"
        )
    return lines


def domain_markdown(board: DomainBoard, records: list[dict[str, Any]], dropped: list[str]) -> str:
    b_cols = " | ".join(f"{b} {board.unit}" for b in board.budgets)
    n = board.n_expected
    lines = [f"# {board.domain}", "", *header_lines(records), ""]
    lines.append(
        f"Cells: mean {PM} half-width of the 95 % confidence interval of the mean (Student's t, n - 1 "
        f"degrees of freedom, from the sample standard deviation with ddof = 1) over seeds; (n) = seeds; "
        f"`—` marks a missing cell, `n/N seeds` an incomplete one. **Bold**: the best method of a column, "
        f"only where its CI does not overlap the runner-up's. The CSV beside this file has std and SE too."
    )
    lines += ["", "## Coverage", "", *coverage_lines(board)]
    if dropped:
        lines += ["", "Dropped or skipped (stale, superseded or invalid records, never mixed in):", ""]
        lines += [f"- {d}" for d in dropped]
    for metric in board.metrics:
        hib = board.hib[metric]
        tag = " (primary)" if metric == board.metrics[0] else ""
        lines += ["", f"## {metric}{tag} — {'higher' if hib else 'lower'} is better", ""]
        if metric == "MAE":
            lines += ["MAE is in [0, 1] here; papers often print MAE x 100.", ""]
        if metric.endswith(" classes"):
            lines += [LONG_TAIL_NOTE, ""]
        lines += [f"mean {PM} 95 % CI half-width (Student's t) (seeds); AUBC per seed, then the same.", ""]
        lines.append(f"| method | track | {b_cols} | AUBC |")
        lines.append("|---|---|" + "---|" * (len(board.budgets) + 1))
        best = {
            b: _best([r for r in (board.get("cell", m, metric, b) for m in board.methods) if r], hib)
            for b in board.budgets
        }
        aubc_best = _best([r for r in (board.get("aubc", m, metric) for m in board.methods) if r], hib)
        for m in board.methods:
            cells = []
            for b in board.budgets:
                r = board.get("cell", m, metric, b)
                cells.append(_cell_text(r, n, bold=r is not None and best[b] is r))
            a = board.get("aubc", m, metric)
            cells.append(_cell_text(a, n, bold=a is not None and aubc_best is a) if a else f"— (0/{n} seeds)")
            lines.append(f"| {m} | {board.tracks.get(m, '?')} | " + " | ".join(cells) + " |")
    # paired differences, primary metric
    primary = board.metrics[0]
    others = [m for m in board.methods if m != BASELINE]
    lines += ["", f"## Paired difference to {BASELINE} ({primary})", ""]
    if not others or not any(board.get("paired", m, primary) for m in others):
        lines.append(f"No paired comparison: {BASELINE} or the other methods are missing.")
    else:
        lines.append(
            f"Per seed, method − {BASELINE} (both start from the seed's initial labelled set); "
            f"mean {PM} 95 % t-CI of the differences, (n) = seed pairs; "
            f"{'positive' if board.hib[primary] else 'negative'} is better. `*` marks a CI that excludes 0."
        )
        lines += ["", f"| method | {b_cols} | AUBC |", "|---|" + "---|" * (len(board.budgets) + 1)]
        for m in others:
            cells = []
            for r in [board.get("paired", m, primary, b) for b in board.budgets] + [
                board.get("aubc_paired", m, primary)
            ]:
                if r is None:
                    cells.append(f"— (0/{n} seeds)")
                    continue
                sig = math.isfinite(r["ci_lo"]) and (r["ci_lo"] > 0 or r["ci_hi"] < 0)
                cells.append(
                    f"{_fmt(r['mean'], sign=True)} {PM} {_fmt(r['ci95'])} ({int(r['n'])}){'*' if sig else ''}"
                )
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", *rank_lines(board)]
    # percent of full supervision
    lines += ["", "## % of full supervision", ""]
    if not board.reference:
        lines.append("No full-supervision reference run in this matrix (a domain's `reference = true`).")
    else:
        refp = board.reference.get(primary) or describe([])
        lines.append(
            f"Mean of each cell as % of the reference mean ({primary} = {_fmt(refp['mean'])}, "
            f"{int(refp['n'])} seed(s), {_fmt_num(refp.get('n_labelled'))} labelled {board.unit}); labels "
            f"to reach 90 % of it (linear interpolation of the mean curve; for a lower-is-better metric "
            f"the target is the reference / 0.9)."
        )
        lines += ["", f"| method | {b_cols} | labels to 90 % |", "|---|" + "---|" * (len(board.budgets) + 1)]
        for m in board.methods:
            cells = []
            for b in board.budgets:
                r = board.get("pct_reference", m, primary, b)
                cells.append(f"{float(r['mean']):.1f} %" if r else "—")
            curve = [board.get("cell", m, primary, b) for b in board.budgets]
            reach = "—"
            if refp["n"] and all(curve):
                target = 0.9 * refp["mean"] if board.hib[primary] else refp["mean"] / 0.9
                got = labels_to_reach(board.budgets, [c["mean"] for c in curve], target, board.hib[primary])
                reach = "not reached" if got is None else f"{got:.0f}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {reach} |")
    # compute
    lines += ["", "## Compute per run (all rounds)", ""]
    lines.append(
        "Mean over seeds of each complete run's total on the recorded device (n = complete runs); images "
        "seen = iterations × batch size. "
        "A round 0 shared through the round-0 cache is charged at the cost of the run that trained it."
    )
    lines += ["", "| method | train s | query s | eval s | images seen | runs |", "|---|---|---|---|---|---|"]
    cols = ("train_s", "query_s", "eval_s", "images_seen")
    for m in board.methods:
        vals = [board.get("compute", m, f"{c}_per_run") for c in cols]
        runs = f"{int(vals[0]['n'])}/{n}" if vals[0] else f"0/{n}"
        lines.append(
            f"| {m} | " + " | ".join(_fmt_num(v["mean"]) if v else "—" for v in vals) + f" | {runs} |"
        )
    return "\n".join(lines) + "\n"


def rank_lines(board: DomainBoard) -> list[str]:
    """The ranks section of a domain's markdown (``benchmark.ranks``)."""
    primary = board.metrics[0]
    rk = board.ranking
    lines = [f"## Ranks (AUBC of {primary})", ""]
    if not rk.get("methods"):
        return [*lines, "No complete method to rank."]
    h1, h2 = rk["halves"]
    tau = rk["kendall_tau"]
    lines.append(
        "Methods complete on every seed and budget, over the seeds all of them have "
        f"({', '.join(map(str, rk['seeds']))}). Rank = 1 + the number of methods significantly better "
        "(paired 95 % t-CI of the per-seed AUBC difference excludes 0): methods no interval separates "
        "share a rank. Bootstrap: 95 % interval of the rank over resampled seeds "
        f"({N_BOOT} resamples, seeds paired across methods)."
    )
    lines.append("")
    if math.isfinite(tau):
        lines.append(
            f"Kendall τ between the rankings of seed halves ({' '.join(map(str, h1))} vs "
            f"{' '.join(map(str, h2))}): **{tau:.2f}** over {len(rk['methods'])} methods."
        )
    else:
        lines.append(f"Kendall τ between seed halves: n/a ({rk.get('note', '')}).")
    lines += [
        "",
        "| rank | method | mean AUBC | bootstrap rank 95 % | not separated from |",
        "|---|---|---|---|---|",
    ]
    order = sorted(
        rk["methods"].items(),
        key=lambda kv: (kv[1]["rank"], -kv[1]["mean"] if board.hib[primary] else kv[1]["mean"]),
    )
    ranks = [r["rank"] for _, r in order]
    for m, r in order:
        shared = "=" if ranks.count(r["rank"]) > 1 else ""
        tied = ", ".join(r["tied_with"]) or "—"
        lines.append(
            f"| {shared}{r['rank']} | {m} | {_fmt(r['mean'])} | "
            f"{r['rank_lo']:.1f}–{r['rank_hi']:.1f} | {tied} |"
        )
    return lines


def overall_markdown(boards: list[DomainBoard], records: list[dict[str, Any]]) -> str:
    lines = ["# Overall", "", *header_lines(records), ""]
    lines.append(
        "Raw metrics are never averaged across domains (their primary metrics differ). Per domain, methods "
        "are ranked by the mean over seeds of the AUBC of the domain's primary metric (1 = best, respecting "
        "its direction; ties share the average rank); a method is ranked only on domains where every seed "
        "and budget is present. Mean rank is over the domains where the method is ranked."
    )
    lines += [
        "",
        "Tracks: baseline = supervised trainer + passive (random) acquisition; AL-only = supervised + an "
        "active strategy; SSL-only = semi-supervised trainer + passive; AL+SSL = semi-supervised + active; "
        "SFDA = source-free domain adaptation.",
    ]
    ranks: dict[str, dict[str, float]] = defaultdict(dict)  # method -> domain -> rank
    track: dict[str, str] = {}
    for b in boards:
        track.update(b.tracks)
        scores = {}
        for m in b.methods:
            r = b.get("aubc", m, b.metrics[0])
            if b.complete.get(m) and r is not None:
                scores[m] = float(r["mean"])
        for m, rk in rank_scores(scores, b.hib[b.metrics[0]]).items():
            ranks[m][b.domain] = rk
    methods = sorted({m for b in boards for m in b.methods})
    doms = [b.domain for b in boards]

    def rank_table(members: list[str], title: str) -> list[str]:
        out = ["", title, ""]
        sub_ranks: dict[str, dict[str, float]] = defaultdict(dict)
        for b in boards:
            scores = {}
            for m in members:
                r = b.get("aubc", m, b.metrics[0])
                if b.complete.get(m) and r is not None:
                    scores[m] = float(r["mean"])
            for m, rk in rank_scores(scores, b.hib[b.metrics[0]]).items():
                sub_ranks[m][b.domain] = rk
        hdr = " | ".join(f"{b.domain} ({b.metrics[0]})" for b in boards)
        out += [
            f"| method | track | mean rank | ranked on | {hdr} |",
            "|---|---|---|---|" + "---|" * len(boards),
        ]
        rows = []
        for m in members:
            rr = sub_ranks.get(m, {})
            mean = float(np.mean(list(rr.values()))) if rr else float("nan")
            cells = [f"{rr[d]:g}" if d in rr else "— (incomplete)" for d in doms]
            rows.append((math.isnan(mean), mean, m, cells, len(rr)))
        for _, mean, m, cells, k in sorted(rows):
            mr = f"{mean:.2f}" if math.isfinite(mean) else "—"
            out.append(f"| {m} | {track.get(m, '?')} | {mr} | {k}/{len(doms)} | " + " | ".join(cells) + " |")
        return out

    lines += rank_table(methods, "## Mean rank, all methods")
    for t in TRACKS[1:]:
        members = [m for m in methods if track.get(m) == t]
        if members:
            base = [m for m in methods if m == BASELINE]
            lines += rank_table(base + members, f"## Track {t} (with the {BASELINE} baseline)")
    absent = [t for t in TRACKS[1:] if not any(track.get(m) == t for m in methods)]
    if absent:
        lines += ["", f"No method in track(s): {', '.join(absent)}."]
    # pairwise win/loss
    wins: dict[tuple[str, str], int] = defaultdict(int)
    n_cells = 0
    for b in boards:
        p = b.metrics[0]
        for budget in b.budgets:
            n_cells += 1
            cells = {m: b.get("cell", m, p, budget) for m in b.methods}
            for a in methods:
                for c in methods:
                    ra, rc = cells.get(a), cells.get(c)
                    if a != c and ra and rc and ci_better(ra, rc, b.hib[p]):
                        wins[(a, c)] += 1
    lines += [
        "",
        "## Pairwise wins",
        "",
        f"Row beats column in a (domain, budget) cell when the row's 95 % CI of the primary metric lies "
        f"wholly on the better side of the column's; {n_cells} cells in all.",
        "",
        "| row beats column | " + " | ".join(methods) + " | total wins |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for a in methods:
        cells = ["·" if a == c else str(wins[(a, c)]) for c in methods]
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {sum(wins[(a, c)] for c in methods)} |")
    # compute summary
    lines += ["", "## Compute", "", "Mean training seconds per run (all rounds) and images seen per run.", ""]
    lines += ["| method | " + " | ".join(doms) + " |", "|---|" + "---|" * len(doms)]
    for m in methods:
        cells = []
        for b in boards:
            t_s, im = b.get("compute", m, "train_s_per_run"), b.get("compute", m, "images_seen_per_run")
            cells.append(f"{_fmt_num(t_s['mean'])} s, {_fmt_num(im['mean'])} img" if t_s and im else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ plots


def plot_curves(board: DomainBoard, path: Path) -> None:
    """Each metric (up to four, primary first) vs mean labelled images (or boxes): one line per
    method, its 95 % CI band; the full-supervision reference as a dashed line where one exists.
    Drawn on a bare Agg ``Figure`` (no pyplot, so no global matplotlib state is touched)."""
    import matplotlib
    from matplotlib.figure import Figure

    metrics = board.metrics[:4]
    fig = Figure(figsize=(5.2 * len(metrics), 4.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    cmap = matplotlib.colormaps["tab10"]
    xkey = "mean_n_labelled_boxes" if board.unit == "boxes" else "mean_n_labelled"
    for ax, metric in zip(axes, metrics, strict=False):
        for i, m in enumerate(board.methods):
            rows = [r for r in (board.get("cell", m, metric, b) for b in board.budgets) if r]
            if not rows:
                continue
            x = np.array([r[xkey] for r in rows], dtype=float)
            y = np.array([r["mean"] for r in rows], dtype=float)
            hw = np.nan_to_num(np.array([r["ci95"] for r in rows], dtype=float))
            ns = sorted({int(r["n"]) for r in rows})
            seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
            color = "black" if m == BASELINE else cmap(i % 10)
            style = "--" if m == BASELINE or i >= 10 else "-"
            ax.plot(x, y, style, marker="o", lw=1.8, color=color, label=f"{m} ({seeds} seeds)")
            ax.fill_between(x, y - hw, y + hw, color=color, alpha=0.15, lw=0)
        ref = board.reference.get(metric)
        if ref:
            ax.axhline(ref["mean"], color="k", ls=":", lw=1.2, label="full supervision")
        ax.set_xlabel(f"labelled {'boxes' if board.unit == 'boxes' else 'images'} (mean over seeds)")
        ax.set_ylabel(f"{metric} ({'higher' if board.hib[metric] else 'lower'} is better)")
        ax.set_title(f"{board.domain}: {metric}{' (primary)' if metric == board.metrics[0] else ''}")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, max(1, len(labels))), fontsize=8)
    fig.suptitle(f"{board.domain}: mean over seeds; band = 95 % t confidence interval", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    from benchmark.results import atomic_write_bytes

    buf = io.BytesIO()  # rendered in memory, written through a unique temp file: two writers never race
    fig.savefig(buf, dpi=110, format="png")
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------------- main


def _csv_text(rows: list[dict[str, Any]]) -> str:
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    order = {"cell": 0, "paired": 1, "aubc": 2, "aubc_paired": 3, "pct_reference": 4, "compute": 5}
    df["_k"] = df["kind"].map(order)
    df["_b"] = pd.to_numeric(df["budget"], errors="coerce").fillna(-1)
    df = df.sort_values(["_k", "metric", "method", "_b"], kind="stable").drop(columns=["_k", "_b"])
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def coverage_text(boards: list[DomainBoard]) -> str:
    return "\n".join("\n".join([f"{b.domain}:", *coverage_lines(b)]) for b in boards)


def write_leaderboards(
    runs: Path,
    out: Path,
    quiet: bool = False,
    check_versions: bool = True,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``<domain>.csv``, ``<domain>.md``, ``overall.md`` and ``curves/<domain>.png`` for every
    domain found under ``runs``; returns domain -> markdown path. ``check_versions=False`` keeps records
    whose method version differs from the registered code (archived runs, the golden test)."""
    records, problems = load_records(runs)
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
