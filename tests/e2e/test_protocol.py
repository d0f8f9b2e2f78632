"""End-to-end runs of the tiny matrix: records, determinism, initial sets, round-0 reuse, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.data import load_domain_data
from benchmark.leaderboard import write_leaderboards
from benchmark.protocol import initial_ids
from benchmark.results import strip_volatile
from benchmark.runner import run_matrix
from benchmark.spec import load_matrix

pytestmark = pytest.mark.slow


def records(out: Path) -> list[dict]:
    recs = []
    for f in sorted(out.rglob("results.jsonl")):
        recs += [json.loads(x) for x in f.read_text().splitlines()]
    return sorted(recs, key=lambda r: (r["method"], r["seed"], r["round"]))


def test_tiny_matrix_end_to_end(tmp_path):
    m = load_matrix("tiny")
    run_matrix(m, tmp_path / "a", launcher="serial", progress=False)
    recs = records(tmp_path / "a")
    assert len(recs) == 4  # 2 methods x 2 rounds
    for r in recs:
        assert r["n_labelled"] == [8, 16][r["round"]]
        assert 0.0 <= r["metrics"]["mAP50"] <= 1.0 and r["primary_metric"] == "mAP50"
        assert r["metric_impl"]["mAP50"].startswith("DOTA devkit task2 v1.0")
        assert r["metric_impl"]["mAP50-95"].startswith("coco-bbox (faster-coco-eval==")
        run = next((tmp_path / "a").rglob(r["run_id"]))
        rd = run / f"round{r['round']}"
        for f in ("labelled.ids", "acquired.ids", "predictions.json", "metrics.json", "record.json", "DONE"):
            assert (rd / f).is_file(), f
        assert len((rd / "labelled.ids").read_text().split()) == r["n_labelled"]
        assert len((rd / "acquired.ids").read_text().split()) == (8 if r["round"] == 0 else 0)
    # both methods start from the same initial set, and round 0 trained once
    r0 = [r for r in recs if r["round"] == 0]
    assert r0[0]["labelled_sha256"] == r0[1]["labelled_sha256"]
    assert sorted(r["timing"]["round0_reused"] for r in r0) == [False, True]
    assert strip_volatile(r0[0])["metrics"] == strip_volatile(r0[1])["metrics"]
    # random and entropy then pick different images
    r1 = [r for r in recs if r["round"] == 1]
    assert r1[0]["labelled_sha256"] != r1[1]["labelled_sha256"]
    written = write_leaderboards(tmp_path / "a", tmp_path / "lb", quiet=True)
    assert (tmp_path / "lb" / "dota.csv").is_file()
    assert "supervised+entropy" in written["dota"].read_text()


def test_same_seed_same_records_process_launcher(tmp_path):
    """Serial and process launchers, run twice: identical records (timings and provenance aside)."""
    m = load_matrix("tiny")
    run_matrix(m, tmp_path / "a", launcher="serial", progress=False)
    run_matrix(m, tmp_path / "b", launcher="process", workers=2, progress=False)
    a = [strip_volatile(r) for r in records(tmp_path / "a")]
    b = [strip_volatile(r) for r in records(tmp_path / "b")]
    assert a == b


def test_different_seed_different_initial_set(tmp_path):
    m = load_matrix("tiny")
    data = load_domain_data(m.domains["dota"], progress=False)
    a = initial_ids(data.pool, 8, "images", 0)
    assert a == initial_ids(data.pool, 8, "images", 0)
    assert a != initial_ids(data.pool, 8, "images", 1)
    boxes = initial_ids(data.pool, 40, "boxes", 0)
    n = [data.pool.by_id(i).num_objects for i in boxes]
    assert sum(n) >= 40 and sum(n[:-1]) < 40


def test_rerun_skips_finished_rounds(tmp_path):
    m = load_matrix("tiny")
    first = run_matrix(m, tmp_path, launcher="serial", progress=False)
    assert first.records == 4
    files = [*tmp_path.rglob("DONE"), *tmp_path.rglob("record.json"), *tmp_path.rglob("model.pt")]
    assert len(list(tmp_path.rglob("record.json"))) == 4 and list(tmp_path.rglob("DONE"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = run_matrix(m, tmp_path, launcher="serial", progress=False)
    assert again.records == 4  # records returned, but nothing retrained or rewritten:
    assert stamps == {f: f.stat().st_mtime_ns for f in files}


def _cli(out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmark.cli",
        "run",
        "tiny",
        "--budgets",
        "8,12,16,20",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_sigkill_then_resume_gives_identical_records(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref, ["--launcher", "serial"]), check=True, env=env, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(out, ["--launcher", "process"]),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.rglob("round1/DONE"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("round*/DONE")}
    assert done_before, "the run was killed before any round finished"
    n_rounds_total = 2 * 4
    assert len(done_before) < n_rounds_total, "the run finished before it was killed"
    subprocess.run(
        _cli(out, ["--launcher", "process"]), check=True, env=env, capture_output=True, timeout=600
    )
    # finished rounds were not redone
    for p, t in done_before.items():
        assert p.stat().st_mtime_ns == t, f"{p} was rewritten"
    assert not list(out.rglob("*.tmp"))
    a = [strip_volatile(r) for r in records(ref)]
    b = [strip_volatile(r) for r in records(out)]
    assert len(a) == n_rounds_total and a == b


def test_reference_key_runs_full_supervision_and_feeds_percent_of_reference(tmp_path):
    """``reference = true`` adds one full-supervision run per seed (the whole pool labelled, one
    round); ordinary cells keep their run ids, and the leaderboard reports % of the reference."""
    toml = tmp_path / "m.toml"
    base = (Path(__file__).parents[2] / "benchmark" / "matrices" / "tiny.toml").read_text()
    one = base.replace('["supervised+random", "supervised+entropy"]', '["supervised+random"]')
    toml.write_text(one.replace("[domains.dota]", "[domains.dota]\nreference = true"))
    m = load_matrix(str(toml))
    plain = load_matrix("tiny", methods=["supervised+random"])
    refs = [c for c in m.cells if c.reference]
    assert len(refs) == 1 and refs[0].trainer == "supervised"
    assert [c.run_id for c in m.cells if not c.reference] == [c.run_id for c in plain.cells]
    run_matrix(m, tmp_path / "runs", launcher="serial", progress=False)
    recs = records(tmp_path / "runs")
    ref = [r for r in recs if r.get("reference")]
    assert len(ref) == 1 and ref[0]["n_rounds"] == 1 and ref[0]["n_acquired"] == 0
    data = load_domain_data(refs[0].domain, progress=False)
    assert ref[0]["n_labelled"] == len(data.pool) == ref[0]["budget_target"]
    assert len([r for r in recs if not r.get("reference")]) == 2
    written = write_leaderboards(tmp_path / "runs", tmp_path / "lb", quiet=True)
    md = written["dota"].read_text()
    assert "No full-supervision reference run" not in md
    assert "pct_reference" in (tmp_path / "lb" / "dota.csv").read_text()
    with pytest.raises(Exception, match="reference"):
        toml.write_text(base.replace("[domains.dota]", '[domains.dota]\nreference = "yes"'))
        load_matrix(str(toml))


def test_restart_removes_a_killed_writers_temp_files(tmp_path):
    """SIGKILL during an atomic write leaves ``.<name>.*.tmp``; restarting the run removes it and
    keeps the finished files."""
    from benchmark.results import RunDir, atomic_write_text

    rd = RunDir(tmp_path / "run")
    atomic_write_text(rd.round_dir(0) / "DONE", "ok\n")
    stale = [rd.root / ".RUNNING.abc123.tmp", rd.round_dir(1) / ".record.json.x9.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("half")
    assert sorted(rd.clear_stale_temps()) == sorted(stale)
    assert not any(p.exists() for p in stale) and rd.round_done(0)
