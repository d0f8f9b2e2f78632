"""Leaderboards: hand-computed statistics on hand-written records, stale and incomplete runs, and the
golden mini-sweep (committed run folders -> committed tables, byte for byte).

Golden files. ``tests/golden/sweep`` is a real sweep of ``tests/golden/matrix.toml`` (synthetic DOTA,
supervised+random and supervised+entropy, budgets 8/16/24, seeds 0-2) with one run cut short (seed 2
of supervised+entropy lost its last round, as a killed run would), so the incomplete-run rendering is
covered too. ``tests/golden/expected`` holds the tables made from it. To regenerate both (only when the
record schema or the leaderboard's output format changes on purpose; review the diff)::

    export LABELBUDGET_CACHE=/tmp/lbcache-golden
    rm -rf tests/golden/sweep tests/golden/expected
    labelbudget run tests/golden/matrix.toml --launcher serial --out tests/golden/sweep \\
        --leaderboards /tmp/golden-lb
    rm -rf tests/golden/sweep/_cache && find tests/golden/sweep -name predictions.json -delete
    cd tests/golden/sweep/dota/supervised+entropy/seed2/*/ && rm -rf round2 DONE \\
        && sed -i '3,$d' results.jsonl && cd -
    python -c "from benchmark.leaderboard import write_leaderboards as w; \\
        w('tests/golden/sweep', 'tests/golden/expected', quiet=True, check_versions=False, plots=False)"

The golden comparison passes ``check_versions=False``: the committed records keep the method versions
of the code that made them, and a later edit of ``baselines/supervised.py`` must not turn the golden
test into a staleness test (staleness has its own tests below).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.leaderboard import (
    describe,
    drop_stale,
    load_records,
    rank_scores,
    registered_versions,
    t_halfwidth,
    track_of,
    write_leaderboards,
)
from benchmark.records import SCHEMA_VERSION

GOLDEN = Path(__file__).parents[1] / "golden"
T975 = {2: 12.706204736174698, 3: 4.302652729911275, 4: 3.182446305284263}  # t_{0.975, n-1} by n


def rec(method, seed, rnd, budget, value, domain="dota", metric="mAP50", hib=True, **extra):
    trainer, strategy = method.split("+")
    paradigm = {
        "trainer": "ssl" if trainer.startswith("ssl") else "supervised",
        "strategy": "passive" if strategy == "random" else "al",
    }
    r = {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{domain}-{method}-{seed}",
        "matrix": "hand",
        "domain": domain,
        "dataset_version": "v",
        "method": method,
        "trainer": trainer,
        "strategy": strategy,
        "paradigm": paradigm,
        "method_version": "m1",
        "strategy_version": "s1",
        "hparams": {"trainer": {}, "strategy": {}},
        "seed": seed,
        "round": rnd,
        "n_rounds": 3,
        "budget_unit": "images",
        "budget_target": budget,
        "n_labelled": budget,
        "n_labelled_boxes": budget * 3,
        "labelled_sha256": f"{seed}-{budget}",
        "metrics": {metric: value, f"{metric}-b": value / 2},
        "higher_is_better": {metric: hib, f"{metric}-b": hib},
        "primary_metric": metric,
        "timing": {
            "train_s": 1.0,
            "query_s": 0.5,
            "eval_s": 0.25,
            "images_seen": 100,
            "round0_reused": False,
        },
        "provenance": {
            "git_commit": "abc",
            "device": "cpu",
            "launcher": "serial",
            "packages": {"torch": "x"},
            "finished_at": f"2026-01-0{seed + 1}T00-00-0{rnd}Z",
        },
    }
    r.update(extra)
    return r


def curve(method, values_by_seed, budgets=(10, 20, 40), **kw):
    """Records of one method: values_by_seed[seed] = one value per budget."""
    return [
        rec(method, s, r, b, v, **kw)
        for s, vals in enumerate(values_by_seed)
        for r, (b, v) in enumerate(zip(budgets, vals, strict=True))
    ]


def write_runs(root, recs):
    by_run = {}
    for r in recs:
        by_run.setdefault(r["run_id"], []).append(r)
    for rid, rs in by_run.items():
        d = root / rid
        d.mkdir(parents=True)
        (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def board(tmp_path, recs, plots=False):
    write_runs(tmp_path / "runs", recs)
    write_leaderboards(tmp_path / "runs", tmp_path / "lb", quiet=True, check_versions=False, plots=plots)
    return tmp_path / "lb"


def csv_row(lb, kind, method, metric="mAP50", budget=None, domain="dota"):
    df = pd.read_csv(lb / f"{domain}.csv")
    df = df[(df.kind == kind) & (df.method == method) & (df.metric == metric)]
    if budget is not None:
        df = df[df.budget == budget]
    assert len(df) == 1, df
    return df.iloc[0]


# ------------------------------------------------------------------------------ hand-computed stats


def test_t_halfwidth():
    assert math.isnan(t_halfwidth(0.1, 1))
    assert t_halfwidth(1.0, 2) == pytest.approx(12.706204736174698 / math.sqrt(2))


def test_describe_by_hand():
    d = describe([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # ddof = 1: 1.2910
    assert d["n"] == 4 and d["mean"] == 2.5 and d["std"] == pytest.approx(std)
    assert d["se"] == pytest.approx(std / 2)
    assert d["ci95"] == pytest.approx(T975[4] * std / 2)
    assert (d["ci_lo"], d["ci_hi"]) == pytest.approx((2.5 - d["ci95"], 2.5 + d["ci95"]))
    one = describe([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["std"]) and math.isnan(one["ci95"])


def test_ranks_with_ties_and_direction():
    assert rank_scores({"a": 0.5, "b": 0.5, "c": 0.7}, True) == {"a": 2.5, "b": 2.5, "c": 1.0}
    assert rank_scores({"a": 0.5, "b": 0.5, "c": 0.7}, False) == {"a": 1.5, "b": 1.5, "c": 3.0}
    # float noise does not break a tie
    assert rank_scores({"a": 0.1 + 0.2, "b": 0.3}, True) == {"a": 1.5, "b": 1.5}


def test_tracks():
    assert track_of({"trainer": "supervised", "strategy": "passive"}) == "baseline"
    assert track_of({"trainer": "supervised", "strategy": "al"}) == "AL-only"
    assert track_of({"trainer": "ssl", "strategy": "passive"}) == "SSL-only"
    assert track_of({"trainer": "ssl", "strategy": "al"}) == "AL+SSL"
    assert track_of({"trainer": "sfda", "strategy": "al"}) == "SFDA"


def test_statistics_and_markdown(tmp_path):
    recs = [rec("supervised+random", s, 0, 10, v) for s, v in enumerate([0.2, 0.4, 0.6])]
    recs += [rec("supervised+random", s, 1, 20, v) for s, v in enumerate([0.5, 0.5, 0.8])]
    recs += [rec("supervised+entropy", s, 0, 10, v) for s, v in enumerate([0.1, 0.3])]  # seed 2 missing
    lb = board(tmp_path, recs)
    row = csv_row(lb, "cell", "supervised+random", budget=10)
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.4) and row["std"] == pytest.approx(0.2)
    assert row["se"] == pytest.approx(0.2 / math.sqrt(3), rel=1e-5)
    assert row["ci95"] == pytest.approx(T975[3] * 0.2 / math.sqrt(3), rel=1e-5)
    assert row["track"] == "baseline" and row["seeds"] == "0 1 2"
    md = (lb / "dota.md").read_text()
    # cells are mean ± 95 % t-CI (n): 4.3027 * 0.2 / sqrt(3) = 0.497; 4.3027 * 0.1732 / sqrt(3) = 0.430
    assert "| supervised+random | baseline | 0.400 ± 0.497 (3) | 0.600 ± 0.430 (3) |" in md
    # 0.1, 0.3: std 0.1414, t(1) = 12.706 -> 1.271; the 20-image cell is missing
    assert "| supervised+entropy | AL-only | 0.200 ± 1.271 (2/3 seeds) | — (0/3 seeds) |" in md
    assert "## mAP50 (primary) — higher is better" in md
    assert "half-width of the 95 % confidence interval" in md  # the table says what ± is
    assert "commit: abc" in md


def test_aubc_paired_difference_and_compute(tmp_path):
    base = [[0.2, 0.4, 0.5], [0.4, 0.5, 0.6], [0.6, 0.7, 0.9]]
    # per seed the AL method is better by 0.05, 0.07, 0.03 at every budget
    al = [[v + d for v in vals] for vals, d in zip(base, [0.05, 0.07, 0.03], strict=True)]
    lb = board(tmp_path, curve("supervised+random", base) + curve("supervised+entropy", al))
    # AUBC of seed 0: (10 * (0.2 + 0.4) / 2 + 20 * (0.4 + 0.5) / 2) / 30 = (3 + 9) / 30 = 0.4
    per_seed = [(10 * (a + b) / 2 + 20 * (b + c) / 2) / 30 for a, b, c in base]
    assert per_seed[0] == pytest.approx(0.4)
    a = csv_row(lb, "aubc", "supervised+random")
    assert a["n"] == 3 and a["mean"] == pytest.approx(sum(per_seed) / 3)
    sd = pd.Series(per_seed).std(ddof=1)
    assert a["ci95"] == pytest.approx(T975[3] * sd / math.sqrt(3), rel=1e-5)
    # paired differences: mean 0.05, std 0.02 -> CI 4.3027 * 0.02 / sqrt(3) = 0.0497
    p = csv_row(lb, "paired", "supervised+entropy", budget=20)
    assert p["mean"] == pytest.approx(0.05) and p["std"] == pytest.approx(0.02)
    assert p["ci95"] == pytest.approx(T975[3] * 0.02 / math.sqrt(3), rel=1e-5)
    unpaired = csv_row(lb, "cell", "supervised+entropy", budget=20)
    assert p["ci95"] < unpaired["ci95"] / 5  # pairing removes the seed-to-seed spread
    ap = csv_row(lb, "aubc_paired", "supervised+entropy")
    assert ap["mean"] == pytest.approx(0.05)
    md = (lb / "dota.md").read_text()
    assert "| supervised+entropy | +0.050 ± 0.050 (3)* | +0.050 ± 0.050 (3)* | +0.050 ± 0.050 (3)* |" in md
    # compute: 3 rounds × 1 s train and 100 images per run
    c = csv_row(lb, "compute", "supervised+random", metric="train_s_per_run")
    assert c["mean"] == pytest.approx(3.0) and c["n"] == 3
    assert csv_row(lb, "compute", "supervised+random", metric="images_seen_per_run")["mean"] == 300
    assert "No full-supervision reference run" in md


def test_round0_reuse_is_charged_to_the_run(tmp_path):
    recs = curve("supervised+random", [[0.1, 0.2, 0.3]] * 3) + curve(
        "supervised+entropy", [[0.1, 0.2, 0.3]] * 3
    )
    for r in recs:
        if r["method"] == "supervised+random" and r["round"] == 0:
            r["timing"] = {**r["timing"], "train_s": 5.0, "images_seen": 400}
        if r["method"] == "supervised+entropy" and r["round"] == 0:
            r["timing"] = {**r["timing"], "train_s": 0.01, "images_seen": 0, "round0_reused": True}
    lb = board(tmp_path, recs)
    for m in ("supervised+random", "supervised+entropy"):
        assert csv_row(lb, "compute", m, metric="train_s_per_run")["mean"] == pytest.approx(7.0)
        assert csv_row(lb, "compute", m, metric="images_seen_per_run")["mean"] == 600


def test_bold_only_without_overlap(tmp_path):
    recs = curve("supervised+random", [[0.10, 0.20, 0.30], [0.11, 0.21, 0.31], [0.12, 0.22, 0.32]])
    # entropy: far better at 40 images (CI disjoint), overlapping at 10 and 20
    recs += curve("supervised+entropy", [[0.10, 0.15, 0.60], [0.12, 0.30, 0.61], [0.11, 0.19, 0.62]])
    lb = board(tmp_path, recs)
    md = (lb / "dota.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| supervised+entropy | AL-only | 0.110"))
    cells = line.split(" | ")
    assert "**" not in cells[2] and "**" not in cells[3] and cells[4].startswith("**0.610**")
    assert "**" not in next(
        x for x in md.splitlines() if x.startswith("| supervised+random | baseline | 0.110")
    )


def test_overall_ranks_directions_and_wins(tmp_path):
    # dota (higher is better): random 0.2, entropy 0.5, ssl 0.5 (a tie)
    recs = curve("supervised+random", [[0.2] * 3, [0.21] * 3, [0.19] * 3])
    recs += curve("supervised+entropy", [[0.5] * 3, [0.51] * 3, [0.49] * 3])
    recs += curve("sslx+random", [[0.5] * 3, [0.49] * 3, [0.51] * 3])
    # ped (MR-2: lower is better): entropy 0.3 is best, random 0.6; ssl incomplete (seed 2 missing)
    kw = {"domain": "ped", "metric": "MR-2", "hib": False}
    recs += curve("supervised+random", [[0.6] * 3, [0.61] * 3, [0.59] * 3], **kw)
    recs += curve("supervised+entropy", [[0.3] * 3, [0.31] * 3, [0.29] * 3], **kw)
    recs += curve("sslx+random", [[0.1] * 3, [0.1] * 3], **kw)
    lb = board(tmp_path, recs)
    md = (lb / "overall.md").read_text()
    table = md.split("## Mean rank, all methods")[1].split("##")[0]
    # entropy: 1.5 (tie on dota) and 1 on ped -> 1.25; random: 3 and 2 -> 2.5; ssl: 1.5, unranked on ped
    assert "| supervised+entropy | AL-only | 1.25 | 2/2 | 1.5 | 1 |" in table
    assert "| sslx+random | SSL-only | 1.50 | 1/2 | 1.5 | — (incomplete) |" in table
    assert "| supervised+random | baseline | 2.50 | 2/2 | 3 | 2 |" in table
    assert table.index("supervised+entropy") < table.index("sslx+random") < table.index("| supervised+random")
    assert "## Track SSL-only (with the supervised+random baseline)" in md
    assert "## Track AL-only (with the supervised+random baseline)" in md
    # wins (row beats column): entropy beats random in 3 dota and 3 ped cells (lower MR-2 wins); ssl
    # beats random 3 + 3 and entropy in the 3 ped cells (0.1 ± 0 vs 0.3 ± 0.025); dota ssl/entropy tie
    wins = md.split("## Pairwise wins")[1]
    assert "| sslx+random | · | 3 | 6 | 9 |" in wins
    assert "| supervised+entropy | 0 | · | 6 | 6 |" in wins
    assert "| supervised+random | 0 | 0 | · | 0 |" in wins
    assert "never averaged across domains" in md


def test_reference_run_gives_percent_of_full_supervision(tmp_path):
    recs = curve("supervised+random", [[0.2, 0.4, 0.5], [0.2, 0.4, 0.5], [0.2, 0.4, 0.5]])
    ref = [
        rec("supervised+random", s, 0, 100, 0.8, reference=True, run_id=f"ref-{s}", n_rounds=1)
        for s in range(3)
    ]
    lb = board(tmp_path, recs + ref)
    assert csv_row(lb, "pct_reference", "supervised+random", budget=20)["mean"] == pytest.approx(50.0)
    md = (lb / "dota.md").read_text()
    assert "| supervised+random | 25.0 % | 50.0 % | 62.5 % | not reached |" in md
    # the reference never shows up as a method cell
    assert csv_row(lb, "cell", "supervised+random", budget=40)["mean"] == pytest.approx(0.5)


# ------------------------------------------------------------------------- validation and staleness


def test_unknown_schema_is_reported_not_mixed(tmp_path):
    bad = rec("supervised+random", 0, 0, 10, 0.5)
    bad["schema_version"] = 999
    write_runs(tmp_path / "runs", [bad, rec("supervised+entropy", 0, 0, 10, 0.5)])
    recs, problems = load_records(tmp_path / "runs")
    assert len(recs) == 1 and "schema version 999" in problems[0]


def test_schema_violations_name_file_and_line(tmp_path):
    good = rec("supervised+random", 0, 0, 10, 0.5)
    no_metric = copy.deepcopy(good)
    del no_metric["metrics"]
    bad_dir = copy.deepcopy(good)
    bad_dir["higher_is_better"] = {}
    d = tmp_path / "runs" / "x"
    d.mkdir(parents=True)
    lines = [json.dumps(good), "{not json", json.dumps(no_metric), json.dumps(bad_dir)]
    (d / "results.jsonl").write_text("\n".join(lines) + "\n")
    recs, problems = load_records(tmp_path / "runs")
    assert len(recs) == 1
    assert problems[0].startswith("x/results.jsonl:2: not JSON")
    assert problems[1] == "x/results.jsonl:3: field 'metrics' missing"
    assert problems[2] == "x/results.jsonl:4: higher_is_better of metric 'mAP50' missing"


def test_stale_method_version_is_dropped_and_reported(tmp_path):
    from baselines.base import METHODS, STRATEGIES

    current = {"method_version": METHODS.get("supervised")().version()}
    current["strategy_version"] = STRATEGIES.get("random")().version()
    fresh = [rec("supervised+random", s, 0, 10, 0.5, **current) for s in range(2)]
    old = [
        rec(
            "supervised+random",
            2,
            0,
            10,
            0.9,
            method_version="0ld",
            strategy_version=current["strategy_version"],
        )
    ]
    gone = [rec("vanished+random", 0, 0, 10, 0.9)]
    kept, report = drop_stale(fresh + old + gone, registered_versions)
    assert kept == fresh
    assert any(
        "1 record(s) dropped, dota/supervised+random: method version 0ld != current" in r for r in report
    )
    assert any("vanished" in r and "no longer registered" in r for r in report)
    # end to end: the stale seed is neither averaged nor silently lost
    write_runs(tmp_path / "runs", fresh + old)
    write_leaderboards(tmp_path / "runs", tmp_path / "lb", quiet=True)
    md = (tmp_path / "lb" / "dota.md").read_text()
    assert "| supervised+random | baseline | 0.500 ± 0.000 (2) |" in md  # 0.9 of the stale seed not mixed
    assert "method version 0ld != current" in md


def test_stale_dataset_version_and_superseded_runs(tmp_path):
    recs = [rec("supervised+random", s, 0, 10, 0.5) for s in range(3)]
    older = rec("supervised+entropy", 0, 0, 10, 0.9, dataset_version="old")
    older["provenance"] = {**older["provenance"], "finished_at": "2025-01-01T00-00-00Z"}
    # the same (domain, method, seed) under another run id (e.g. another schedule), finished earlier
    superseded = rec("supervised+random", 1, 0, 10, 0.1, run_id="other-run")
    superseded["provenance"] = {**superseded["provenance"], "finished_at": "2025-06-01T00-00-00Z"}
    kept, report = drop_stale([*recs, older, superseded], None)
    assert kept == recs
    assert "1 record(s) dropped, dota/supervised+entropy: dataset version old != newest v" in report
    assert any("run other-run superseded by dota-supervised+random-1" in r for r in report)


def test_incomplete_runs_render_and_are_not_ranked(tmp_path):
    recs = curve("supervised+random", [[0.2, 0.3, 0.4]] * 3)
    killed = curve("supervised+entropy", [[0.2, 0.35, 0.5]] * 3)
    killed = [r for r in killed if not (r["seed"] == 2 and r["round"] == 2)]  # seed 2 died in round 2
    write_runs(tmp_path / "runs", recs + killed)
    # a run that never finished a round: only its spec.json exists
    spec = tmp_path / "runs" / "never" / "spec.json"
    spec.parent.mkdir()
    spec.write_text(
        json.dumps(
            {"domain": "dota", "trainer": "supervised", "strategy": "lc", "seed": 0, "budgets": [10, 20, 40]}
        )
    )
    write_leaderboards(tmp_path / "runs", tmp_path / "lb", quiet=True, check_versions=False)
    md = (tmp_path / "lb" / "dota.md").read_text()
    assert "| supervised+entropy | AL-only | 3/3 | 3/3 | 2/3 | no |" in md
    assert "| supervised+lc | ? | 0/3 | 0/3 | 0/3 | no |" in md
    assert "| supervised+lc | ? | — (0/3 seeds) | — (0/3 seeds) | — (0/3 seeds) | — (0/3 seeds) |" in md
    assert "| **0.500** ± 0.000 (2/3 seeds) |" in md  # bold: CI 0.5 ± 0 vs 0.4 ± 0
    # AUBC only over complete curves (2 seeds), and the incomplete method is not ranked
    assert csv_row(tmp_path / "lb", "aubc", "supervised+entropy")["n"] == 2
    overall = (tmp_path / "lb" / "overall.md").read_text()
    assert "| supervised+entropy | AL-only | — | 0/1 | — (incomplete) |" in overall
    assert "| supervised+random | baseline | 1.00 | 1/1 | 1 |" in overall


def test_header_comes_from_records_not_clock(tmp_path):
    lb = board(tmp_path, curve("supervised+random", [[0.1, 0.2, 0.3]] * 2))
    md = (lb / "dota.md").read_text()
    assert "- runs finished: 2026-01-01T00-00-00Z … 2026-01-02T00-00-02Z (from the records)" in md
    assert "- matrix: hand; dataset version: v" in md and "- packages: torch x" in md


# ---------------------------------------------------------------------------------------- golden


def test_golden_mini_sweep(tmp_path):
    """Committed run folders reproduce the committed tables byte for byte (see module docstring)."""
    out = tmp_path / "lb"
    written = write_leaderboards(GOLDEN / "sweep", out, quiet=True, check_versions=False)
    assert set(written) == {"dota"}
    expected = sorted(p.name for p in (GOLDEN / "expected").iterdir())
    assert expected == ["dota.csv", "dota.md", "overall.md"]
    for name in expected:
        got, want = (out / name).read_bytes(), (GOLDEN / "expected" / name).read_bytes()
        assert got == want, f"{name} differs from tests/golden/expected/{name}"
    png = out / "curves" / "dota.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_cli_leaderboard_and_status(tmp_path, capsys):
    from baselines.base import METHODS, STRATEGIES
    from benchmark.cli import main

    current = {
        "method_version": METHODS.get("supervised")().version(),
        "strategy_version": STRATEGIES.get("random")().version(),
    }
    write_runs(tmp_path / "runs", curve("supervised+random", [[0.1, 0.2, 0.3]] * 2, **current))
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert "overall:" in out and "stale" not in out
    for name in ("dota.csv", "dota.md", "overall.md", "curves/dota.png"):
        assert (tmp_path / "lb" / name).is_file()
    # all records stale (made-up versions): a clear error, unless the version check is switched off
    write_runs(tmp_path / "old", curve("supervised+random", [[0.1, 0.2, 0.3]] * 2))
    assert main(["leaderboard", "--runs", str(tmp_path / "old"), "--out", str(tmp_path / "lb2")]) == 2
    captured = capsys.readouterr()
    assert "every record" in captured.err and "stale: 6 record(s) dropped" in captured.out
    args = [
        "leaderboard",
        "--runs",
        str(tmp_path / "old"),
        "--out",
        str(tmp_path / "lb2"),
        "--no-version-check",
    ]
    assert main(args) == 0
    assert main(["status", "--runs", str(GOLDEN / "sweep")]) == 0
    out = capsys.readouterr().out
    assert "5/6 runs finished" in out and "17 records" in out


def test_domain_board_prints_ranks_ties_and_seed_half_tau(tmp_path):
    """Per domain: Kendall τ of the seed halves, bootstrap rank intervals, and methods no
    paired interval separates share a rank."""
    good = [[0.5 + 0.01 * s, 0.6 + 0.01 * s, 0.7] for s in range(4)]
    close = [[0.5 + 0.01 * s - 0.001 + 0.003 * (-1) ** s, 0.6 + 0.01 * s, 0.7] for s in range(4)]
    bad = [[0.1, 0.2 + 0.01 * s, 0.3] for s in range(4)]
    recs = (
        curve("supervised+random", good)
        + curve("supervised+entropy", close)
        + curve("mean_teacher+random", bad)
    )
    lb = board(tmp_path, recs)
    md = (lb / "dota.md").read_text()
    assert "## Ranks (AUBC of mAP50)" in md
    assert "Kendall τ between the rankings of seed halves (0 1 vs 2 3): **1.00** over 3 methods." in md
    assert "| =1 | supervised+entropy |" in md and "| =1 | supervised+random |" in md
    assert "| 3 | mean_teacher+random |" in md
    assert csv_row(lb, "rank", "mean_teacher+random")["rank"] == 3
    tau = pd.read_csv(lb / "dota.csv").query("kind == 'rank_stability'")
    assert len(tau) == 1 and tau.iloc[0]["mean"] == pytest.approx(1.0)
    # supervised+entropy beats supervised+random on seeds 0 and 2 only: the cuts {0 1 | 2 3} and
    # {0 3 | 1 2} agree (τ = 1), {0 2 | 1 3} swaps that pair (τ = (2 - 1) / 3)
    assert (
        "Over every cut of the seeds into halves (3 cuts): mean τ **0.78**, range 0.33 to 1.00; "
        "τ ≥ 0.7 in 67 % of the cuts." in md
    )
    cuts = pd.read_csv(lb / "dota.csv").query("kind == 'rank_stability_cuts'")
    assert len(cuts) == 1 and cuts.iloc[0]["n"] == 3 and cuts.iloc[0]["mean"] == pytest.approx(7 / 9)


def test_a_trainer_with_hyper_parameters_is_current():
    """``supervised[labelled_view=weak]`` is the registered ``supervised`` rebuilt with the record's
    hyper-parameters: current when they give its version, stale when its code changed."""
    from baselines.base import METHODS, STRATEGIES

    hp = {"trainer": {"vertical_flip": True, "labelled_view": "weak"}, "strategy": {}}
    current = {
        "method_version": METHODS.get("supervised")(labelled_view="weak").version(),
        "strategy_version": STRATEGIES.get("random")().version(),
    }
    r = rec("supervised[labelled_view=weak]+random", 0, 0, 10, 0.5, hparams=hp, **current)
    assert registered_versions(r) == (current["method_version"], current["strategy_version"], "")
    kept, report = drop_stale([r, {**r, "method_version": "0ld"}], registered_versions)
    assert kept == [r] and any("method version 0ld != current" in x for x in report)
