"""The supervised baseline's ``labelled_view``: "flip" (the default so far) keeps its training
bit-identical to flips only; "weak" gives it the teacher-student methods' labelled augmentation."""

from __future__ import annotations

import pytest
import torch

from baselines.supervised import Supervised
from benchmark.detectors import build_detector
from domains.base import DOMAINS, SpecError


def _weights(method, ctx):
    return {k: v.clone() for k, v in method.train(ctx).state_dict().items()}


def test_views_differ_and_are_reproducible(dota_tiny_root, make_train_context):
    pool = DOMAINS.get("dota")().load(dota_tiny_root, "pool")

    def new_detector():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_detector("tiny_fcos_xs", len(pool.classes))

    def ctx():
        return make_train_context(pool, new_detector, iterations=3)

    flip = _weights(Supervised(), ctx())
    weak = _weights(Supervised(labelled_view="weak"), ctx())
    again = _weights(Supervised(labelled_view="weak"), ctx())
    assert any(not torch.equal(flip[k], weak[k]) for k in flip)
    assert all(torch.equal(weak[k], again[k]) for k in weak)


def test_unknown_view_is_an_error():
    with pytest.raises(SpecError, match="labelled_view"):
        Supervised(labelled_view="strong")
