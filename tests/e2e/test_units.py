"""Labelling units: Foggy Cityscapes under ``beta = "all"`` reveals a frame's three fog renderings
together and counts the frame once (in image budgets and in box budgets)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmark.data import load_domain_data
from benchmark.protocol import initial_ids
from benchmark.runner import run_matrix
from benchmark.spec import load_matrix

pytestmark = pytest.mark.slow

MATRIX = """
name = "units"
methods = ["supervised+random", "supervised+entropy"]
seeds = [0]
budgets = [4, 7]
[detector]
name = "tiny_fcos_xs"
[schedule]
iterations = 6
batch_size = 4
warmup = 2
[domains.foggy_cityscapes]
synthetic_size = "tiny"
beta = "all"
"""


def _frames(ids: list[str]) -> Counter:
    return Counter(i.rsplit("_beta", 1)[0] for i in ids)


def test_beta_all_reveals_whole_frames(tmp_path: Path):
    path = tmp_path / "units.toml"
    path.write_text(MATRIX)
    m = load_matrix(str(path))
    run_matrix(m, tmp_path / "runs", launcher="serial", progress=False)
    recs = [
        json.loads(x) for f in (tmp_path / "runs").rglob("results.jsonl") for x in f.read_text().splitlines()
    ]
    assert len(recs) == 4
    for r in recs:
        run = next((tmp_path / "runs").rglob(r["run_id"]))
        ids = (run / f"round{r['round']}" / "labelled.ids").read_text().split()
        frames = _frames(ids)
        assert set(frames.values()) == {3}, frames  # every labelled frame with all three renderings
        assert r["n_labelled_units"] == len(frames) == r["budget_target"]
        assert r["n_labelled"] == 3 * r["budget_target"]
        assert r["domain_options"]["beta"] == "all"


def test_beta_all_box_budget_counts_a_frame_once(tmp_path: Path):
    path = tmp_path / "units.toml"
    path.write_text(MATRIX.replace("budgets = [4, 7]", 'budgets = [10, 30]\nbudget_unit = "boxes"'))
    m = load_matrix(str(path), methods=["supervised+random"])
    run_matrix(m, tmp_path / "runs", launcher="serial", progress=False)
    recs = [
        json.loads(x) for f in (tmp_path / "runs").rglob("results.jsonl") for x in f.read_text().splitlines()
    ]
    data = load_domain_data(m.cells[0].domain)
    for r in recs:
        run = next((tmp_path / "runs").rglob(r["run_id"]))
        ids = (run / f"round{r['round']}" / "labelled.ids").read_text().split()
        assert set(_frames(ids).values()) == {3}
        once = sum(data.pool.by_id(f"{f}_beta0.02").num_objects for f in _frames(ids))
        assert r["n_labelled_boxes"] == once >= r["budget_target"]
        # the last frame may overshoot, but without it the budget was not yet reached
        assert (
            once - max(data.pool.by_id(f"{f}_beta0.02").num_objects for f in _frames(ids))
            < r["budget_target"]
        )


def test_initial_units_same_as_ids_for_singleton_units(tmp_path: Path):
    m = load_matrix("tiny")
    data = load_domain_data(m.cells[0].domain)
    ids = initial_ids(data.pool, 8, "images", 0)
    assert len(ids) == 8 and len(set(ids)) == 8
    assert all(data.pool.unit_of(i) == i for i in ids)
