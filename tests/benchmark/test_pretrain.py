"""The pretraining corpus and ``labelbudget pretrain``: disjoint from every domain, deterministic,
re-derivable; the shipped checkpoint is what its sidecar says."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.pretrain_corpus import CLASSES, IMAGE_SIZE, CorpusSpec, corpus, corpus_sha256, render

ROOT = Path(__file__).resolve().parents[2]


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()


def test_corpus_images_are_valid_and_reproducible_one_by_one():
    items = corpus(CorpusSpec(seed=0, n_images=40))
    again = render(0, 17)
    assert np.array_equal(items[17].image, again.image) and np.array_equal(items[17].boxes, again.boxes)
    assert not np.array_equal(render(1, 17).image, again.image)  # another corpus seed, another image
    sizes, classes = [], set()
    for c in items:
        assert c.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and c.image.dtype == np.uint8
        assert len(c.boxes) == len(c.labels) == len(c.ignore)
        assert (c.boxes[:, :2] >= 0).all() and (c.boxes[:, 2:] <= IMAGE_SIZE).all()
        assert (c.boxes[:, 2:] > c.boxes[:, :2]).all()
        classes |= set(c.labels.tolist())
        sizes += (c.boxes[:, 2:] - c.boxes[:, :2]).max(1).tolist()
    assert classes == set(range(len(CLASSES)))
    assert np.mean(np.asarray(sizes) < 16) > 0.3  # mostly small objects
    assert max(len(c.labels) for c in items) >= 15  # and dense images
    assert corpus_sha256(items[:5]) == corpus_sha256(corpus(CorpusSpec(seed=0, n_images=5)))


def test_corpus_generator_is_its_own_code():
    """The corpus is not drawn by any domain's generator: its module imports none of them."""
    tree = ast.parse((ROOT / "benchmark" / "pretrain_corpus.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("domains") for m in mods), mods


def test_no_corpus_image_is_an_image_of_any_domain():
    """Every split (pool, test, source) of every registered domain's synthetic data (tiny) against
    the corpus images: no image in common."""
    from domains.base import DOMAINS
    from domains.synthetic import ensure_synthetic

    corpus_hashes = {_sha(c.image) for c in corpus(CorpusSpec(seed=0, n_images=150))}
    assert len(corpus_hashes) == 150
    checked = 0
    for name in DOMAINS.names():
        dom = DOMAINS.get(name)()
        root = ensure_synthetic(name, "tiny", 0, progress=False)
        for split in dom.available_splits(root):
            ds = dom.load(root, split)
            for sid in ds.ids:
                img = ds.image(sid)
                assert _sha(img) not in corpus_hashes, f"{name}/{split}/{sid} is a corpus image"
                checked += 1
    assert checked > 100


def _short(tmp_path: Path, name: str, seed: int = 0) -> tuple[dict, dict]:
    from benchmark.detectors.start import read_checkpoint
    from benchmark.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(seed=seed, n_images=10, iterations=3, batch_size=2, holdout=4)
    side = pretrain(cfg, tmp_path / f"{name}.pt")
    return side, read_checkpoint(tmp_path / f"{name}.pt")["state"]


def test_short_pretraining_is_rederived_exactly(tmp_path):
    a, sa = _short(tmp_path, "a")
    b, sb = _short(tmp_path, "b")
    c, sc = _short(tmp_path, "c", seed=1)
    assert a["sha256"] == b["sha256"] and a["corpus_sha256"] == b["corpus_sha256"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert c["sha256"] != a["sha256"] and c["corpus_sha256"] != a["corpus_sha256"]
    assert all(v.dtype in (torch.float16, torch.int64) for v in sa.values())  # stored compactly
    assert a["sha256"] == hashlib.sha256((tmp_path / "a.pt").read_bytes()).hexdigest()
    assert a["config"]["iterations"] == 3 and a["loss_curve"]["tenths"]
    assert 0.0 <= a["holdout"]["AP50"] <= 1.0


@pytest.mark.slow  # `labelbudget pretrain` end to end: a (short) training through the CLI
def test_pretrain_command_writes_checkpoint_and_sidecar(tmp_path, capsys):
    from benchmark.cli import main

    out = tmp_path / "p.pt"
    argv = ["pretrain", "--out", str(out), "--iterations", "2", "--images", "6", "--quiet"]
    assert main(argv) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert side["command"][:2] == ["labelbudget", "pretrain"] and "--seed=0" in side["command"]
    assert side["corpus"]["namespace"] == "pretrain-corpus" and side["threads"] >= 1
    assert main(argv) == 2  # an existing checkpoint is kept without --force
    assert "--force" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "x.bin"), "--quiet"]) == 2


def test_shipped_checkpoint_matches_its_sidecar():
    from benchmark.detectors.start import SHIPPED, read_checkpoint

    path = SHIPPED["tiny_fcos_xs"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert path.stat().st_size < 3_000_000
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert side["detector"] == "tiny_fcos_xs" and side["classes"] == list(CLASSES)
    assert side["command"][:2] == ["labelbudget", "pretrain"]
    ckpt = read_checkpoint(path)
    assert ckpt["corpus"] == side["corpus"]
    tenths = side["loss_curve"]["tenths"]
    assert tenths[-1]["total"] < 0.9 * tenths[0]["total"]  # it learned (1.77 -> 1.44)
    assert side["holdout"]["AP50"] > 0.03 and side["config"]["iterations"] == len(tenths) * 600


def test_pyproject_ships_the_weights():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"detectors/weights/*.pt"' in text


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"n_images": -1}, {"seed": -1}])
def test_bad_pretrain_config(bad):
    from benchmark.pretrain import PretrainConfig
    from domains.base import SpecError

    with pytest.raises(SpecError):
        PretrainConfig(**bad)
