"""The records a leaderboard is made from: every valid record under a runs folder (the schema is
``benchmark.records``), the run specs (expected cells), and staleness: records of code that is no
longer registered, of an older dataset version, or of a superseded run are dropped and reported,
never mixed in."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.records import load_results, validate
from benchmark.registry import METHODS, STRATEGIES
from benchmark.spec import parse_trainer
from domains.base import SpecError


def validate_record(rec: Any) -> str | None:
    """Why ``rec`` does not follow the record schema (``benchmark.records.validate``), or None."""
    return validate(rec)


def load_records(runs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every valid record of every ``results.jsonl`` under ``runs`` (sorted for stable output), and
    the problems found (``path:line: reason`` for unreadable or invalid lines; paths relative to
    ``runs``)."""
    records, problems = load_results(runs)
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
    hp = rec.get("hparams") or {}
    out: list[str | None] = []
    # a trainer with hyper-parameters ("supervised[labelled_view=weak]") is its registered base name;
    # the record's hyper-parameters (all of them, its own settings included) rebuild it
    for reg, name, h in (
        (METHODS, parse_trainer(rec["trainer"])[0], hp.get("trainer", {})),
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
