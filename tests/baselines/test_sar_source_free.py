"""sar_source_free: registration and card, the fusion rule, and for every component a non-zero
gradient (or a changed pseudo-label set) on the intended parameters and a changed update when it is
switched off."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from contexts import loop_context

from baselines.base import METHODS, STRATEGIES, ImageStore, TrainContext
from baselines.components.domain_discriminator import DomainDiscriminator, train_discriminator
from baselines.sar_source_free import SARSourceFree, fuse_views, unflip_boxes
from baselines.teacher_student import Step, TeacherStudentMethod
from benchmark.detectors import build_detector
from benchmark.detectors.base import Prediction, make_batch
from benchmark.training import Schedule, sample_targets
from domains.base import SpecError
from domains.dota import DOTA

# pseudo-labels must exist on an untrained tiny detector: every detection counts (and the test
# detector keeps detections of any score)
LOOSE = {
    "threshold": 0.0,
    "ignore_below": None,
    "fusion_skip": 0.0,
    "confidence": "score",
    "burn_in_scratch": 0.5,
}


@pytest.fixture(scope="module")
def pool(dota_tiny_root):
    return DOTA().load(dota_tiny_root, "pool")


def new_detector_for(pool):
    def new_detector():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_detector("tiny_fcos_xs", len(pool.classes), score_thresh=0.0)

    return new_detector


def ctx_for(pool, iterations=4):
    return TrainContext(
        list(pool)[:6],
        list(pool)[6:14],
        ImageStore(pool.image),
        pool.classes,
        new_detector_for(pool),
        Schedule(iterations=iterations, batch_size=2, warmup=1),
        torch.Generator().manual_seed(0),
        np.random.default_rng(0),
    )


def student_after(pool, **hp):
    method = SARSourceFree(**{**LOOSE, **hp})
    model = method.train(ctx_for(pool))
    return model.committee_states[0], method.last_stats


def differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_registered_with_card_and_switches():
    cls = METHODS.get("sar_source_free")
    assert cls is SARSourceFree and cls.paradigm == "sfda" and issubclass(cls, TeacherStudentMethod)
    assert cls.designed_for == "foggy_cityscapes" and cls.default_strategy in STRATEGIES
    doc = sys.modules[cls.__module__].__doc__
    assert "10.3390/s26010045" in doc and "[I]" in doc
    for switch in cls.components.values():
        assert cls.hparams[switch] is True and f"{switch} = True" in doc
    with pytest.raises(SpecError):
        SARSourceFree(adv_target="sideways").config()
    assert SARSourceFree(fusion=False).version() != SARSourceFree().version()

    # from a source checkpoint the teacher starts at once; from scratch after a burn-in
    def from_source():
        return None

    from_source.source = object()  # what ``new_detector`` carries with a source checkpoint
    run = SARSourceFree(adversarial=False).loop(loop_context(new_detector=from_source))
    assert run.cfg.burn_in == 0.0 and run.stats["init"] == "source"
    run = SARSourceFree().loop(loop_context())
    assert run.cfg.burn_in == 0.25 and run.stats["discriminator"] == "labelled_pool"


def _pred(boxes, conf, labels):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    conf = np.asarray(conf, np.float32)
    probs = np.zeros((len(conf), 2), np.float32)
    probs[np.arange(len(conf)), labels] = conf
    return Prediction(boxes, conf, np.asarray(labels, np.int64), probs)


def test_fusion_agrees_filters_and_unflips():
    hp = {**SARSourceFree.hparams}
    weak = _pred([[10, 10, 30, 30], [50, 50, 70, 70]], [0.9, 0.9], [0, 1])
    strong = _pred([[11, 10, 31, 30], [5, 80, 20, 95]], [0.9, 0.5], [0, 0])
    (pl,) = fuse_views([weak], [strong], [(100, 100)], hp)
    kept = pl["boxes"][~pl["ignore"]]
    assert len(kept) == 1 and abs(float(kept[0, 0]) - 10.5) < 1e-3  # both views: averaged, kept
    ig = pl["boxes"][pl["ignore"]]
    assert len(ig) == 1 and float(ig[0, 0]) == pytest.approx(50.0)  # one view only: 0.45, ignored
    assert len(pl["boxes"]) == 2  # strong-only 0.5 -> 0.25 < ignore_below: dropped
    b = np.array([[10, 5, 30, 25]], np.float32)
    assert np.allclose(unflip_boxes(b, 100), [[70, 5, 90, 25]])
    assert np.allclose(unflip_boxes(unflip_boxes(b, 100), 100), b)


def test_fusion_changes_pseudo_labels_and_update(pool):
    method = SARSourceFree(**LOOSE)
    ctx = ctx_for(pool)
    trainer = method.loop(ctx)
    trainer.teacher = ctx.new_detector().eval()
    weak = ctx.images.many([s.id for s in ctx.unlabelled[:2]])
    fused = trainer.make_pseudo_labels(weak, 0)
    trainer.hp = {**trainer.hp, "fusion": False}
    plain = trainer.make_pseudo_labels(weak, 0)
    assert sum(len(p["boxes"]) for p in plain) > 0
    assert any(len(a["boxes"]) != len(b["boxes"]) for a, b in zip(fused, plain, strict=True))
    # the fused pseudo-labels carry a classification gradient into the student's head
    student = ctx.new_detector().train()
    batch = make_batch(weak)
    loss = student.losses(batch, [{**p, "cls_only": True} for p in fused])["cls"]
    loss.backward()
    assert float(student.head.cls.weight.grad.abs().sum()) > 0
    on, stats = student_after(pool)
    off, _ = student_after(pool, fusion=False)
    again, _ = student_after(pool)
    assert not differs(on, again), "not deterministic"
    assert differs(on, off)
    assert stats["pseudo_per_image"] > 0


def test_adversarial_gradient_on_backbone_and_fpn_only(pool):
    ctx = ctx_for(pool)
    model = ctx.new_detector().train()
    ims = ctx.images.many([s.id for s in ctx.labelled[:4]])
    disc, st = train_discriminator(model, ims, torch.Generator().manual_seed(1), batch_size=2, n_batches=3)
    assert isinstance(disc, DomainDiscriminator) and 0.0 <= st["disc_train_accuracy"] <= 1.0
    method = SARSourceFree()
    trainer = method.loop(ctx)
    trainer.disc = disc
    batch = make_batch(ims[:2])
    model.losses(batch, [sample_targets(s) for s in ctx.labelled[:2]])
    out = model.last_outputs
    ubatch = make_batch(ims[2:4])
    model.losses(ubatch, [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}] * 2)
    step = Step(0, 4, batch, [], [], [], [], [], ubatch, student_out=model.last_outputs, labelled_out=out)
    adv = trainer.extra_losses(model, step)["adv"]
    assert float(adv.detach()) > 0
    model.zero_grad()
    adv.backward()
    for name in ("backbone", "fpn"):
        g = sum(float(p.grad.abs().sum()) for p in getattr(model, name).parameters() if p.grad is not None)
        assert g > 0, f"no adversarial gradient on the {name}"
    assert all(p.grad is None for p in model.head.parameters()), "the detection head gets none"
    assert all(p.grad is None and not p.requires_grad for p in disc.parameters()), "the head is frozen"
    trainer.hp = {**trainer.hp, "adversarial": False}
    assert trainer.extra_losses(model, step) == {}


def test_adversarial_switch_changes_update(pool):
    on, stats = student_after(pool)
    off, stats_off = student_after(pool, adversarial=False)
    assert differs(on, off)
    assert stats["discriminator"] == "labelled_pool"  # no source checkpoint in this context
    assert "disc_train_accuracy" in stats and "disc_train_accuracy" not in stats_off


def test_time_weighting_schedule_and_update(pool):
    m = SARSourceFree()
    ctx = ctx_for(pool, iterations=100)
    tw = m.loop(ctx)
    start = tw.cfg.burn_in_iters(100)
    assert tw.loss_weights(0) == (1.0, 0.0)
    lam = [tw.loss_weights(it) for it in range(start, 100)]
    assert all(a[0] >= b[0] for a, b in zip(lam, lam[1:], strict=False))  # lambda_l decays
    assert all(a[1] <= b[1] for a, b in zip(lam, lam[1:], strict=False))  # lambda_u grows
    assert lam[-1][1] == pytest.approx(4.0) and lam[-1][0] < 0.6
    m_off = SARSourceFree(time_weighting=False)
    off = m_off.loop(ctx)
    assert any(tw.loss_weights(i) != off.loss_weights(i) for i in range(start, 100))
    a, _ = student_after(pool)
    b, _ = student_after(pool, time_weighting=False)
    assert differs(a, b)
