"""DIL: its card and switches, the foreground bank (noise filter, FIFO, rare-class sampling), the
paste geometry, and for every component a non-zero gradient on the parameters it should train and
a different update when it is switched off (one fixed-seed teacher-student step)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from contexts import loop_context

from baselines.base import METHODS, STRATEGIES
from baselines.dil import (
    DIL,
    BankInstance,
    ForegroundBank,
    crop_instance,
    paste_instance,
    relation_consistency,
)
from baselines.teacher_student import Step, TeacherStudentMethod
from benchmark.detectors import build_detector
from benchmark.detectors.base import Prediction, make_batch
from benchmark.training import Schedule, sample_targets
from domains.base import SpecError
from domains.dota import DOTA

IT, ITERS = 9, 10  # a post-burn-in iteration with the unsupervised ramp complete


@pytest.fixture(scope="module")
def data(dota_tiny_root):
    pool = DOTA().load(dota_tiny_root, "pool")
    samples = list(pool)
    lab = [s for s in samples if len(s.boxes)][:4]
    unl = [s for s in samples if s not in lab][:6]
    images = [torch.from_numpy(np.ascontiguousarray(pool.image(s.id).transpose(2, 0, 1))) for s in lab]
    unlabelled = [torch.from_numpy(np.ascontiguousarray(pool.image(s.id).transpose(2, 0, 1))) for s in unl]
    return pool.classes, images, [sample_targets(s) for s in lab], unlabelled


def new_model(n_classes: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_detector("tiny_fcos_xs", n_classes).train()


def confident_teacher(label: int):
    """Patch a teacher to predict one confident box of ``label`` in the middle of every image
    (flip-symmetric, so it passes the stability check)."""

    def patch(teacher: torch.nn.Module) -> None:
        n_classes = teacher.num_classes

        def predict(batch, dense=False):
            out = []
            for h, w in batch.sizes:
                probs = np.zeros((1, n_classes), np.float32)
                probs[0, label] = 0.95
                box = np.array([[w / 2 - 8, h / 2 - 6, w / 2 + 8, h / 2 + 6]], np.float32)
                out.append(Prediction(box, np.array([0.9], np.float32), np.array([label]), probs))
            return out

        teacher.predict = predict

    return patch


def one_step(data, hp: dict, teacher_patch=None, no_labels: bool = False, seed: int = 0):
    """One teacher-student iteration exactly as ``TeacherStudentMethod.fit`` runs it; returns the model,
    the loop, the step, the losses and the total loss."""
    classes, images, targets, unlabelled = data
    if no_labels:
        targets = [
            {k: v[:0] if isinstance(v, torch.Tensor) else v for k, v in t.items()}  # polygons too
            for t in targets
        ]
    model = new_model(len(classes))
    loop = DIL(**hp).loop(loop_context(Schedule(iterations=ITERS, batch_size=2, warmup=1), classes, seed))
    loop.setup(model, images, targets, unlabelled)
    loop.teacher = loop.init_teacher(model)
    if teacher_patch is not None:
        teacher_patch(loop.teacher)
    ims, tg = loop.labelled_batch(images, targets)
    batch = make_batch(ims)
    sup = model.losses(batch, tg)
    weak = [loop.weak(unlabelled[i], torch.zeros((0, 4)))[0] for i in range(3)]
    pls = loop.make_pseudo_labels(weak, IT)
    strong, st = loop.make_strong(weak, pls)
    step = Step(IT, ITERS, batch, tg, weak, pls, strong, st, make_batch(strong))
    u, ulosses = loop.unsup_loss(model, step)
    step.student_out = model.last_outputs
    extra = loop.extra_losses(model, step)
    w_l, w_u = loop.loss_weights(IT)
    total = w_l * sum(sup.values()) + w_u * u + sum(extra.values())
    return model, loop, step, ulosses, extra, total


def grad_of(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)]


def updated(model: torch.nn.Module, total: torch.Tensor) -> torch.Tensor:
    """The parameters (flattened) after one SGD step on ``total``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    total.backward()
    opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------------------------------- card


def test_registered_card_and_switches():
    cls = METHODS.get("dil")
    assert cls is DIL and cls.paradigm == "ssl" and issubclass(cls, TeacherStudentMethod)
    assert cls.designed_for == "dota"
    assert cls.default_strategy in STRATEGIES
    doc = sys.modules[cls.__module__].__doc__
    assert "10.1109/TIP.2025.3530786" in doc
    for name, value in cls.hparams.items():
        shown = json.dumps(value) if isinstance(value, str) else str(value)
        assert re.search(rf"^\s+{name} = {re.escape(shown)}\s", doc, re.M), name
    for switch in cls.components.values():
        assert cls.hparams[switch] is True
    assert set(cls.components.values()) >= {"foreground_bank", "dia", "rcr"}
    with pytest.raises(SpecError):
        DIL(bogus=1)
    assert DIL(dia=False).version() != DIL().version()


# ---------------------------------------------------------------------------------- bank pieces


def test_crop_rejects_truncated_and_keeps_the_box():
    im = torch.arange(3 * 40 * 50, dtype=torch.int64).remainder(256).to(torch.uint8).view(3, 40, 50)
    assert crop_instance(im, [0, 5, 10, 15], 0, 1.0, "gt", 2) is None  # touches the border
    assert crop_instance(im, [5, 5, 6, 15], 0, 1.0, "gt", 2) is None  # degenerate
    inst = crop_instance(im, [10, 12, 20, 18], 3, 1.0, "gt", 2)
    assert inst.pixels.shape == (3, 10, 14) and inst.box == (2.0, 2.0, 12.0, 8.0) and inst.label == 3
    assert torch.equal(inst.pixels, im[:, 10:20, 8:22])


def test_paste_avoids_occupied_boxes_and_blends_the_border():
    gen = torch.Generator().manual_seed(0)
    bg = torch.zeros((3, 64, 64), dtype=torch.uint8)
    inst = BankInstance(torch.full((3, 12, 12), 200, dtype=torch.uint8), (2.0, 2.0, 10.0, 10.0), 1, 1.0, "gt")
    occupied = torch.tensor([[0.0, 0.0, 64.0, 30.0]])
    for _ in range(10):
        out, box = paste_instance(bg, inst, 1.0, occupied, gen, attempts=50, margin=2)
        assert box[1] - 2 >= 30 - 1e-4  # the crop (box + margin) lies below the occupied band
        assert torch.allclose(box[2:] - box[:2], torch.tensor([8.0, 8.0]))
        x0, y0, x1, y1 = (int(v) for v in box)
        assert (out[:, y0:y1, x0:x1] == 200).all()  # the object itself is opaque
        ring = out[:, y0 - 2, x0 - 2 : x1 + 2].float()
        assert 0 < ring.mean() < 200  # its context border is blended
        assert out[:, :30].sum() == 0  # nothing was painted over the occupied band
    assert paste_instance(bg, inst, 1.0, torch.tensor([[0.0, 0.0, 64.0, 64.0]]), gen) is None
    _, big = paste_instance(bg, inst, 2.0, torch.zeros((0, 4)), gen)
    assert torch.allclose(big[2:] - big[:2], torch.tensor([16.0, 16.0]))


def test_bank_noise_filter_and_fifo(data):
    classes, images, targets, unlabelled = data
    loop = DIL(bank_size=2).loop(loop_context(Schedule(), classes))
    im = torch.zeros((3, 64, 64), dtype=torch.uint8)
    C = len(classes)

    def pred(boxes, labels, conf):
        probs = np.zeros((len(labels), C), np.float32)
        probs[np.arange(len(labels)), labels] = conf
        return Prediction(
            np.asarray(boxes, np.float32), np.asarray(conf, np.float32), np.asarray(labels), probs
        )

    loop._weak_scales = [1.0]
    boxes = [[10, 10, 20, 20], [30, 30, 40, 44], [40, 5, 50, 15]]
    p = pred(boxes, [1, 2, 3], [0.9, 0.9, 0.55])  # the third is below bank_threshold 0.6
    # the flipped view sees the first box mirrored (stable), the second shifted (unstable), the third
    f = pred([[44, 10, 54, 20], [14, 30, 34, 44], [14, 5, 24, 15]], [1, 2, 3], [0.9, 0.9, 0.9])
    loop.grow_bank([im], [p], [f])
    assert loop.bank.counts().tolist()[1:4] == [1, 0, 0]
    for _ in range(3):
        loop.grow_bank([im], [p], [f])
    assert loop.bank.counts()[1] == 2 and loop.bank.added == 4  # FIFO of bank_size per class
    # a label mismatch in the flipped view is not a twin
    g = pred([[44, 10, 54, 20]], [2], [0.9])
    before = loop.bank.added
    loop.grow_bank([im], [pred([[10, 10, 20, 20]], [1], [0.9])], [g])
    assert loop.bank.added == before


def test_rare_classes_are_pasted_more():
    bank = ForegroundBank(3, 8)
    inst = torch.zeros((3, 6, 6), dtype=torch.uint8)
    for c, n in ((0, 50), (1, 2)):
        for _ in range(n):
            bank.add(BankInstance(inst, (1.0, 1.0, 5.0, 5.0), c, 1.0, "gt"))
    weights = (1.0 / (np.array([50, 2, 0]) + 1.0)) ** 0.5
    gen = torch.Generator().manual_seed(0)
    draws = [bank.sample(gen, weights).label for _ in range(400)]
    share = draws.count(1) / len(draws)
    assert 0.7 < share < 0.9  # sqrt(51/3) / (1 + sqrt(51/3)) = 0.80, vs 2/52 by frequency
    assert 2 not in draws  # an empty class is never drawn
    assert ForegroundBank(2, 4).sample(gen, np.ones(2)) is None


def test_relation_consistency_is_zero_only_for_equal_relations():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(6, 16, generator=g)
    s = (t + 0.5 * torch.randn(6, 16, generator=g)).requires_grad_()
    assert relation_consistency(t, t.clone(), 0.2).abs() < 1e-6
    loss = relation_consistency(t, s, 0.2)
    assert loss > 0
    (gs,) = torch.autograd.grad(loss, s)
    assert gs.abs().sum() > 0


# ------------------------------------------------------------------------------ the components


def test_foreground_bank_component(data):
    """Teacher instances enter the bank and are pasted: the paste losses train the detector's
    classification and box heads; without the teacher part of the bank (no labelled boxes here)
    nothing is pasted and the update changes."""
    hp = {"rcr": False}
    model, loop, step, ul, _, total = one_step(data, hp, confident_teacher(5), no_labels=True)
    assert loop.bank.added > 0 and all(inst.source == "teacher" for inst in loop.bank.teacher[5])
    assert sum(int(t["pasted"].sum()) for t in step.strong_targets) > 0
    head = [model.head.cls.weight, model.head.reg.weight]
    g_box = grad_of(ul["paste_box"], head)
    assert g_box[1].abs().sum() > 0
    on = updated(model, total)

    model, loop, step, ul, _, total = one_step(
        data, {**hp, "foreground_bank": False}, confident_teacher(5), no_labels=True
    )
    assert loop.bank.added == 0 and sum(int(t["pasted"].sum()) for t in step.strong_targets) == 0
    assert float(ul["paste_box"].detach()) == 0.0
    off = updated(model, total)
    assert not torch.allclose(on, off)


def test_dia_component(data):
    """Pasted instances are full positives: the unlabelled loss then trains the box head (the
    teacher's pseudo-labels are classification-only), and the cls head sees their classes."""
    hp = {"rcr": False}
    model, loop, step, ul, _, total = one_step(data, hp)
    n_pasted = sum(int(t["pasted"].sum()) for t in step.strong_targets)
    assert n_pasted > 0 and loop.bank.counts().sum() > 0
    for t in step.strong_targets:  # pastes never overlap each other (nor pseudo boxes)
        pb = t["boxes"][t["pasted"]]
        if len(pb) > 1:
            from torchvision.ops import box_iou

            iou = box_iou(pb, pb) - torch.eye(len(pb))
            assert (iou <= 0).all()
    head = [model.head.cls.weight, model.head.reg.weight, model.head.ctr.weight]
    u = ul["cls"] + ul["paste_box"] + ul["paste_ctr"]
    g = grad_of(u, head)
    assert all(x.abs().sum() > 0 for x in g)
    on = updated(model, total)

    model, loop, step, ul, _, total = one_step(data, {**hp, "dia": False})
    assert sum(int(t["pasted"].sum()) for t in step.strong_targets) == 0 and "paste_box" not in ul
    g = grad_of(ul["cls"], [model.head.reg.weight])
    assert g[0].abs().sum() == 0  # without pastes the unlabelled loss never trains the box head
    off = updated(model, total)
    assert not torch.allclose(on, off)


def test_rcr_component(data):
    """The relation consistency term trains the student's backbone and FPN; off, no term and a
    different update."""
    model, loop, step, ul, extra, total = one_step(data, {})
    assert "rcr" in extra and float(extra["rcr"].detach()) > 0
    params = [model.fpn.output[0].weight, model.fpn.lateral[0].weight, model.backbone.stages[-1][0][0].weight]
    g = grad_of(extra["rcr"], params)
    assert all(x.abs().sum() > 0 for x in g)
    assert grad_of(extra["rcr"], [model.head.cls.weight])[0].abs().sum() == 0  # features only
    on = updated(model, total)

    model, loop, step, ul, extra, total = one_step(data, {"rcr": False})
    assert extra == {}
    off = updated(model, total)
    assert not torch.allclose(on, off)


def test_rcr_feature_noise_component(data):
    """The feature-level perturbation changes the relation term and its gradient."""
    _, loop, step, _, _, _ = one_step(data, {})
    model = step.student_out  # the graph of the strong-view forward pass
    a = loop.rcr_loss(loop.teacher, step)
    loop.hp = {**loop.hp, "rcr_feature_noise": False}
    b = loop.rcr_loss(loop.teacher, step)
    assert model is not None and a is not None and b is not None
    p = step.student_out["fpn"][0]
    ga, gb = grad_of(a, [p]), grad_of(b, [p])
    assert ga[0].abs().sum() > 0 and gb[0].abs().sum() > 0
    assert not torch.allclose(a, b) and not torch.allclose(ga[0], gb[0])

    model, _, _, _, extra, total = one_step(data, {})
    assert "rcr" in extra
    on = updated(model, total)
    model, _, _, _, _, total = one_step(data, {"rcr_feature_noise": False})
    assert not torch.allclose(on, updated(model, total))


def test_train_is_deterministic_and_reports_the_bank(data, dota_tiny_root, make_train_context):
    pool = DOTA().load(dota_tiny_root, "pool")

    def ctx():
        return make_train_context(
            pool, lambda: new_model(len(pool.classes)), slice(6, 14), slice(14, 30), iterations=6
        )

    m = DIL()
    a = m.train(ctx())
    stats = dict(m.last_stats)
    b = DIL().train(ctx())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert stats["bank_gt"] > 0 and stats["pastes_per_image"] > 0 and not a.training
