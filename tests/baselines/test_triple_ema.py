"""triple_ema: registration and card, the TEMA teacher arithmetic, each component's gradient and
ablation switch (one fixed-seed post-burn-in step with the switch on vs off), the ensemble reading,
and the ``tema_disagreement`` acquisition strategy."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch
from contexts import loop_context

from baselines.acquisition.tema_disagreement import TEMADisagreement
from baselines.base import METHODS, STRATEGIES, ImageStore, QueryContext
from baselines.teacher_student import Step, TeacherStudentMethod
from baselines.triple_ema import (
    TripleEMA,
    class_balanced_weights,
    labelled_class_counts,
)
from benchmark.detectors import build_detector
from benchmark.detectors.base import Prediction, make_batch
from benchmark.training import Schedule, sample_targets
from domains.base import SpecError
from domains.dota import DOTA


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def new_detector(n_classes: int, score_thresh: float = 0.05) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_detector("tiny_fcos_xs", n_classes, score_thresh=score_thresh)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# ------------------------------------------------------------------------------ card and settings


def test_registered_with_card_and_switches():
    cls = METHODS.get("triple_ema")
    assert cls is TripleEMA and cls.paradigm == "ssl" and issubclass(cls, TeacherStudentMethod)
    assert cls.designed_for == "dota" and cls.default_strategy == "tema_disagreement"
    assert "tema_disagreement" in STRATEGIES
    doc = sys.modules[cls.__module__].__doc__
    assert "Triple-EMA" in doc and "113116" in doc
    for key in cls.hparams:
        assert f"{key} = " in doc, f"hyper-parameter {key} missing from the card"
    assert set(cls.components.values()) == {"triple_ema", "adaptive_thresholds", "class_rebalancing"}
    for switch in cls.components.values():
        assert cls.hparams[switch] is True
    assert cls.hparams["mode"] == "tema"
    with pytest.raises(SpecError):
        TripleEMA(mode="quadruple")
    with pytest.raises(SpecError):
        TripleEMA(bogus=1)
    assert TripleEMA(mode="ensemble").version() != TripleEMA().version()


def test_class_balanced_weights():
    w = class_balanced_weights(np.array([100, 10, 1, 0]), beta=0.9)
    assert w[0] < w[1] < w[2] == pytest.approx(w[3])  # rarer = heavier; 0 counts like 1
    assert (w * np.array([100, 10, 1, 0])).sum() / 111 == pytest.approx(1.0)  # mean over boxes = 1
    assert np.allclose(class_balanced_weights(np.zeros(3, np.int64), 0.9), 1.0)


# ------------------------------------------------------------------------------ the TEMA teacher


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.bn = torch.nn.BatchNorm1d(2)


def _toy_trainer(**hp) -> TripleEMA:
    tr = TripleEMA(**hp).loop(loop_context(Schedule(iterations=10, batch_size=2, warmup=1)))
    tr.set_class_counts(np.array([5, 1]))
    tr.keep = 0.6
    return tr


def _drift(tr: TripleEMA, student: torch.nn.Module, n: int = 5) -> list[dict]:
    """Move the student's weights linearly; return the student's states after each update."""
    seen = []
    for t in range(n):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.1)
            student.bn.running_var.add_(0.05 * (t + 1))
            student.bn.num_batches_tracked.add_(1)
        tr.update_teacher(student, t)
        seen.append(copy.deepcopy(student.state_dict()))
    return seen


def _manual_chain(init: dict, seen: list[dict], k: float) -> list[dict]:
    e = [{n: v.clone().double() for n, v in init.items()} for _ in range(3)]
    for s in seen:
        for n, v in s.items():
            e[0][n] = k * e[0][n] + (1 - k) * v.double()
            e[1][n] = k * e[1][n] + (1 - k) * e[0][n]
            e[2][n] = k * e[2][n] + (1 - k) * e[1][n]
    return e


@pytest.mark.parametrize("bn_stats", ["tema", "e1"])
def test_tema_teacher_is_3e1_minus_3e2_plus_e3(bn_stats):
    torch.manual_seed(0)
    student = _Net()
    tr = _toy_trainer(bn_stats=bn_stats)
    init = copy.deepcopy(student.state_dict())
    tr.teacher = tr.init_teacher(student)
    seen = _drift(tr, student)
    e1, e2, e3 = _manual_chain(init, seen, tr.keep)
    t = tr.teacher.state_dict()
    for n in ("lin.weight", "lin.bias", "bn.weight", "bn.bias"):
        assert torch.allclose(t[n].double(), 3 * e1[n] - 3 * e2[n] + e3[n], atol=1e-5), n
    for n in ("bn.running_mean", "bn.running_var"):
        want = 3 * e1[n] - 3 * e2[n] + e3[n] if bn_stats == "tema" else e1[n]
        assert torch.allclose(t[n].double(), want, atol=1e-5), n
    assert int(t["bn.num_batches_tracked"]) == int(student.bn.num_batches_tracked)
    # low lag: the TEMA teacher is closer to the drifting student than E1 (the plain EMA) is
    s = student.state_dict()["lin.weight"].double()
    assert (t["lin.weight"].double() - s).abs().max() < (e1["lin.weight"] - s).abs().max()
    assert len(tr.committee()) == 3


def test_triple_ema_off_is_the_plain_ema():
    torch.manual_seed(0)
    student = _Net()
    tr = _toy_trainer(triple_ema=False)
    init = copy.deepcopy(student.state_dict())
    tr.teacher = tr.init_teacher(student)
    e1 = _manual_chain(init, _drift(tr, student), tr.keep)[0]
    for n, v in tr.teacher.state_dict().items():
        assert torch.allclose(v.double(), e1[n], atol=1e-5) or not v.dtype.is_floating_point, n


# ------------------------------------------------------------------------------ one training step


def _step(pool, it: int = 9, counts=None, drift: bool = False, **hp):
    """One post-burn-in step of ``fit`` (same calls, same order) on the tiny synthetic DOTA with a
    detector whose class probabilities start near 0.6 (so thresholds matter). Returns the total
    loss, its parts, the pseudo-labels and the student."""
    torch.manual_seed(0)
    C = len(pool.classes)
    lab, unl = list(pool)[:8], list(pool)[8:16]
    method = TripleEMA(**hp)
    sched = Schedule(iterations=10, batch_size=2, warmup=1)
    if counts is None:
        counts = labelled_class_counts(lab, C)
    tr = method.loop(loop_context(sched, pool.classes))
    tr.set_class_counts(counts)
    tr.keep = method.config().keep_rate(sched.iterations)
    model = new_detector(C)
    with torch.no_grad():
        model.head.cls.bias.fill_(logit(0.6))
    model.train()
    tr.teacher = tr.init_teacher(model)
    if drift:  # the student moved after the teacher was made: E1 lags, TEMA follows
        tr.keep = 0.8  # a slow average, so E1 lags clearly behind
        mover = copy.deepcopy(model)
        for t, p in enumerate(np.linspace(0.45, 0.75, 6)):
            with torch.no_grad():
                mover.head.cls.bias.fill_(logit(float(p)))
            tr.update_teacher(mover, t)
    images = ImageStore(pool.image)
    ims, tg = tr.labelled_batch(images.many([s.id for s in lab]), [sample_targets(s) for s in lab])
    batch = make_batch(ims)
    losses = model.losses(batch, tg)
    labelled_out = model.last_outputs
    l_sup = sum(losses.values())
    weak = [tr.weak(im, torch.zeros((0, 4)))[0] for im in images.many([s.id for s in unl[:2]])]
    pls = tr.make_pseudo_labels(weak, it)
    strong, s_targets = tr.make_strong(weak, pls)
    step = Step(
        it, 10, batch, tg, weak, pls, strong, s_targets, make_batch(strong), labelled_out=labelled_out
    )
    u_loss, _ = tr.unsup_loss(model, step)
    step.student_out = model.last_outputs
    extra = tr.extra_losses(model, step)
    w_l, w_u = tr.loss_weights(it)
    total = w_l * l_sup + w_u * u_loss + sum(extra.values())
    return total, u_loss, extra, pls, model, tr


def _grads(loss: torch.Tensor, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _differs(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[n], b[n]) for n in a)


TAIL_COUNTS = np.array([0, 0, 0, 0, 40, 1, 0, 1, 0, 2, 0, 0, 0, 1, 1])


def test_stage1_adaptive_thresholds(pool):
    total_on, u_on, _, pls_on, m_on, tr = _step(pool, counts=TAIL_COUNTS, class_rebalancing=False)
    tau = tr.class_thresholds()
    assert tau[4] == pytest.approx(0.7, abs=0.02) and tau[5] < 0.65  # the rare class gets a lower bar
    assert (tau >= 0.5).all() and (tau <= 0.9).all()
    n_pos_on = sum(int((~p["ignore"]).sum()) for p in pls_on)
    total_off, _, _, pls_off, m_off, _ = _step(
        pool, counts=TAIL_COUNTS, class_rebalancing=False, adaptive_thresholds=False
    )
    assert n_pos_on > 0 and sum(int((~p["ignore"]).sum()) for p in pls_off) == 0
    g_u = _grads(u_on, m_on)  # the pseudo-labels stage 1 admits drive the classifier
    assert g_u["head.cls.weight"].abs().sum() > 0 and g_u["head.cls.bias"].abs().sum() > 0
    assert _differs(_grads(total_on, m_on), _grads(total_off, m_off)), "switching stage 1 off changes nothing"


def test_stage1_thresholds_follow_teacher_scores():
    tr = _toy_trainer()
    tr.observe(np.array([0.9, 0.8, 0.85, 0.4, 0.35, 0.2], np.float32), np.array([0, 0, 0, 1, 1, 1]))
    tau = tr.class_thresholds()
    assert tau[1] < tau[0] and tau[1] >= 0.5  # less confident class: lower, clipped at threshold_low
    assert len(tr.buffers[1]) == 2  # confidences under ignore_below are not counted


def test_stage2_class_rebalancing(pool):
    hp = {"adaptive_thresholds": False, "threshold": 0.55}  # pseudo-label positives too
    total_on, _, extra, _, m_on, tr = _step(pool, **hp)
    assert "rebalance" in extra and float(extra["rebalance"].detach()) != 0.0
    g = _grads(extra["rebalance"], m_on)
    assert g["head.cls.weight"].abs().sum() > 0 and g["head.cls.bias"].abs().sum() > 0
    assert "head.reg.weight" not in g or g["head.reg.weight"].abs().sum() == 0  # classification only
    total_off, _, extra_off, _, m_off, _ = _step(pool, class_rebalancing=False, **hp)
    assert extra_off == {}
    assert _differs(_grads(total_on, m_on), _grads(total_off, m_off)), "switching stage 2 off changes nothing"
    # stage 2 is the later part of training only
    _, _, extra_early, _, _, tr_early = _step(pool, it=6, **hp)
    assert extra_early == {} and not tr_early.rebalancing_active(6) and tr_early.rebalancing_active(9)


def test_triple_ema_teacher_component(pool):
    hp = {"adaptive_thresholds": False, "class_rebalancing": False}
    total_on, u_on, _, pls_on, m_on, tr = _step(pool, drift=True, **hp)
    total_off, _, _, pls_off, m_off, _ = _step(pool, drift=True, triple_ema=False, **hp)
    b_on = float(tr.teacher.head.cls.bias[0])
    assert b_on > float(tr.chain[0]["head.cls.bias"][0])  # TEMA is ahead of the lagging E1
    n_on = sum(int((~p["ignore"]).sum()) for p in pls_on)
    n_off = sum(int((~p["ignore"]).sum()) for p in pls_off)
    assert n_on > n_off
    g_u = _grads(u_on, m_on)
    assert g_u["head.cls.weight"].abs().sum() > 0
    assert _differs(_grads(total_on, m_on), _grads(total_off, m_off)), (
        "switching triple_ema off changes nothing"
    )


# ------------------------------------------------------------------------------ ensemble reading


def test_ensemble_three_teachers_fused_by_wbf(pool):
    _, _, _, pls, _, tr = _step(pool, mode="ensemble", adaptive_thresholds=False, class_rebalancing=False)
    assert len(tr.members) == 3 and tr.members[1] is tr.teacher
    assert tr.member_keeps[0] < tr.member_keeps[1] < tr.member_keeps[2]
    assert any(len(p["boxes"]) for p in pls)
    # two silent teachers: a box only one of three finds keeps a third of its confidence
    weak = [torch.from_numpy(np.ascontiguousarray(pool.image(pool.ids[0]).transpose(2, 0, 1)))]
    alone = tr.teacher_detections(weak)[0][1]
    for m in (tr.members[0], tr.members[2]):
        with torch.no_grad():
            m.head.cls.bias.fill_(-30.0)
    fused = tr.teacher_detections(weak)[0][1]
    assert len(fused) and fused.max() == pytest.approx(alone.max() / 3, rel=0.05)


def test_ensemble_fit_keeps_three_snapshots(pool, make_train_context):
    C = len(pool.classes)
    ctx = make_train_context(pool, lambda: new_detector(C))
    method = TripleEMA(mode="ensemble")
    model = method.train(ctx)
    assert not model.training and len(model.committee_states) == 3
    assert len(method.last_stats["class_thresholds"]) == C


# ------------------------------------------------------------------------------ acquisition


def _qctx(pool, model, labelled=None):
    lab = list(pool)[:8] if labelled is None else labelled
    return QueryContext(
        model,
        lab,
        [s for s in pool if s not in lab][:6],
        ImageStore(pool.image),
        pool.classes,
        torch.Generator().manual_seed(0),
        np.random.default_rng(0),
    )


def test_disagreement_uses_the_committee_snapshots(pool):
    model = new_detector(len(pool.classes)).eval()
    with torch.no_grad():
        model.head.cls.bias.fill_(logit(0.3))  # detections everywhere
    model.committee_states = [copy.deepcopy(model.state_dict()) for _ in range(3)]
    assert np.allclose(
        TEMADisagreement().scores(_qctx(pool, model)), 0.0, atol=1e-6
    )  # identical members agree
    moved = copy.deepcopy(model.state_dict())
    moved["head.reg.bias"] += 0.5
    model.committee_states = [model.committee_states[0], moved, moved]
    s = TEMADisagreement().scores(_qctx(pool, model))
    assert (s > 0.01).all()


class _Fixed(torch.nn.Module):
    """A fake detector returning fixed predictions (one per image) whatever the input."""

    def __init__(self, preds):
        super().__init__()
        self.preds = preds

    def predict(self, batch, dense=False):
        return [copy.deepcopy(p) for p in self.preds[: len(batch.sizes)]]


def test_tail_classes_are_boosted(pool):
    C = len(pool.classes)
    lab = list(pool)[:8]
    counts = labelled_class_counts(lab, C)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))

    def pred(label):
        probs = np.full((1, C), 0.1, np.float32)
        probs[0, label] = 0.8
        return Prediction(
            np.array([[10, 20, 40, 40]], np.float32), np.array([0.8], np.float32), np.array([label]), probs
        )

    empty = Prediction(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros((0, C))
    )
    model = _Fixed([pred(head), pred(tail), empty, empty, empty, empty])
    s = TEMADisagreement().scores(_qctx(pool, model, lab))
    assert s[1] > s[0] > 0 and s[2] == 0.0  # tail first; an image with no predictions scores 0
    s0 = TEMADisagreement(tail_boost=0.0).scores(_qctx(pool, model, lab))
    assert s0[1] == pytest.approx(s0[0])
    with pytest.raises(SpecError):
        TEMADisagreement(aggregate="median")
