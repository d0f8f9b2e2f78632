"""Acquisition strategies: the scoring functions on hand-made predictions, k-centre, k-means, box budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baselines.acquisition.class_balanced import class_rarity
from baselines.acquisition.cluster_diversity import kmeans
from baselines.acquisition.committee import disagreement
from baselines.acquisition.core_set import k_center_greedy
from baselines.acquisition.least_confidence import least_confidence, margin_uncertainty
from baselines.base import STRATEGIES
from benchmark.detectors.base import Prediction


def test_least_confidence_and_margin():
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    lc = least_confidence(p)
    assert np.allclose(lc, [0.1, 0.6, 2 / 3])
    mg = margin_uncertainty(p)
    assert np.allclose(mg, [1 - 0.85, 1.0, 1.0])
    assert least_confidence(np.zeros((0, 3))).shape == (0,)


def test_all_strategies_registered():
    expected = {
        "random",
        "entropy",
        "least_confidence",
        "margin",
        "core_set",
        "localization_stability",
        "committee",
        "class_balanced",
        "cluster_diversity",
    }
    assert expected <= set(STRATEGIES.names())


def _brute_k_center(x, c, k):
    d = ((x[:, None] - c[None]) ** 2).sum(-1).min(1) if len(c) else np.full(len(x), np.inf)
    picks = []
    for _ in range(k):
        d2 = d.copy()
        d2[picks] = -1
        i = int(np.argmax(d2))
        picks.append(i)
        d = np.minimum(d, ((x - x[i]) ** 2).sum(-1))
    return picks


@pytest.mark.parametrize("chunk", [7, 4096])
def test_k_center_matches_brute_force(chunk):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    c = rng.normal(size=(10, 5)).astype(np.float32)
    got = k_center_greedy(x, c, 15, np.random.default_rng(1), chunk=chunk)
    assert got == _brute_k_center(x.astype(np.float64), c.astype(np.float64), 15)
    assert len(set(got)) == 15


def test_k_center_covers_clusters_first():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100.0]])
    x = np.concatenate([cc + rng.normal(size=(50, 2)) for cc in centres])
    picks = k_center_greedy(x, centres[:1], 3, rng)
    assert {p // 50 for p in picks} == {1, 2, 3}  # one pick in each uncovered blob
    assert k_center_greedy(x, None, 0, rng) == []
    assert len(k_center_greedy(x, None, 500, rng)) == len(x)


def test_kmeans_finds_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10.0]])
    x = np.concatenate([cc + 0.1 * rng.normal(size=(30, 2)) for cc in centres])
    c = kmeans(x, 3, np.random.default_rng(0))
    d = np.sqrt(((c[:, None] - centres[None]) ** 2).sum(-1)).min(1)
    assert (d < 0.5).all()


def test_class_rarity_prefers_unseen_classes():
    w = class_rarity(np.array([0, 0, 0, 0, 1]), 3)
    assert w[2] > w[1] > w[0]
    assert np.allclose(class_rarity(np.array([0, 1, 2]), 3), 1.0)


def _pred(boxes, probs):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    probs = np.asarray(probs, np.float32).reshape(len(boxes), 2)
    return Prediction(boxes, probs.max(1), probs.argmax(1), probs)


def test_committee_disagreement():
    a = _pred([[0, 0, 10, 10]], [[0.8, 0.2]])
    same = disagreement(a, a, 2)
    assert np.allclose(same, 0.0, atol=1e-6)
    shifted = disagreement(a, _pred([[5, 0, 15, 10]], [[0.2, 0.8]]), 2)
    assert shifted[0] > 1.0 / 3  # 1 - IoU(1/3) plus a positive KL
    missing = disagreement(a, _pred([], np.zeros((0, 2))), 2)
    assert np.allclose(missing, 1 + np.log(2))


def test_strategies_reject_bad_hparams():
    from domains.base import SpecError

    for name in ("least_confidence", "margin", "class_balanced", "committee"):
        with pytest.raises(SpecError):
            STRATEGIES.get(name)(aggregate="median")
    with pytest.raises(SpecError):
        STRATEGIES.get("core_set")(bogus=1)


@pytest.mark.slow
def test_box_budget_matrix_end_to_end(tmp_path):
    """A box-budget matrix: each round's labelled boxes reach the target, overshooting by at most the
    last revealed image's boxes."""
    from benchmark.data import load_domain_data
    from benchmark.leaderboard import load_records
    from benchmark.runner import run_matrix
    from benchmark.spec import load_matrix

    toml = (Path(__file__).parents[2] / "benchmark" / "matrices" / "tiny.toml").read_text()
    toml = toml.replace('budget_unit = "images"', 'budget_unit = "boxes"').replace(
        "budgets = [8, 16]", "budgets = [60, 120]"
    )
    assert 'budget_unit = "boxes"' in toml and "budgets = [60, 120]" in toml
    (tmp_path / "boxes.toml").write_text(toml)
    m = load_matrix(str(tmp_path / "boxes.toml"), methods=["supervised+least_confidence"])
    out = tmp_path / "runs"
    run_matrix(m, out, launcher="serial", progress=False)
    recs, problems = load_records(out)
    assert not problems and len(recs) == 2
    pool = load_domain_data(m.cells[0].domain, progress=False).pool
    for r in sorted(recs, key=lambda r: r["round"]):
        assert r["budget_unit"] == "boxes"
        run = next(out.rglob("results.jsonl")).parent
        ids = (run / f"round{r['round']}" / "labelled.ids").read_text().split()
        counts = [pool.by_id(i).num_objects for i in ids]
        assert sum(counts) == r["n_labelled_boxes"]
        assert r["n_labelled_boxes"] >= r["budget_target"]
        assert r["n_labelled_boxes"] - counts[-1] < r["budget_target"], "more than one image of overshoot"


def test_committee_uses_snapshots_without_mutating_the_model(dota_tiny_root):
    import torch

    from baselines.base import ImageStore, QueryContext
    from benchmark.detectors import build_detector
    from domains.dota import DOTA

    pool = list(DOTA().load(dota_tiny_root, "pool"))
    ds = DOTA().load(dota_tiny_root, "pool")

    def model(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_detector("tiny_fcos_xs", len(ds.classes), score_thresh=0.005).eval()

    m = model(0)
    m.committee_states = [model(1).state_dict()]
    before = {k: v.clone() for k, v in m.state_dict().items()}

    def ctx():
        return QueryContext(
            m,
            pool[:4],
            pool[4:14],
            ImageStore(ds.image),
            ds.classes,
            torch.Generator().manual_seed(0),
            np.random.default_rng(0),
        )

    strat = STRATEGIES.get("committee")()
    s_snap = strat.scores(ctx())
    assert (s_snap > 0).any()
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    m.committee_states = []  # no snapshots: test-time flips stand in
    s_tta = strat.scores(ctx())
    assert s_tta.shape == s_snap.shape and not np.allclose(s_tta, s_snap)
