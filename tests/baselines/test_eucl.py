"""EUCL: registration and card, the uncertainty map, each component's gradient and ablation switch,
and the ``eucl_uncertainty`` acquisition score."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from contexts import loop_context

from baselines.acquisition.eucl_uncertainty import EUCLUncertainty, foreground_uncertainty
from baselines.base import METHODS, STRATEGIES
from baselines.eucl import (
    EUCL,
    contrastive_loss,
    foreground_loss,
    uncertainty_map,
    valid_locations,
)
from baselines.teacher_student import Step, TeacherStudentMethod
from benchmark.detectors import build_detector
from benchmark.detectors.base import make_batch
from benchmark.training import Schedule, sample_targets
from domains.base import SpecError
from domains.dota import DOTA

SCHED = Schedule(iterations=4, batch_size=2, warmup=1)


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def _detector(pool) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_detector("tiny_fcos_xs", len(pool.classes))


class _NoisyTeacher(EUCL):
    """A teacher with spread-out class probabilities (confident foreground, uncertain and certain
    background locations all occur), so every component has something to act on in a few steps."""

    def init_teacher(self, student):
        teacher = super().init_teacher(student)
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            w = teacher.head.cls.weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.15)
            teacher.head.cls.bias.fill_(-3.0)
        return teacher


def _trainer(**hp) -> EUCL:
    return _NoisyTeacher(**hp).loop(loop_context(SCHED))


def _images(pool, ids: slice) -> list[torch.Tensor]:
    return [
        torch.from_numpy(np.ascontiguousarray(pool.image(s.id).transpose(2, 0, 1))) for s in list(pool)[ids]
    ]


def _step(pool, **hp):
    """One post-burn-in step's losses (unsup, extras) of a fresh student with a noisy teacher."""
    tr = _trainer(**hp)
    model = _detector(pool).train()
    tr.setup(model, [], [], [])
    tr.teacher = tr.init_teacher(model)
    weak = [tr.weak(im, torch.zeros((0, 4)))[0] for im in _images(pool, slice(0, 2))]
    pls = tr.make_pseudo_labels(weak, SCHED.iterations - 1)
    strong, s_targets = tr.make_strong(weak, pls)
    assert [s.shape for s in strong] == [w.shape for w in weak], "strong view keeps the weak geometry"
    ub = make_batch(strong)
    step = Step(SCHED.iterations - 1, SCHED.iterations, ub, [], weak, pls, strong, s_targets, ub)
    u_loss, _ = tr.unsup_loss(model, step)
    step.student_out = model.last_outputs
    return tr, model, u_loss, tr.extra_losses(model, step)


def _grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]


def _norm(gs: list[torch.Tensor]) -> float:
    return float(sum(g.abs().sum() for g in gs))


# ------------------------------------------------------------------------------ card and settings


def test_registered_with_card_and_switches():
    cls = METHODS.get("eucl")
    assert cls is EUCL and cls.paradigm == "ssl" and issubclass(cls, TeacherStudentMethod)
    assert cls.designed_for == "sonar" and cls.default_strategy == "eucl_uncertainty"
    assert cls.default_strategy in STRATEGIES
    assert set(cls.components.values()) == {"uncertainty_weighting", "foreground_loss", "contrastive"}
    for hp in cls.components.values():
        assert cls.hparams[hp] is True
    doc = sys.modules[cls.__module__].__doc__
    assert "11059963" in doc and "geometric=False" in doc
    for name in cls.hparams:
        assert name in doc, f"hyper-parameter {name} missing from the card"
    with pytest.raises(SpecError):
        EUCL(bogus=1)
    with pytest.raises(SpecError):
        EUCL(entropy="renyi")
    assert EUCL(contrastive=False).version() != EUCL().version()


def test_uncertainty_map_is_normalised_entropy():
    p = torch.tensor([[0.5, 0.0, 0.0], [1e-9, 1e-9, 1e-9], [0.999999, 0.0, 0.0], [0.9, 0.5, 0.2]])
    u = uncertainty_map(p, "foreground")
    assert u[0] == pytest.approx(1.0, abs=1e-5) and u[1] < 1e-4 and u[2] < 1e-4
    assert 0 < u[3] < 1  # H(0.9) / log 2
    uc = uncertainty_map(p, "classes")
    assert uc[0] == pytest.approx(1 / 3, abs=1e-4) and ((uc >= 0) & (uc <= 1)).all()
    with pytest.raises(SpecError):
        uncertainty_map(p, "other")


def test_valid_locations_exclude_padding():
    locs = torch.tensor([[4.0, 4.0], [60.0, 4.0], [4.0, 60.0]])
    v = valid_locations(locs, [(64, 64), (32, 64)])
    assert v.tolist() == [[True, True, True], [True, True, False]]


# ------------------------------------------------------------------------------ components: gradients


def test_uncertainty_weighting_reweights_the_pseudo_label_gradient(pool):
    tr, model, u_on, _ = _step(pool)
    w = tr.certainty()
    assert w.shape == tr.tdense["fg"].shape and float(w.min()) >= 0 and float(w.max()) <= 1
    assert float(w.std()) > 0.05, "the noisy teacher gives spread-out certainties"
    params = [model.head.cls.weight]
    g_on = _grad(u_on, params)
    assert _norm(g_on) > 0
    _, model_off, u_off, _ = _step(pool, uncertainty_weighting=False)
    g_off = _grad(u_off, [model_off.head.cls.weight])
    assert not torch.allclose(g_on[0], g_off[0]), "weighting must change the pseudo-label gradient"
    assert float(u_on.detach()) != pytest.approx(float(u_off.detach()))


def test_foreground_loss_gradient_reaches_the_classifier(pool):
    tr, model, _, extra = _step(pool, contrastive=False)
    assert "fg" in extra and float(extra["fg"].detach()) > 0
    assert _norm(_grad(extra["fg"], [model.head.cls.weight, model.head.cls.bias])) > 0
    assert _norm(_grad(extra["fg"], list(model.backbone.parameters()))) > 0
    _, _, _, extra_off = _step(pool, foreground_loss=False, contrastive=False)
    assert "fg" not in extra_off


def test_contrastive_loss_gradient_reaches_features_and_projection(pool):
    tr, model, _, extra = _step(pool, foreground_loss=False)
    assert "contrast" in extra and float(extra["contrast"].detach()) > 0
    assert _norm(_grad(extra["contrast"], tr.extra_parameters())) > 0
    assert _norm(_grad(extra["contrast"], list(model.fpn.parameters()))) > 0
    assert _norm(_grad(extra["contrast"], [model.head.cls.weight])) == 0, "features only, not the head"
    tr_off, _, _, extra_off = _step(pool, contrastive=False)
    assert "contrast" not in extra_off and tr_off.extra_parameters() == []


def test_foreground_loss_is_balanced_and_weighted():
    logits = torch.full((1, 4, 2), -3.0, requires_grad=True)
    teacher_fg = torch.tensor([[0.9, 0.05, 0.05, 0.05]])
    valid = torch.ones((1, 4), dtype=torch.bool)
    ones = torch.ones((1, 4))
    loss = foreground_loss(logits, teacher_fg, ones, valid)
    (g,) = torch.autograd.grad(loss, logits)
    # the one foreground location weighs as much as the three background ones together
    assert float(g[0, 0].abs().sum()) > float(g[0, 1:].abs().sum())
    zero_fg = foreground_loss(logits, teacher_fg, torch.tensor([[0.0, 1.0, 1.0, 1.0]]), valid)
    assert float(zero_fg.detach()) < float(loss.detach()), "a zero-certainty location contributes nothing"
    assert float(foreground_loss(logits, teacher_fg, ones, torch.zeros_like(valid)).detach()) == 0.0


def test_contrastive_loss_prefers_aligned_embeddings():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn((4, 8), generator=g), dim=1)
    neg = torch.nn.functional.normalize(torch.randn((16, 8), generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    aligned = contrastive_loss(q, q, labels, neg, 0.2)
    shuffled = contrastive_loss(q, neg[:4], labels, neg, 0.2)
    assert float(aligned) < float(shuffled)
    assert float(contrastive_loss(q[:0], q[:0], labels[:0], neg, 0.2)) == 0.0


# ------------------------------------------------------------------------------ switches change the update


def _fit(pool, **hp) -> dict[str, torch.Tensor]:
    tr = _trainer(**hp)
    images = _images(pool, slice(0, 4))
    targets = [sample_targets(s) for s in list(pool)[:4]]
    model = tr.fit(_detector(pool), images, targets, _images(pool, slice(4, 8)))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def fitted_default(pool):
    return _fit(pool)


@pytest.mark.parametrize(
    "switch, zero_weight",
    [
        ("uncertainty_weighting", {"min_certainty": 1.0}),
        ("foreground_loss", {"fg_weight": 0.0}),
        ("contrastive", {"contrast_weight": 0.0}),
    ],
)
def test_switching_a_component_off_changes_the_update(pool, fitted_default, switch, zero_weight):
    again = _fit(pool)
    assert all(torch.equal(v, again[k]) for k, v in fitted_default.items()), "fixed seed, same weights"
    off = _fit(pool, **{switch: False})
    diff = [k for k, v in fitted_default.items() if v.is_floating_point() and not torch.equal(v, off[k])]
    assert diff, f"{switch}=False left every parameter unchanged"
    # the switch changes nothing but the component: off == the component at zero weight
    zero = _fit(pool, **zero_weight)
    assert all(torch.equal(v, zero[k]) for k, v in off.items()), f"{switch}=False changed more than its loss"


# ------------------------------------------------------------------------------ acquisition


def test_foreground_uncertainty_score():
    fg = np.zeros((4, 4))
    assert foreground_uncertainty(fg) == pytest.approx(0.0, abs=1e-4)  # no foreground: mean over all
    fg[0, 0] = 0.55  # one uncertain foreground location
    uncertain = foreground_uncertainty(fg)
    fg2 = np.zeros((4, 4))
    fg2[0, 0] = 0.99  # one confident foreground location
    assert uncertain > foreground_uncertainty(fg2) > 0
    assert foreground_uncertainty(np.zeros((0, 0))) == 0.0
    cp = np.stack([fg, np.zeros((4, 4))])
    assert 0 < foreground_uncertainty(fg, cp, entropy="classes") < uncertain
    with pytest.raises(SpecError):
        EUCLUncertainty(entropy="x")
