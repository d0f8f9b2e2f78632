"""``[detector] start``: loading the shared pretrained start (horizontal and oriented), its
validation in a matrix, and its hash in run ids, cache keys and records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from benchmark.detectors import build_detector
from benchmark.detectors.start import SHIPPED, load_start, read_checkpoint, resolve_start, save_start
from domains.base import SpecError

CKPT = SHIPPED["tiny_fcos_xs"]


def _seeded(**kw) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return build_detector("tiny_fcos_xs", 3, **kw)


@pytest.mark.parametrize("oriented", [False, True])
def test_every_tensor_but_the_class_layer_transfers(oriented):
    state = read_checkpoint(CKPT)["state"]
    scratch = _seeded(oriented=oriented).state_dict()
    model = _seeded(oriented=oriented, start="pretrained")
    own = model.state_dict()
    for k, v in own.items():
        if k.startswith("head.cls.") or k.startswith("head.angle."):
            assert k not in state or state[k].shape != v.shape or k.startswith("head.cls.")
            assert torch.equal(v, scratch[k]), k  # the seed's own initialisation
        else:
            assert torch.equal(v, state[k].to(v.dtype)), k
            assert v.dtype == scratch[k].dtype
    assert any(k.startswith("backbone.") for k in state) and any(k.startswith("fpn.") for k in state)
    assert any(k.startswith("head.tower.") for k in state)
    assert ("head.angle.weight" in own) == oriented
    assert state["head.cls.weight"].shape[0] == 10  # the corpus's classes: never transferred
    # a different pretrained start: the transferred weights differ from random ones
    assert not torch.equal(own["backbone.stages.1.0.0.weight"], scratch["backbone.stages.1.0.0.weight"])


def test_pretrained_detector_trains_and_predicts():
    from benchmark.detectors import make_batch

    model = _seeded(oriented=True, start="pretrained")
    img = torch.zeros(3, 128, 128, dtype=torch.uint8)
    tg = {
        "boxes": torch.tensor([[10.0, 10, 40, 30]]),
        "labels": torch.tensor([1]),
        "ignore": torch.tensor([False]),
    }
    losses = model.train().losses(make_batch([img]), [tg])
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(model.eval().predict(make_batch([img]))) == 1


def test_a_checkpoint_of_another_shape_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="ships a pretrained start for tiny_fcos_xs only"):
        build_detector("tiny_fcos", 3, start="pretrained")
    with pytest.raises(SpecError, match="does not fit this detector"):
        build_detector("tiny_fcos", 3, start=str(CKPT))
    other = build_detector("tiny_fcos", 3)
    save_start(tmp_path / "big.pt", other, {"detector": "tiny_fcos"})
    with pytest.raises(SpecError, match="does not fit"):
        load_start(build_detector("tiny_fcos_xs", 3), tmp_path / "big.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match="not a readable torch checkpoint"):
        build_detector("tiny_fcos_xs", 3, start=str(tmp_path / "junk.pt"))


def test_resolve_start_names_the_checkpoint_by_its_hash(tmp_path):
    sha = hashlib.sha256(CKPT.read_bytes()).hexdigest()
    assert resolve_start("tiny_fcos_xs", {"start": "pretrained"}) == {
        "start": "pretrained",
        "start_sha256": sha,
    }
    assert resolve_start("tiny_fcos_xs", {"start": "random", "oriented": "auto"}) == {"oriented": "auto"}
    assert resolve_start("tiny_fcos_xs", {"start": "pretrained", "start_sha256": sha})["start_sha256"] == sha
    with pytest.raises(SpecError, match="checkpoint changed"):
        resolve_start("tiny_fcos_xs", {"start": "pretrained", "start_sha256": "0" * 64})
    with pytest.raises(SpecError, match="start_sha256 pins"):
        resolve_start("tiny_fcos_xs", {"start_sha256": sha})
    for bad in (3, "", True):
        with pytest.raises(SpecError, match="start must be"):
            resolve_start("tiny_fcos_xs", {"start": bad})
    with pytest.raises(SpecError, match="does not exist"):
        resolve_start("tiny_fcos_xs", {"start": str(tmp_path / "missing.pt")})


def _matrix(tmp_path: Path, extra: str) -> Path:
    from minimatrix import mini_matrix

    p = tmp_path / f"m{abs(hash(extra))}.toml"
    p.write_text(mini_matrix().replace('name = "tiny_fcos_xs"\n', f'name = "tiny_fcos_xs"\n{extra}\n'))
    return p


def test_matrix_option_start(tmp_path):
    from benchmark.protocol import _round0_key
    from benchmark.spec import load_matrix

    sha = hashlib.sha256(CKPT.read_bytes()).hexdigest()
    rand = load_matrix(str(_matrix(tmp_path, ""))).cells[0]
    explicit = load_matrix(str(_matrix(tmp_path, 'start = "random"'))).cells[0]
    pre = load_matrix(str(_matrix(tmp_path, 'start = "pretrained"'))).cells[0]
    by_path = load_matrix(str(_matrix(tmp_path, f'start = "{CKPT}"'))).cells[0]
    assert rand.detector_options == explicit.detector_options == {}
    assert rand.run_id == explicit.run_id  # the default: run ids unchanged
    assert pre.detector_options == {"start": "pretrained", "start_sha256": sha}
    assert pre.run_id != rand.run_id
    assert by_path.canonical()["detector_options"] == {"start": CKPT.name, "start_sha256": sha}  # no abs path
    assert _round0_key(pre, ["a"], "v") != _round0_key(rand, ["a"], "v")
    for bad, msg in (('start = "nope.pt"', "does not exist"), ("start = 1", "start must be"),
                     ('start = "pretrained"\nstart_sha256 = "abc"', "checkpoint changed")):  # fmt: skip
        with pytest.raises(SpecError, match=msg):
            load_matrix(str(_matrix(tmp_path, bad)))


def test_every_method_starts_from_it(tmp_path, dota_tiny_root):
    """The protocol's ``new_detector`` (every method's initial weights; also what a source
    checkpoint trains from) carries the pretrained start, and the class layer the seed's own."""
    from benchmark.protocol import _new_detector_factory
    from benchmark.spec import load_matrix

    state = read_checkpoint(CKPT)["state"]
    pre = load_matrix(str(_matrix(tmp_path, 'start = "pretrained"\noriented = "auto"'))).cells[0]
    rand = load_matrix(str(_matrix(tmp_path, 'oriented = "auto"'))).cells[0]
    m_pre, m_rand = _new_detector_factory(pre, 8)(), _new_detector_factory(rand, 8)()
    assert m_pre.oriented  # DOTA
    sp, sr = m_pre.state_dict(), m_rand.state_dict()
    assert torch.equal(sp["fpn.output.0.weight"], state["fpn.output.0.weight"].float())
    assert torch.equal(sp["head.cls.weight"], sr["head.cls.weight"])
    assert torch.equal(sp["head.angle.weight"], sr["head.angle.weight"])
