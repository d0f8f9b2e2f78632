"""Source checkpoints (``benchmark.source``): trained once and cached (also under concurrent
workers), every method starts from them, the records say so, and a source-free method never
receives source samples."""

from __future__ import annotations

import contextlib
import dataclasses
import threading

import pytest
import torch

import benchmark.source as source_mod
from baselines.base import METHODS, TrainContext
from benchmark.data import load_domain_data
from benchmark.leaderboard import load_records
from benchmark.protocol import _new_detector_factory
from benchmark.runner import prepare, run_matrix
from benchmark.spec import load_matrix
from domains.base import DomainDataset

MATRIX = """
name = "tiny-source"
methods = ["supervised+random"]
seeds = [0]
budget_unit = "images"
budgets = [8, 16]
threads = 1
[detector]
name = "tiny_fcos_xs"
[schedule]
iterations = 6
batch_size = 4
lr = 0.01
warmup = 2
[domains.dota]
synthetic_size = "tiny"
source_sensor = "GF-2"
"""


@pytest.fixture()
def matrix_path(tmp_path, dota_tiny_root):
    p = tmp_path / "tiny-source.toml"
    p.write_text(MATRIX)
    return p


@pytest.fixture()
def count_source_training(monkeypatch):
    calls = []
    real = source_mod.train_source

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(source_mod, "train_source", counting)
    return calls


def _cell_and_data(matrix_path, out):
    m = load_matrix(str(matrix_path))
    cell = prepare(m, out, progress=False)[0]
    return cell, load_domain_data(cell.domain, progress=False)


def test_trained_once_reused_and_recorded(tmp_path, matrix_path, count_source_training):
    m = load_matrix(str(matrix_path), methods=["supervised+random", "supervised+entropy"])
    out = tmp_path / "runs"
    run_matrix(m, out, launcher="serial", progress=False)
    assert len(count_source_training) == 1, "the source model is trained once per (domain, seed)"
    done = list((out / "_cache" / "source").glob("*/DONE"))
    assert len(done) == 1
    recs, problems = load_records(out)
    assert not problems, problems
    assert len(recs) == 4
    sha = source_mod.file_sha256(done[0].parent / "model.pt")
    for r in recs:
        assert r["init"] == "source" and r["source_checkpoint"] == sha
        assert r["timing"]["source_train_s"] > 0
    assert {r["timing"]["source_reused"] for r in recs} == {False, True}
    # a second run of another method re-uses it too
    m2 = load_matrix(str(matrix_path), methods=["mean_teacher+random"])
    run_matrix(m2, out, launcher="serial", progress=False)
    assert len(count_source_training) == 1


def test_scratch_domain_records_scratch(tmp_path, dota_tiny_root):
    run_matrix(load_matrix("tiny"), tmp_path, launcher="serial", progress=False)
    recs, _ = load_records(tmp_path)
    assert recs and all(r["init"] == "scratch" and r["source_checkpoint"] is None for r in recs)
    assert not (tmp_path / "_cache" / "source").exists()


def test_new_detector_returns_source_weights_and_round0_key(tmp_path, matrix_path):
    from benchmark.protocol import _round0_key

    cell, data = _cell_and_data(matrix_path, tmp_path)
    scratch = _new_detector_factory(cell, len(data.domain.classes))
    ck = source_mod.ensure_source_checkpoint(cell, tmp_path, data, scratch)
    assert ck is not None and not ck.reused and len(ck.sha256) == 64
    make = _new_detector_factory(cell, len(data.domain.classes), ck)
    assert make.source is ck and scratch.source is None
    got, init = make().state_dict(), scratch().state_dict()
    want = ck.detector_state()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(init[k], want[k]) for k in want if want[k].is_floating_point())
    assert source_mod.SOURCE_HEADS.names() == ["discriminator"]  # SAR's, baselines/components
    disc = ck.head("discriminator")
    assert type(disc).__module__ == "baselines.components.domain_discriminator"
    assert not any(p.requires_grad for p in disc.parameters())
    assert ck.meta["disc_train_accuracy"] > 0.5
    assert _round0_key(cell, ["a"], "v", ck.sha256) != _round0_key(cell, ["a"], "v", None)
    again = source_mod.ensure_source_checkpoint(cell, tmp_path, data, scratch)
    assert again.reused and again.sha256 == ck.sha256


@pytest.mark.parametrize("locked", [True, False])
def test_concurrent_workers_publish_one_checkpoint(
    tmp_path, matrix_path, count_source_training, monkeypatch, locked
):
    """Two workers at once: with the lock the second waits and re-uses the first's result; without
    it (a file system with no flock) both train the identical model and one rename wins."""
    if not locked:
        monkeypatch.setattr(source_mod, "_exclusive", lambda path: contextlib.nullcontext())
    cell, data = _cell_and_data(matrix_path, tmp_path)
    scratch = _new_detector_factory(cell, len(data.domain.classes))
    results, errors = [], []

    def work():
        try:
            results.append(source_mod.ensure_source_checkpoint(cell, tmp_path, data, scratch))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.sha256 for r in results}) == 1
    assert len(count_source_training) == (1 if locked else 2)
    assert sorted(r.reused for r in results) == [False, True]
    root = tmp_path / "_cache" / "source"
    assert len(list(root.glob("*/DONE"))) == 1 and not list(root.glob(".*.tmp"))


def test_sfda_method_gets_no_source_samples(tmp_path, matrix_path, monkeypatch):
    """A source-free method sees the source weights (and the frozen discriminator), never source data."""
    cls = METHODS.get("sar_source_free")
    assert cls.paradigm == "sfda"
    seen: list[TrainContext] = []

    def spy(self, ctx):
        seen.append(ctx)
        return real(self, ctx)

    real = cls.train
    monkeypatch.setattr(cls, "train", spy)
    m = load_matrix(str(matrix_path), methods=["sar_source_free+random"])
    run_matrix(m, tmp_path, launcher="serial", progress=False)
    assert seen
    data = load_domain_data(m.cells[0].domain, progress=False)
    src = source_mod.source_dataset(data)
    assert src is not None and len(src)
    src_ids = set(src.ids)
    assert "source" not in {f.name for f in dataclasses.fields(TrainContext)}
    for ctx in seen:
        ids = {s.id for s in ctx.labelled} | {s.id for s in ctx.unlabelled}
        assert ids and not ids & src_ids
        assert ids <= set(data.pool.ids)
        for f in dataclasses.fields(ctx):
            assert not isinstance(getattr(ctx, f.name), DomainDataset)
        with pytest.raises(KeyError):
            ctx.images[sorted(src_ids)[0]]
        assert isinstance(ctx.new_detector.source, source_mod.SourceCheckpoint)
    recs, _ = load_records(tmp_path)
    assert recs and all(r["init"] == "source" for r in recs)
    assert all(r["train_stats"].get("discriminator") == "source_checkpoint" for r in recs)
