"""The CUDA path: every method trains and every strategy selects on a GPU, and a matrix run with
``device="cuda"`` writes valid records on each benchmark domain (source checkpoints included).

Skipped on machines without CUDA (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.base import METHODS, STRATEGIES, ImageStore, QueryContext
from benchmark.detectors import build_detector
from benchmark.leaderboard import load_records
from benchmark.runner import run_matrix
from benchmark.spec import load_matrix
from domains.dota import DOTA

DEVICE = os.environ.get("LABELBUDGET_TEST_DEVICE", "cuda")  # "cpu" exercises the same checks here
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA device"
)


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def _detector(pool):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_detector("tiny_fcos_xs", len(pool.classes))


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_on_cuda(pool, name, make_train_context):
    ctx = make_train_context(pool, lambda: _detector(pool), iterations=6, device=DEVICE)
    model = METHODS.get(name)().train(ctx)
    assert not model.training
    assert all(p.device.type == torch.device(DEVICE).type for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_selects_on_cuda(pool, name):
    model = _detector(pool).to(DEVICE).eval()
    items = list(pool)

    def ctx():
        return QueryContext(
            model,
            items[:8],
            items[8:],
            ImageStore(pool.image),
            pool.classes,
            torch.Generator().manual_seed(0),
            np.random.default_rng(0),
            device=DEVICE,
        )

    picks = STRATEGIES.get(name)().select(ctx(), 10)
    assert len(picks) == 10 and len(set(picks)) == 10
    assert set(picks) <= {s.id for s in items[8:]}


@pytest.mark.parametrize("domain", ["dota", "sonar", "foggy_cityscapes", "pedestrian"])
def test_matrix_runs_on_cuda(tmp_path, domain):
    """One round of every trainer with its default strategy on each domain, on the GPU (sonar and
    Foggy Cityscapes train their source checkpoint on it too)."""
    methods = [f"{n}+{METHODS.get(n).default_strategy}" for n in METHODS.names()]
    m = load_matrix(
        "tiny",
        domains=[domain],
        methods=methods,
        budgets=[8],
        sets={domain: {"synthetic_size": "tiny"}},
    )
    run_matrix(m, tmp_path, launcher="serial", device=DEVICE, progress=False)
    recs, problems = load_records(tmp_path)
    assert not problems, problems
    assert {r["method"] for r in recs} == set(methods)
    for r in recs:
        want = torch.cuda.get_device_name(DEVICE) if DEVICE.startswith("cuda") else "cpu"
        assert r["provenance"]["device"] == want
        assert all(np.isfinite(v) for v in r["metrics"].values() if isinstance(v, float))


def _tiny_records(out, methods):
    m = load_matrix("tiny", methods=methods)
    run_matrix(m, out, launcher="serial", device=DEVICE, progress=False)
    recs, problems = load_records(out)
    assert not problems, problems
    ids = {}
    for f in Path(out).rglob("record.json"):
        rec = json.loads(f.read_text())
        ids[(rec["method"], rec["round"])] = (f.parent / "acquired.ids").read_text()
    return {(r["method"], r["round"]): {**r, "acquired": ids[(r["method"], r["round"])]} for r in recs}


def test_same_seed_same_selections_and_metrics_on_cuda(tmp_path):
    """Two runs of the same cells (separate folders, nothing shared) agree exactly: deterministic
    kernels on the GPU (``benchmark.protocol.deterministic``)."""
    methods = [f"{n}+random" for n in METHODS.names() if n != "supervised"] + ["supervised+entropy"]
    a = _tiny_records(tmp_path / "a", methods)
    b = _tiny_records(tmp_path / "b", methods)
    assert a.keys() == b.keys() and len(a) == 2 * len(methods)
    for k, ra in a.items():
        assert ra["metrics"] == b[k]["metrics"], f"{k}: metrics differ between identical runs"
        assert ra["acquired"] == b[k]["acquired"], f"{k}: selections differ between identical runs"


def test_deterministic_block_restores_settings():
    from benchmark.protocol import deterministic

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    with deterministic(DEVICE):
        if DEVICE.startswith("cuda"):
            assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
