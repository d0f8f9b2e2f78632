"""Methods and strategies see unlabelled samples without their labels: a method or a
strategy that reads an unlabelled sample's boxes fails with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.base import Method, Strategy
from benchmark.cli import main
from domains.base import HiddenLabelError, Sample


def test_label_free_view_hides_every_label_field():
    s = Sample("a", "g", 64, 48, boxes=[[1, 2, 10, 12]], labels=[3], polygons=[[1, 2, 10, 2, 10, 12, 1, 12]])
    v = s.label_free()
    assert (v.id, v.group, v.width, v.height) == ("a", "g", 64, 48)
    for name in ("boxes", "labels", "difficult", "ignore", "polygons", "visible_boxes", "occlusion",
                 "num_objects", "num_positive"):  # fmt: skip
        with pytest.raises(HiddenLabelError, match=f"sample 'a' is unlabelled: its {name}"):
            getattr(v, name)
    with pytest.raises(AttributeError):
        v.boxes = np.zeros((0, 4))  # read-only
    assert s.num_objects == 1  # the sample itself keeps its labels
    import copy
    import pickle

    for other in (copy.copy(v), copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert other.id == "a" and other.width == 64
        with pytest.raises(HiddenLabelError):
            _ = other.labels


class PeekingMethod(Method):
    """Trains nothing; reads the boxes of the unlabelled images (what no method may do)."""

    name = "peeking"

    def train(self, ctx):
        model = ctx.new_detector()
        counts = [len(s.boxes) for s in ctx.unlabelled]  # the forbidden read
        model.peeked = counts
        return model.eval()


class PeekingStrategy(Strategy):
    """Picks the unlabelled images with the most ground-truth objects (what no strategy may do)."""

    name = "peeking_strategy"

    def select(self, ctx, k):
        order = sorted(ctx.unlabelled, key=lambda s: -s.num_objects)
        return [s.id for s in order[:k]]


@pytest.fixture
def cheaters(monkeypatch):
    from baselines.base import METHODS, STRATEGIES

    METHODS.names(), STRATEGIES.names()  # load the built-in registries first
    monkeypatch.setitem(METHODS._items, "peeking", PeekingMethod)
    monkeypatch.setitem(STRATEGIES._items, "peeking_strategy", PeekingStrategy)


@pytest.mark.slow
@pytest.mark.parametrize("methods", ["peeking+random", "supervised+peeking_strategy"])
def test_reading_a_hidden_label_fails_the_run(cheaters, tmp_path, capsys, methods):
    code = main(["run", "tiny", "--methods", methods, "--out", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "is unlabelled" in err and ("its boxes" in err or "its num_objects" in err)
    assert "Traceback" not in err
    if methods.startswith("peeking+"):  # it failed while training round 0: no result was recorded
        assert not list((tmp_path / "runs").rglob("record.json"))


def test_a_train_context_from_the_fixture_is_label_free(dota_tiny_root, make_train_context):
    from domains.dota import DOTA

    pool = DOTA().load(dota_tiny_root, "pool")
    ctx = make_train_context(pool, lambda: torch.nn.Linear(1, 1))
    labelled = list(pool)[:8]  # the fixture's default labelled slice: its labels stay readable
    assert [s.num_objects for s in ctx.labelled] == [s.num_objects for s in labelled]
    assert sum(s.num_objects for s in ctx.labelled) > 0
    with pytest.raises(HiddenLabelError):
        _ = ctx.unlabelled[0].boxes
