"""Run state on the file system (benchmark.runstate): leases, the five cell states, `status`, and
shared caches built once by many workers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark import runstate
from benchmark.results import atomic_write_json, atomic_write_text
from benchmark.runstate import Lease, cell_state, claim_cell, exclusive, lease_stale, read_lease

FORK = mp.get_context("fork")


@pytest.fixture(autouse=True)
def _fast_heartbeat(monkeypatch):
    monkeypatch.setenv("LABELBUDGET_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("LABELBUDGET_STALE_AFTER", "2")


def _foreign_lease(path: Path, age: float, round_: int = 1) -> None:
    """A lease written by a worker on another host, last refreshed ``age`` seconds ago."""
    then = time.time() - age
    atomic_write_json(
        path,
        {
            "token": f"t{age}",
            "host": "node-elsewhere",
            "pid": 4242,
            "pidns": "pid:[1]",
            "round": round_,
            "updated_unix": then,
        },
    )
    os.utime(path, (then, then))


def test_lease_is_exclusive_refreshed_and_released(tmp_path):
    p = tmp_path / "RUNNING"
    a = Lease.try_acquire(p, what="x")
    assert a is not None and Lease.try_acquire(p) is None
    first = read_lease(p)["updated_unix"]
    time.sleep(0.5)  # the heartbeat thread refreshes it every 0.2 s
    assert read_lease(p)["updated_unix"] > first and lease_stale(read_lease(p)) is None
    a.release()
    assert not p.exists()
    b = Lease.try_acquire(p)
    assert b is not None
    b.release()


def test_stale_by_time_and_by_dead_process(tmp_path):
    p = tmp_path / "RUNNING"
    _foreign_lease(p, age=1.0)
    assert lease_stale(read_lease(p)) is None  # another host, recent heartbeat: alive
    _foreign_lease(p, age=3.0)
    assert "no heartbeat for 3 s (limit 2 s)" in lease_stale(read_lease(p))
    # a process of this host that is gone: stale at once
    proc = FORK.Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    atomic_write_json(
        p,
        {
            "token": "x",
            "host": runstate.platform.node(),
            "pid": proc.pid,
            "pidns": runstate._pid_namespace(),
            "updated_unix": time.time(),
        },
    )
    assert f"process {proc.pid}" in lease_stale(read_lease(p))


def test_taking_over_a_stale_lease_never_removes_a_fresh_one(tmp_path):
    p = tmp_path / "RUNNING"
    _foreign_lease(p, age=10.0)
    stale = read_lease(p)
    live = read_lease(p)
    # the holder refreshed it after we looked: the break must give it back
    _foreign_lease(p, age=0.0)
    assert not runstate.break_stale(p, stale)
    assert read_lease(p)["token"] == "t0.0"
    live = read_lease(p)
    _foreign_lease(p, age=10.0)
    assert runstate.break_stale(p, read_lease(p)) and not p.exists()
    assert live["token"] == "t0.0"


def _make_states(runs: Path) -> dict[str, Path]:
    """One run folder in each of the five states, plus their plan entries."""
    roots = {}
    for i, state in enumerate(("planned", "running", "done", "failed", "stale")):
        rel = f"dota/supervised+random/seed{i}/run{i}"
        roots[state] = runs / rel
        atomic_write_json(
            runs / "_plan" / f"run{i}.json", {"run_id": f"run{i}", "run_dir": rel, "n_rounds": 2}
        )
    # planned: nothing but its plan entry; running: a live lease (this process) after one round
    r = roots["running"]
    atomic_write_text(r / "round0" / "DONE", "ok\n")
    lease = Lease.try_acquire(r / "RUNNING")
    lease.refresh(round=1)
    d = roots["done"]
    for k in range(2):
        atomic_write_text(d / f"round{k}" / "DONE", "ok\n")
    atomic_write_text(d / "DONE", "ok\n")
    f = roots["failed"]
    try:
        raise ValueError("the detector returned NaN boxes")
    except ValueError as exc:
        runstate.record_failure(f, exc, None)
    _foreign_lease(roots["stale"] / "RUNNING", age=30.0, round_=0)
    return roots | {"_lease": lease}


def test_status_prints_each_of_the_five_states(tmp_path, capsys):
    from benchmark.cli import main

    runs = tmp_path / "runs"
    roots = _make_states(runs)
    try:
        assert {s: cell_state(roots[s]).state for s in runstate.STATES} == {s: s for s in runstate.STATES}
        assert main(["status", "--runs", str(runs)]) == 0
        out = capsys.readouterr().out
        # --stale-after decides: with a 60 s limit the 30 s old heartbeat is alive
        assert main(["status", "--runs", str(runs), "--stale-after", "60"]) == 0
        assert "2 running" in capsys.readouterr().out
    finally:
        roots["_lease"].release()
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in runstate.STATES}
    assert set(lines) == set(runstate.STATES)
    assert "0/2 rounds" in lines["planned"] and "seed0/run0" in lines["planned"]
    assert "1/2 rounds" in lines["running"] and "round 1, heartbeat" in lines["running"]
    assert "2/2 rounds" in lines["done"]
    assert lines["failed"].rstrip().endswith("ValueError: the detector returned NaN boxes")
    assert "node-elsewhere pid 4242, round 0: no heartbeat for 30 s (limit 2 s)" in lines["stale"]
    assert "5 cells: 1 planned, 1 running, 1 done, 1 failed, 1 stale; 1/5 runs finished" in out
    tb = (roots["failed"] / "traceback.txt").read_text()
    assert tb.startswith("Traceback") and "NaN boxes" in tb


def test_claims_follow_the_state(tmp_path):
    roots = _make_states(tmp_path)
    try:
        assert claim_cell(roots["done"]) == (None, "done")
        assert claim_cell(roots["running"]) == (None, "running")
        assert claim_cell(roots["failed"]) == (None, "failed")
        for state in ("planned", "stale"):
            lease, why = claim_cell(roots[state], launcher="test")
            assert why == "claimed" and read_lease(roots[state] / "RUNNING")["token"] == lease.token
            lease.release()
        lease, why = claim_cell(roots["failed"], retry_failed=True)
        assert why == "claimed" and (roots["failed"] / "FAILED.1").is_file()
        assert not (roots["failed"] / "FAILED").exists()
        lease.release()
    finally:
        roots["_lease"].release()


# ------------------------------------------------------------------- caches under concurrency


def _fake_train_source(counter: Path, seconds: float):
    def train(cell, source, new_scratch, device="cpu", progress=None):
        with open(counter, "a") as fh:  # O_APPEND: one line per training, from any process
            fh.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        return {"format": 1, "detector": {}, "discriminator": {}, "discriminator_config": {}}, {"n_source": 3}

    return train


class _FakeSource:
    version = "srcv1"

    def __len__(self):
        return 3


def _ask_for_checkpoint(out: str, q, cell) -> None:
    from benchmark import source as source_mod

    data = SimpleNamespace(version="data-v1")
    ck = source_mod.ensure_source_checkpoint(cell, Path(out), data, lambda: None)
    q.put((ck.sha256, ck.reused))


@pytest.fixture(scope="module")
def cell():
    from benchmark.spec import load_matrix

    return load_matrix("tiny").cells[0]


@pytest.fixture
def fake_source(monkeypatch, tmp_path):
    from benchmark import source as source_mod

    counter = tmp_path / "trainings.txt"
    monkeypatch.setattr(source_mod, "source_dataset", lambda data: _FakeSource())
    monkeypatch.setattr(source_mod, "train_source", _fake_train_source(counter, 1.0))
    return counter


def test_twenty_workers_train_one_source_checkpoint(tmp_path, fake_source, cell):
    q = FORK.Queue()
    procs = [FORK.Process(target=_ask_for_checkpoint, args=(str(tmp_path), q, cell)) for _ in range(20)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(fake_source.read_text().splitlines()) == 1  # trained exactly once
    assert len({sha for sha, _ in got}) == 1
    assert sorted(reused for _, reused in got) == [False] + [True] * 19
    root = tmp_path / "_cache" / "source"
    assert len(list(root.glob("*/DONE"))) == 1
    assert not list(root.glob(".*")) and not list(root.glob("*.lease"))  # no temp copies, lease released


def test_a_killed_builder_does_not_block_the_others(tmp_path, fake_source, monkeypatch, cell):
    from benchmark import source as source_mod

    monkeypatch.setattr(source_mod, "train_source", _fake_train_source(fake_source, 30.0))
    q = FORK.Queue()
    first = FORK.Process(target=_ask_for_checkpoint, args=(str(tmp_path), q, cell))
    first.start()
    deadline = time.time() + 30
    while time.time() < deadline and not fake_source.is_file():
        time.sleep(0.05)
    assert list((tmp_path / "_cache" / "source").glob("*.lease"))
    os.kill(first.pid, signal.SIGKILL)  # the builder dies holding the lease
    first.join()
    monkeypatch.setattr(source_mod, "train_source", _fake_train_source(fake_source, 0.1))
    t0 = time.time()
    _ask_for_checkpoint(str(tmp_path), q, cell)
    sha, reused = q.get(timeout=10)
    assert not reused and time.time() - t0 < 10
    assert len(fake_source.read_text().splitlines()) == 2  # the dead builder's attempt, then ours


def test_exclusive_waits_for_a_live_holder(tmp_path):
    p = tmp_path / "x.lease"
    order = []
    holder = Lease.try_acquire(p)

    def later():
        time.sleep(0.5)
        order.append("holder done")
        holder.release()

    import threading

    t = threading.Thread(target=later)
    t.start()
    with exclusive(p, poll=0.05):
        order.append("waiter in")
    t.join()
    assert order == ["holder done", "waiter in"] and not p.exists()


def test_plan_round_trip_and_code_check(tmp_path):
    from benchmark.launchers.base import load_plan_entry, write_plan
    from benchmark.spec import load_matrix, with_version
    from domains.base import SpecError

    cells = [with_version(c, "v1") for c in load_matrix("tiny", seeds=[0, 1]).cells]
    entries = write_plan(tmp_path, cells)
    assert [e["round0_stats"] for e in entries] == [True, True, False, False]  # first of each group
    out, entry, cell = load_plan_entry(tmp_path, cells[2].run_id)
    assert cell == cells[2] and out == tmp_path
    assert load_plan_entry(tmp_path / "_plan" / f"{cells[2].run_id}.json")[2] == cells[2]
    path = tmp_path / "_plan" / f"{cells[0].run_id}.json"
    e = json.loads(path.read_text())
    e["cell"]["seed"] = 7
    path.write_text(json.dumps(e))
    with pytest.raises(SpecError, match="re-run `labelbudget run`"):
        load_plan_entry(tmp_path, cells[0].run_id)
    with pytest.raises(SpecError, match="no such planned cell"):
        load_plan_entry(tmp_path, "0123456789ab")


def test_shards_partition_the_groups():
    from benchmark.runner import parse_shard, shard_cells
    from benchmark.spec import load_matrix
    from domains.base import SpecError

    cells = list(load_matrix("tiny", seeds=[0, 1, 2]).cells)
    parts = [shard_cells(cells, (i, 2)) for i in (1, 2)]
    assert sorted(c.run_id for p in parts for c in p) == sorted(c.run_id for c in cells)
    for p in parts:  # a (trainer, seed) group never splits
        assert all(sum(1 for c in p if c.seed == s) in (0, 2) for s in (0, 1, 2))
    assert shard_cells(cells, (1, 2)) == parts[0]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(SpecError, match="--shard"):
            parse_shard(bad)


def test_missing_extra_is_one_clear_line(monkeypatch, capsys):
    import importlib.util

    from benchmark.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n in ("ray", "submitit") else real(n, *a)
    )
    for launcher, extra in (("ray", "ray"), ("slurm", "slurm")):
        assert main(["run", "tiny", "--launcher", launcher, "--out", "/nonexistent/never"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pip install 'labelbudget[{extra}]'" in err[0], err
    assert main(["run", "tiny", "--launcher", "nope", "--out", "/nonexistent/never"]) == 2
    assert "unknown launcher 'nope'" in capsys.readouterr().err
