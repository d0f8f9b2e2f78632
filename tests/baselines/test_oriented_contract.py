"""The contract suite with the oriented detector: every method and acquisition strategy
with ``[detector] oriented = true`` on tiny synthetic DOTA; the run records score Task1 as their
primary metric; ``labelbudget evaluate dota`` on Task1 files of a run's model equals its record."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import query_context as qctx

from baselines.base import METHODS, STRATEGIES
from benchmark.detectors import build_detector, images_to_tensors, make_batch
from benchmark.leaderboard import load_records
from benchmark.runner import run_matrix
from benchmark.spec import find_matrix, load_matrix
from domains.dota import DOTA

# the strategies choose 10 of this many unlabelled patches (not the whole pool: a "hot" model detects
# everywhere, and the polygon work per image makes the whole pool cost seconds per strategy)
UNLABELLED = 16


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def oriented_model(pool, score_thresh: float = 0.05, hot: bool = False):
    """A seeded oriented tiny detector; ``hot``: its class bias raised so that it detects (with
    class probabilities ~0.95) everywhere: pseudo-labels, fusion and pastes all get polygons."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_detector("tiny_fcos_xs", len(pool.classes), score_thresh=score_thresh, oriented=True)
    if hot:
        with torch.no_grad():
            m.head.cls.bias.fill_(3.0)
    return m.eval()


def rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy()


def test_hot_model_predicts_polygons(pool):
    p = oriented_model(pool, hot=True).predict(make_batch(images_to_tensors([pool.image(pool.ids[0])])))[0]
    assert len(p) > 0 and p.polygons is not None and p.polygons.shape == (len(p), 8)


@pytest.mark.parametrize("name", STRATEGIES.names())
@pytest.mark.parametrize("mode", ["plain", "hot", "silent"])
def test_strategy_contract_oriented(pool, name, mode):
    model = oriented_model(pool, 1.01 if mode == "silent" else 0.05, hot=mode == "hot")
    before = copy.deepcopy(model.state_dict())
    strat = STRATEGIES.get(name)()
    t0, n0 = rng_state()
    picks = strat.select(qctx(pool, model, n_unlabelled=UNLABELLED), 10)
    t1, n1 = rng_state()
    assert torch.equal(t0, t1) and (n0 == n1).all(), "global RNG state changed"
    unl = {s.id for s in list(pool)[8 : 8 + UNLABELLED]}
    assert len(picks) == 10 == len(set(picks)) and set(picks) <= unl
    assert picks == strat.select(qctx(pool, model, n_unlabelled=UNLABELLED), 10), "same seed, different ids"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"select mutated the model ({k})"


@pytest.mark.slow  # two 6-iteration trainings per method; test_contract trains every method in the fast loop
@pytest.mark.parametrize(
    ("name", "opts"), [(n, {}) for n in METHODS.names()] + [("triple_ema", {"mode": "ensemble"})]
)
def test_method_contract_oriented(pool, name, opts, make_train_context):
    """Every method trains the oriented detector from a teacher that labels everything (its
    pseudo-labels carry polygons through every hook: fusion, pastes), deterministically, without
    global RNG."""
    method = METHODS.get(name)(**opts)
    seen: list[dict] = []
    from benchmark.detectors.fcos import FCOS

    real_losses = FCOS.losses

    def spy(self, batch, targets, *a, **k):
        seen.extend(targets)
        return real_losses(self, batch, targets, *a, **k)

    def ctx():
        return make_train_context(pool, lambda: oriented_model(pool, hot=True).train(), iterations=6)

    t0, n0 = rng_state()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FCOS, "losses", spy)
        a = method.train(ctx())
    t1, n1 = rng_state()
    assert torch.equal(t0, t1) and (n0 == n1).all(), "global RNG state changed"
    b = method.train(ctx())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), f"same seed, different weights ({k})"
    assert not a.training and a.oriented
    # every target the detector saw (labelled and pseudo-labelled) came with its polygons
    assert seen and all("polygons" in t and len(t["polygons"]) == len(t["boxes"]) for t in seen)
    if METHODS.get(name).paradigm != "supervised":
        assert any(len(t["boxes"]) and "scores" in t for t in seen), "no pseudo-labels reached the student"
    if name == "dil":
        assert any("pasted" in t and bool(t["pasted"].any()) for t in seen), "no paste reached the student"
    p = a.predict(make_batch(images_to_tensors([pool.image(pool.ids[0])])))
    assert p[0].polygons is not None


# ------------------------------------------------------------------------------ end to end


def oriented_matrix(tmp_path: Path, extra: str = "") -> Path:
    text = find_matrix("tiny").read_text()
    text = re.sub(r'(?m)^name = "tiny_fcos_xs"$', 'name = "tiny_fcos_xs"\noriented = true', text)
    text = re.sub(r'(?m)^name = "tiny"$', 'name = "tiny-obb"', text)
    text = text.replace("[detector]", extra + "\n[detector]", 1)  # top-level keys go before the tables
    path = tmp_path / "tiny-obb.toml"
    path.write_text(text)
    return path


def _two_rounds(tmp_path: Path, method: str, extra: str = "") -> list[dict]:
    m = load_matrix(str(oriented_matrix(tmp_path, extra)), methods=[method])
    assert all(c.detector_options == {"oriented": True} for c in m.cells)
    run_matrix(m, tmp_path / "out", launcher="serial", progress=False)
    recs, problems = load_records(tmp_path / "out")
    assert not problems, problems
    return sorted(recs, key=lambda r: r["round"])


def _check(recs: list[dict], method: str) -> None:
    assert [r["round"] for r in recs] == [0, 1] and all(r["method"] == method for r in recs)
    assert [r["n_labelled"] for r in recs] == [8, 16]
    for r in recs:
        assert r["primary_metric"] == "mAP50-task1"
        assert r["detector_options"] == {"oriented": True}
        for k in ("mAP50-task1", "mAP50", "mAP50-95", "mAP50-patch"):
            assert 0.0 <= r["metrics"][k] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS.names())
def test_method_completes_tiny_oriented(tmp_path, name):
    method = f"{name}+{METHODS.get(name).default_strategy}"
    _check(_two_rounds(tmp_path, method), method)


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_completes_tiny_oriented(tmp_path, name):
    method = f"supervised+{name}"
    _check(_two_rounds(tmp_path, method), method)


@pytest.mark.slow
def test_evaluate_task1_files_equal_the_record(tmp_path, dota_tiny_root):
    """The run's own model (saved under ``warm_start``), its test patches merged into scenes and
    written as official ``Task1_<class>.txt`` files: ``labelbudget evaluate dota`` gives the Task1
    mAP of the run record, and its predictions.json carries the polygons."""
    from benchmark.cli import main
    from benchmark.data import load_domain_data
    from benchmark.protocol import _new_detector_factory
    from benchmark.training import predict_all
    from domains.patching import merge_patch_predictions

    path = oriented_matrix(tmp_path, "warm_start = true\n")  # warm start: each round's model is saved
    text = path.read_text().replace("budgets = [8, 16]", "budgets = [40]")
    path.write_text(re.sub(r"(?m)^iterations = \d+$", "iterations = 400", text))  # a model that detects
    m = load_matrix(str(path), methods=["supervised+random"])
    run_matrix(m, tmp_path / "out", launcher="serial", progress=False)
    recs, problems = load_records(tmp_path / "out")
    assert not problems and len(recs) == 1
    cell = m.cells[0]
    run = next((tmp_path / "out").glob("dota/supervised+random/seed0/*"))
    data = load_domain_data(cell.domain, progress=False)
    model = _new_detector_factory(cell, len(data.domain.classes))()
    model.load_state_dict(torch.load(run / "round0" / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    test = data.test
    preds = predict_all(model, data.images.many(test.ids))
    assert all(p.polygons is not None for p in preds)
    merged = merge_patch_predictions(list(test), preds)
    out = tmp_path / "task1"
    out.mkdir()
    n_lines = 0
    for c, cls in enumerate(data.domain.classes):
        lines = []
        for scene, det in merged.items():
            for q, s in zip(det.polygons[det.labels == c], det.scores[det.labels == c], strict=True):
                lines.append(f"{scene} {s:.9g} " + " ".join(f"{v:.9g}" for v in q))
        (out / f"Task1_{cls}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        n_lines += len(lines)
    assert n_lines > 0
    res_path = tmp_path / "eval.json"
    assert main(["evaluate", "dota", str(dota_tiny_root), str(out), "--json", str(res_path)]) == 0
    res = json.loads(res_path.read_text())
    rec0 = recs[0]
    print("Task1 mAP50: record", rec0["metrics"]["mAP50-task1"], "evaluate", res["metrics"]["mAP50-task1"])
    assert rec0["metrics"]["mAP50-task1"] > 0.0
    assert res["metrics"]["mAP50-task1"] == pytest.approx(rec0["metrics"]["mAP50-task1"], abs=1e-6)
    # predictions.json: one COCO entry per detection, with the polygon as its segmentation
    pj = json.loads((run / "round0" / "predictions.json").read_text())
    assert len(pj) == sum(len(p) for p in preds)
    assert all(len(e["segmentation"]) == 1 and len(e["segmentation"][0]) == 8 for e in pj)
    first = next(p for p in preds if len(p))  # entries follow the test order, detection by detection
    assert np.allclose(pj[0]["segmentation"][0], first.polygons[0], atol=1e-4)
    b = first.boxes[0]
    assert np.allclose(pj[0]["bbox"], [b[0], b[1], b[2] - b[0], b[3] - b[1]], atol=1e-4)


def test_oriented_auto_follows_the_domain_box_type(tmp_path):
    """``oriented = "auto"``: one matrix-wide setting, oriented on DOTA, horizontal elsewhere."""
    from benchmark.protocol import _new_detector_factory
    from domains.base import SpecError

    path = oriented_matrix(tmp_path)
    path.write_text(path.read_text().replace("oriented = true", 'oriented = "auto"'))
    for domain, want in (("dota", True), ("sonar", False), ("pedestrian", False)):
        m = load_matrix(str(path), domains=[domain], sets={domain: {"synthetic_size": "tiny"}})
        cell = m.cells[0]
        assert cell.detector_options == {"oriented": "auto"}
        model = _new_detector_factory(cell, 3)()
        assert model.oriented is want and (model.head.angle is not None) is want
    assert build_detector("tiny_fcos_xs", 3, "obb", oriented="auto").oriented
    assert not build_detector("tiny_fcos_xs", 3, "hbb", oriented="auto").oriented
    with pytest.raises(SpecError, match="box type"):
        build_detector("tiny_fcos_xs", 3, oriented="auto")
    with pytest.raises(SpecError, match="oriented must be"):
        build_detector("tiny_fcos_xs", 3, oriented="yes")
