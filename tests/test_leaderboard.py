"""Leaderboard tables from hand-written records: mean, sample std, n, missing cells."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from benchmark.leaderboard import load_records, t_halfwidth, write_leaderboards
from benchmark.spec import SCHEMA_VERSION


def rec(method, seed, rnd, budget, value):
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{method}-{seed}",
        "matrix": "hand",
        "domain": "dota",
        "dataset_version": "v",
        "method": method,
        "trainer": method.split("+")[0],
        "strategy": method.split("+")[1],
        "seed": seed,
        "round": rnd,
        "budget_unit": "images",
        "budget_target": budget,
        "n_labelled": budget,
        "n_labelled_boxes": budget * 3,
        "metrics": {"mAP50": value, "mAP50-95": value / 2},
        "higher_is_better": {"mAP50": True, "mAP50-95": True},
        "primary_metric": "mAP50",
        "timing": {"train_s": 1.0},
        "provenance": {"git_commit": "abc", "device": "cpu", "packages": {"torch": "x"}},
    }


def write_runs(root, recs):
    by_run = {}
    for r in recs:
        by_run.setdefault(r["run_id"], []).append(r)
    for rid, rs in by_run.items():
        d = root / rid
        d.mkdir(parents=True)
        (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def test_statistics_and_markdown(tmp_path):
    recs = [rec("supervised+random", s, 0, 10, v) for s, v in enumerate([0.2, 0.4, 0.6])]
    recs += [rec("supervised+random", s, 1, 20, v) for s, v in enumerate([0.5, 0.5, 0.8])]
    recs += [rec("supervised+entropy", s, 0, 10, v) for s, v in enumerate([0.1, 0.3])]  # seed 2 missing
    write_runs(tmp_path / "runs", recs)
    write_leaderboards(tmp_path / "runs", tmp_path / "lb", quiet=True)
    df = pd.read_csv(tmp_path / "lb" / "dota.csv")
    row = df[(df.method == "supervised+random") & (df.budget == 10) & (df.metric == "mAP50")].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.4) and row["std"] == pytest.approx(0.2)
    assert row["ci95"] == pytest.approx(4.302652729911275 * 0.2 / math.sqrt(3), rel=1e-5)
    md = (tmp_path / "lb" / "dota.md").read_text()
    assert "| supervised+random | 0.400 ± 0.200 (3) | 0.600 ± 0.173 (3) |" in md
    assert "| supervised+entropy | 0.200 ± 0.141 (2) — 2/3 seeds | — (0/3) |" in md
    assert "## mAP50 (primary) — higher is better" in md
    assert "commit: abc" in md


def test_unknown_schema_is_reported_not_mixed(tmp_path):
    bad = rec("supervised+random", 0, 0, 10, 0.5)
    bad["schema_version"] = 999
    write_runs(tmp_path / "runs", [bad, rec("supervised+entropy", 0, 0, 10, 0.5)])
    recs, problems = load_records(tmp_path / "runs")
    assert len(recs) == 1 and "schema version 999" in problems[0]


def test_t_halfwidth():
    assert math.isnan(t_halfwidth(0.1, 1))
    assert t_halfwidth(1.0, 2) == pytest.approx(12.706204736174698 / math.sqrt(2))
