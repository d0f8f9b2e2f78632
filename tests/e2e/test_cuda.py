"""The CUDA path: every method trains and every strategy selects on a GPU, and a matrix run with
``device="cuda"`` writes valid records on each benchmark domain (source checkpoints included).

Skipped on machines without CUDA (CI has none); run on a GPU machine with ``pytest tests/e2e/test_cuda.py``
(``LABELBUDGET_TEST_DEVICE=cpu`` runs the same checks on the CPU). The oriented ``fcos_r50`` (the
full matrix's DOTA detector) trains, predicts polygons and runs a matrix reproducibly on the device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import query_context

from baselines.base import METHODS, STRATEGIES
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


def test_ema_update_is_bit_identical_to_the_per_tensor_update_on_the_device(pool):
    """``benchmark.training.ema_update`` fuses the EMA into ``torch._foreach_*`` calls; on the device
    they must give exactly what ``mul_(keep).add_(x, alpha=1 - keep)`` per tensor gave."""
    from benchmark.training import ema_update

    avg = {k: v.to(DEVICE) for k, v in _detector(pool).state_dict().items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        cur = {
            k: v.to(DEVICE) for k, v in build_detector("tiny_fcos_xs", len(pool.classes)).state_dict().items()
        }
    for keep in (0.99, 0.7245179063360883, 2 / 11):
        want = {k: v.clone() for k, v in avg.items()}
        for k, v in want.items():
            if v.dtype.is_floating_point:
                v.mul_(keep).add_(cur[k], alpha=1.0 - keep)
        ema_update(avg, cur, keep)
        assert all(torch.equal(avg[k], want[k]) for k in want if want[k].dtype.is_floating_point)


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
        return query_context(pool, model, device=DEVICE)

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


# ------------------------------------------------------------------------------ oriented fcos_r50


def test_oriented_fcos_r50_trains_and_predicts_polygons_on_cuda(pool, make_train_context):
    """The full matrix's detector with ``oriented = true``: ResNet-50 FCOS with the rotated head
    trains (ProbIoU + angle + hull losses) and predicts polygons on the device."""

    def r50():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_detector("fcos_r50", len(pool.classes), oriented=True, score_thresh=0.0)

    ctx = make_train_context(pool, r50, iterations=3, device=DEVICE)
    model = METHODS.get("supervised")().train(ctx)
    assert model.oriented and not model.training
    assert all(torch.isfinite(p).all() for p in model.parameters())
    from benchmark.detectors import images_to_tensors, make_batch

    batch = make_batch(images_to_tensors([pool.image(i) for i in pool.ids[:2]])).to(DEVICE)
    preds = model.predict(batch)
    assert all(p.polygons is not None and p.polygons.shape == (len(p), 8) for p in preds)
    assert any(len(p) for p in preds) and all(np.isfinite(p.polygons).all() for p in preds)


def test_oriented_fcos_r50_matrix_on_cuda(tmp_path):
    """A matrix with the oriented ``fcos_r50`` on synthetic DOTA, on the device, twice: Task1 is the
    primary metric, predictions.json carries the polygons, and the same seed gives the same
    metrics and selections (deterministic kernels)."""
    from benchmark.spec import find_matrix

    text = find_matrix("tiny").read_text()
    text = text.replace('name = "tiny_fcos_xs"', 'name = "fcos_r50"\noriented = true')
    text = text.replace("iterations = 12", "iterations = 4").replace("batch_size = 4", "batch_size = 2")
    path = tmp_path / "tiny-r50-obb.toml"
    path.write_text(text)
    methods = ["supervised+random", "mean_teacher+entropy"]
    runs = []
    for k in ("a", "b"):
        m = load_matrix(str(path), methods=methods)
        assert all(c.detector == "fcos_r50" and c.detector_options == {"oriented": True} for c in m.cells)
        run_matrix(m, tmp_path / k, launcher="serial", device=DEVICE, progress=False)
        recs, problems = load_records(tmp_path / k)
        assert not problems, problems
        runs.append({(r["method"], r["round"]): r for r in recs})
        want = torch.cuda.get_device_name(DEVICE) if DEVICE.startswith("cuda") else "cpu"
        for r in recs:
            assert r["primary_metric"] == "mAP50-task1" and "mAP50" in r["metrics"]
            assert r["provenance"]["device"] == want
        preds = [json.loads(f.read_text()) for f in (tmp_path / k).rglob("round0/predictions.json")]
        assert preds and all("segmentation" in e for p in preds for e in p)
    a, b = runs
    assert a.keys() == b.keys() and len(a) == 2 * len(methods)
    for key, ra in a.items():
        assert ra["metrics"] == b[key]["metrics"], f"{key}: metrics differ between identical runs"
        assert ra["labelled_sha256"] == b[key]["labelled_sha256"], f"{key}: selections differ"
