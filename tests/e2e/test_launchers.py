"""Launchers (serial, process, ray, slurm) give identical records; concurrent `run`s, a killed
worker and a failing cell all resume through the run folders' state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.results import strip_volatile
from benchmark.runner import run_matrix
from benchmark.runstate import cell_state, read_lease
from benchmark.spec import MATRICES_DIR, load_matrix

pytestmark = pytest.mark.slow


def cut_smoke(path: Path) -> Path:
    """The smoke matrix, cut down to seconds: synthetic DOTA (tiny), budgets 8 and 16, 8 iterations;
    both methods and both seeds kept (4 cells, 2 groups)."""
    text = (MATRICES_DIR / "smoke.toml").read_text()
    for a, b in (
        ("budgets = [25, 100, 300]", "budgets = [8, 16]"),
        ("iterations = 360", "iterations = 8"),
        ("batch_size = 8", "batch_size = 4"),
        ("warmup = 20", "warmup = 4"),
        ('[domains.dota]\nsynthetic_size = "small"', '[domains.dota]\nsynthetic_size = "tiny"'),
    ):
        assert a in text, a
        text = text.replace(a, b)
    path.write_text(text)
    return path


def records(out: Path) -> list[dict]:
    recs = []
    for f in sorted(out.rglob("results.jsonl")):
        recs += [json.loads(x) for x in f.read_text().splitlines()]
    return sorted(recs, key=lambda r: (r["method"], r["seed"], r["round"]))


def same(a: list[dict], b: list[dict]) -> bool:
    return [strip_volatile(r) for r in a] == [strip_volatile(r) for r in b]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(matrix path, serial reference records)."""
    d = tmp_path_factory.mktemp("smoke")
    path = cut_smoke(d / "smoke_cut.toml")
    m = load_matrix(str(path), domains=["dota"])
    assert len(m.cells) == 4
    run_matrix(m, d / "serial", launcher="serial", progress=False)
    ref = records(d / "serial")
    assert len(ref) == 8 and {r["provenance"]["launcher"] for r in ref} == {"serial"}
    return path, ref


def _check_launcher(smoke, out: Path, launcher: str, **kw) -> list[dict]:
    path, ref = smoke
    res = run_matrix(load_matrix(str(path), domains=["dota"]), out, launcher=launcher, progress=False, **kw)
    assert set(res.states.values()) == {"done"} and res.records == 8
    got = records(out)
    assert {r["provenance"]["launcher"] for r in got} == {launcher}
    assert same(got, ref)
    return got


def test_process_launcher(smoke, tmp_path):
    _check_launcher(smoke, tmp_path, "process", workers=2)


def test_ray_launcher(smoke, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'labelbudget[ray]'")
    import ray

    _check_launcher(smoke, tmp_path, "ray", workers=2)
    assert not ray.is_initialized()  # the local instance was shut down


def test_slurm_launcher_local_executor(smoke, tmp_path):
    pytest.importorskip(
        "submitit", reason="the slurm extra is not installed: pip install 'labelbudget[slurm]'"
    )
    _check_launcher(smoke, tmp_path, "slurm", launcher_options={"slurm_cluster": "local"})
    # the jobs went through submitit: its pickled submissions and logs are there
    assert list((tmp_path / "_slurm").rglob("*_submitted.pkl"))
    assert list((tmp_path / "_slurm").rglob("*_log.out"))


def _cli(matrix: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", "run", str(matrix), "--domains", "dota"] + [
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _no_debris(out: Path) -> None:
    """No temp file, no moved lease, no unreadable JSON anywhere under ``out``."""
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".stale"))]
    for p in out.rglob("*.json"):
        json.loads(p.read_text())
    for p in out.rglob("*.jsonl"):
        for line in p.read_text().splitlines():
            json.loads(line)


def test_two_runs_at_once_and_a_shard(smoke, tmp_path):
    path, ref = smoke
    out = tmp_path / "runs"
    env = {**os.environ, "LABELBUDGET_HEARTBEAT_S": "1", "LABELBUDGET_STALE_AFTER": "60"}
    procs = [
        subprocess.Popen(_cli(path, out, *extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for extra in (
            ["--launcher", "serial"],
            ["--launcher", "serial"],
            ["--launcher", "serial", "--shard", "1/2"],
        )
    ]
    logs = [p.communicate(timeout=600)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n----\n".join(logs)
    runs = sorted(p.parent for p in out.rglob("spec.json"))
    assert len(runs) == 4
    for root in runs:
        assert cell_state(root).state == "done"
        attempts = (root / "attempts.jsonl").read_text().splitlines()
        assert len(attempts) == 1, f"{root} ran {len(attempts)} times"
        assert not (root / "RUNNING").exists()
    _no_debris(out)
    assert same(records(out), ref)


def test_sigkill_mid_round_goes_stale_and_the_next_run_finishes_it(smoke, tmp_path, monkeypatch):
    from benchmark.cli import main

    monkeypatch.setenv("LABELBUDGET_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("LABELBUDGET_STALE_AFTER", "3")
    path, ref = smoke
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        _cli(path, out, "--launcher", "serial", "--heartbeat", "0.5", "--stale-after", "3"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    killed_in = None
    while time.time() < deadline and killed_in is None:  # wait for a cell in its second round
        for lease in out.rglob("RUNNING"):
            info = read_lease(lease)
            if info and info.get("round") == 1:
                killed_in = lease.parent
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed_in is not None, "no cell reached its second round"
    assert cell_state(killed_in, stale_after=3).state == "stale"  # its process is gone from this host
    # the same worker seen from another machine: alive until its heartbeat is older than the limit
    info = read_lease(killed_in / "RUNNING")
    info.pop("_mtime")
    info.update(host="node-elsewhere", updated_unix=time.time())
    (killed_in / "RUNNING").write_text(json.dumps(info))
    assert cell_state(killed_in, stale_after=3).state == "running"
    time.sleep(3.5)
    assert main(["status", "--runs", str(out), "--stale-after", "3"]) == 0
    st = cell_state(killed_in, stale_after=3)
    assert st.state == "stale" and "no heartbeat" in st.reason
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("round*/DONE")}
    res = run_matrix(load_matrix(str(path), domains=["dota"]), out, launcher="serial", progress=False)
    assert set(res.states.values()) == {"done"}
    for p, t in done_before.items():  # finished rounds were not redone
        assert p.stat().st_mtime_ns == t, f"{p} was rewritten"
    assert len((killed_in / "attempts.jsonl").read_text().splitlines()) == 2
    _no_debris(out)
    assert same(records(out), ref)


def test_a_failing_cell_is_left_alone_until_retry_failed(smoke, tmp_path, monkeypatch, capsys):
    import benchmark.protocol as protocol
    from benchmark.cli import main

    path, ref = smoke
    m = load_matrix(str(path), domains=["dota"], seeds=[0])
    real = protocol.run_cell

    def flaky(cell, *a, **k):
        if cell.method == "supervised+entropy":
            raise RuntimeError("injected failure for the test")
        return real(cell, *a, **k)

    monkeypatch.setattr(protocol, "run_cell", flaky)
    out = tmp_path / "runs"
    res = run_matrix(m, out, launcher="serial", progress=False)
    bad = next(c.run_id for c in res.cells if c.method == "supervised+entropy")
    assert [c.run_id for c in res.failed] == [bad]
    assert sorted(res.states.values()) == ["done", "failed"]
    root = next(out.rglob(bad))
    assert main(["status", "--runs", str(out)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if bad in ln)
    assert line.startswith("failed") and line.endswith("RuntimeError: injected failure for the test")
    stamp = (root / "FAILED").stat().st_mtime_ns
    res = run_matrix(m, out, launcher="serial", progress=False)  # left alone
    assert [c.run_id for c in res.failed] == [bad] and (root / "FAILED").stat().st_mtime_ns == stamp
    assert len((root / "attempts.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(protocol, "run_cell", real)
    res = run_matrix(m, out, launcher="serial", progress=False, retry_failed=True)
    assert set(res.states.values()) == {"done"} and (root / "FAILED.1").is_file()
    assert len((root / "attempts.jsonl").read_text().splitlines()) == 2
    assert same(records(out), [r for r in ref if r["seed"] == 0])


def test_serial_launcher_from_the_command_line(smoke, tmp_path):
    from benchmark.cli import main

    path, ref = smoke
    assert (
        main(
            ["run", str(path), "--domains", "dota", "--launcher", "serial", "--out", str(tmp_path), "--quiet"]
        )
        == 0
    )
    assert same(records(tmp_path), ref)


def test_records_do_not_depend_on_which_cell_builds_the_shared_round0(tmp_path):
    """Under Ray or SLURM any cell of a (domain, trainer, seed) group may train the shared round 0
    first; the records (training statistics included) are those of a serial run all the same."""
    from benchmark.launchers.base import execute_job

    m = load_matrix("tiny", methods=["mean_teacher+random", "mean_teacher+entropy"])
    res = run_matrix(m, tmp_path / "serial", launcher="serial", progress=False)
    ref = records(tmp_path / "serial")
    r0 = {r["strategy"]: r for r in ref if r["round"] == 0}
    assert r0["random"]["train_stats"] and not r0["entropy"]["train_stats"]  # the group's first reports them
    from benchmark.launchers.base import write_plan
    from benchmark.runner import prepare

    out = tmp_path / "reversed"
    cells = prepare(m, out, progress=False)
    write_plan(out, cells)
    for c in reversed(cells):  # entropy first: it trains round 0, random then loads it
        assert execute_job(out, c.run_id, launcher="ray").status == "done"
    got = records(out)
    reused = {r["strategy"]: r["timing"]["round0_reused"] for r in got if r["round"] == 0}
    assert reused == {"entropy": False, "random": True}
    assert same(got, ref) and len(res.cells) == 2
