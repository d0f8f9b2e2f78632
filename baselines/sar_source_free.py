"""SAR source-free: source-free domain-adaptive semi-supervised detection with pseudo-label fusion,
static adversarial regularisation and time-varying loss weights.

Paper: Hyejin Shin and Gye-Young Kim, "Source-Free Domain-Adaptive Semi-Supervised Learning for
Object Detection in CCTV Images", Sensors 26(1):45 (2026; online 2025-12-20), DOI
10.3390/s26010045. Designed for a clear -> foggy style shift: ``designed_for = "foggy_cityscapes"``
(source = clear train, pool = foggy train, test = foggy val).

Confirmed from the paper (abstract level, ``docs/sources.md#sar-source-free``): the setting is source-free
semi-supervised domain adaptation (a source-trained model, no source data, a few labelled and many
unlabelled target images) on the Mean-Teacher paradigm; three components: (1) pseudo-label
**fusion** of the teacher's predictions on weak and strong views;
(2) **static adversarial regularisation** (SAR): a *frozen* adversarial (discriminator) head instead
of a dynamically optimised discriminator gives a stable domain-invariance constraint; (3)
**time-varying exponential weighting** of the labelled and unlabelled losses. Not confirmed: the
detector, the fusion rule (Weighted Boxes Fusion here is ours), the exact SAR loss, the weighting
formulas.

Our reconstruction [I] (on ``baselines.teacher_student.TeacherStudentMethod``, the shared
mean-teacher loop):

* Start: teacher and student come from the source checkpoint (``ctx.new_detector()`` returns the
  source weights, ``benchmark.source``): with a checkpoint there is no burn-in (``burn_in = 0``:
  the teacher is made at the first iteration, from the source weights, and follows the student by
  EMA). Without one (a domain with no source split: scratch initialisation) the first
  ``burn_in_scratch`` of the schedule trains the student on the labelled images alone, then the
  teacher is the burn-in EMA. (We first ran ``burn_in = 0.25`` with a checkpoint too; the frozen
  head then meets a student already fine-tuned away from the source features and the teacher
  starts from a target-fitted model. See docs/methods/sar_source_free.md for both figures.)
* **Pseudo-label fusion** (``fusion``): the teacher predicts on the weak view of each unlabelled
  image and on a second, strong view of it (horizontal flip + colour jitter 0.4/0.4/0.4/0.1 + blur;
  photometric only, so its boxes map back into the weak view's geometry by un-flipping). Detections
  with confidence (the class probability, ``confidence = "cls"``) >= ``fusion_skip`` from both
  views are fused with Weighted Boxes Fusion (``benchmark.fusion.wbf``, IoU ``fusion_iou``,
  ``conf_type = "avg"``: a box seen in only one view keeps half its confidence, so fusion filters as
  well as averages). Fused boxes with confidence >= ``threshold`` are pseudo-labels, those in
  ``[ignore_below, threshold)`` ignore regions; the student learns them on the strong view (the
  usual Unbiased-Teacher strong augmentation, the boxes carried into its geometry). Off: the
  teacher's weak-view detections alone, thresholded the same way (the mean-teacher default).
* **Static adversarial regularisation** (``adversarial``): the domain discriminator head shipped with
  the source checkpoint (trained in the source phase on clean source features against source images
  under a synthetic appearance shift, then frozen; see
  ``baselines/components/domain_discriminator.py``) scores the student's
  pooled FPN features of the target images it trains on (the labelled batch and the unlabelled
  strong views); the loss ``adv_weight * BCE(D(f), 0)`` pushes them to the head's *source* side
  (``adv_target = "source"``; ``"confusion"`` uses the target 0.5, i.e. maximises the head's
  entropy). The head's parameters never change; only the detector's backbone and FPN get the
  gradient. On a domain without a source split (no checkpoint), the head is trained at the end of
  burn-in in the same way on the burn-in model with the *labelled pool images* as the "source" side
  (and their synthetic shift as the other); ``last_stats["discriminator"]`` says which
  (``"source_checkpoint"`` or ``"labelled_pool"``) and the record's ``init`` field says
  ``"source"`` or ``"scratch"``.
* **Time-varying exponential weighting** (``time_weighting``): with ``tau`` the progress through the
  post-burn-in iterations, ``lambda_l(tau) = sup_weight_min + (1 - sup_weight_min) exp(-sup_decay
  tau)`` (the labelled loss hands over to the pseudo-labels) and ``lambda_u(tau) = unsup_weight
  exp(-unsup_growth (1 - tau)^2)`` (the Mean-Teacher exponential ramp-up over the whole adaptation
  phase). Off: ``lambda_l = 1`` and the shared loop's short ramp-up of ``lambda_u`` (``rampup``).
* Oriented detectors (DOTA Task1): the strong view's polygons are un-flipped like its boxes; each
  fused box takes the polygon of the view detection of its class that overlaps it most
  (``benchmark.fusion.fused_polygons``: angles are chosen, not averaged), and the pseudo-labels carry
  these polygons (the student's assignment uses their rotated boxes).
* Default acquisition strategy: ``entropy``. The paper does no active learning; entropy of the
  teacher's class probabilities is the standard uncertainty criterion, cheap, and the same
  quantity the confidence threshold acts on, so it queries the images whose pseudo-labels are least
  trustworthy (the images fusion filters most).

Hyper-parameters (defaults):
    fusion = True              pseudo-label fusion of weak- and strong-view teacher predictions
    adversarial = True         static adversarial regularisation with the frozen discriminator
    time_weighting = True      exponential lambda_l(t) / lambda_u(t)
    threshold = 0.7            fused confidence for a pseudo-label
    ignore_below = 0.3         fused confidence in [ignore_below, threshold): ignore region
    confidence = "cls"         fused/thresholded confidence: class probability ("cls") or FCOS score
    fusion_iou = 0.55          WBF IoU threshold
    fusion_skip = 0.1          detections below this confidence are not fused
    fusion_weights = [1.0, 1.0]  WBF weights of the weak and the strong view
    adv_weight = 0.1           weight of the adversarial loss (constant: "static")
    adv_target = "source"      "source" (BCE to the source label) or "confusion" (BCE to 0.5)
    unsup_weight = 4.0         maximum unlabelled loss weight
    unsup_growth = 5.0         lambda_u ramp exponent
    sup_weight_min = 0.5       lambda_l's floor
    sup_decay = 3.0            lambda_l's decay rate
    burn_in = 0.0              with a source checkpoint: fraction trained on labelled images only
    burn_in_scratch = 0.25     the same without a source checkpoint (scratch initialisation)
    rampup = 0.25              the shared loop's ramp-up (used with time_weighting = False)
    unlabelled_ratio = 1.0     unlabelled : labelled images per batch
    ema_time_constant = 0.33   teacher EMA time constant (fraction of post-burn-in iterations)
    cls_only = True            pseudo-labels supervise classification only
    labelled_view = "weak"     labelled images get the weak view
    freeze_bn_on_unlabelled = True   strong views leave BatchNorm running statistics alone
    vertical_flip = True       weak views also flip vertically (as the supervised baseline does)

Ablation switches (``components``): "pseudo-label fusion" -> ``fusion``, "static adversarial
regularisation" -> ``adversarial``, "time-varying weighting" -> ``time_weighting``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from baselines.base import register_method
from baselines.components.domain_discriminator import pooled_features, train_discriminator
from baselines.teacher_student import PseudoLabels, Step, TeacherStudentMethod, detection_confidence
from benchmark.fusion import fused_polygons, wbf
from domains.base import SpecError


class TeacherStrongView:
    """The teacher's second view of a uint8 (3, H, W) image: a horizontal flip (undone on its boxes
    by ``unflip_boxes``) and photometric jitter (colour 0.4/0.4/0.4/0.1, blur with p 0.5), seeded
    from the generator like ``benchmark.augment``'s views."""

    def __init__(self, gen: torch.Generator) -> None:
        import albumentations as A

        self.compose = A.Compose(
            [
                A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1.0),
                A.GaussianBlur(sigma_limit=(0.1, 2.0), p=0.5),
            ],
            seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)),
        )

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        hwc = np.ascontiguousarray(image.flip(2).permute(1, 2, 0).numpy())
        return torch.from_numpy(np.ascontiguousarray(self.compose(image=hwc)["image"].transpose(2, 0, 1)))


def unflip_polygons(polygons: np.ndarray, width: int) -> np.ndarray:
    """(N, 8) polygons of a horizontally flipped image of ``width`` back into the original geometry."""
    out = np.asarray(polygons, np.float32).reshape(-1, 8).copy()
    out[:, 0::2] = width - out[:, 0::2]
    return out


def unflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """xyxy boxes of a horizontally flipped image of ``width`` back into the original geometry."""
    if not len(boxes):
        return boxes
    out = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return out.astype(np.float32)


def fuse_views(
    weak_preds,
    strong_preds,
    sizes: list[tuple[int, int]],
    hp: dict,
) -> list[dict[str, torch.Tensor]]:
    """WBF of the teacher's weak-view and (un-flipped) strong-view detections per image, then the
    threshold / ignore split. ``strong_preds`` must already be in the weak view's geometry."""
    out = []
    for pw, ps, size in zip(weak_preds, strong_preds, sizes, strict=True):
        bs, ss, ls, qs = [], [], [], []
        oriented = pw.polygons is not None and ps.polygons is not None
        for p, boxes in ((pw, pw.boxes), (ps, ps.boxes)):
            conf = detection_confidence(p, hp["confidence"])
            keep = conf >= hp["fusion_skip"]
            bs.append(boxes[keep])
            ss.append(conf[keep])
            ls.append(p.labels[keep])
            if oriented:
                qs.append(p.polygons[keep])
        fb, fs, fl = wbf(
            bs, ss, ls, size, weights=list(hp["fusion_weights"]), iou_thr=hp["fusion_iou"], conf_type="avg"
        )
        polys = fused_polygons(fb, fl, bs, ss, ls, qs) if oriented else None
        out.append(PseudoLabels.from_detections(fb, fs, fl, hp["threshold"], hp["ignore_below"], polys))
    return out


@register_method("sar_source_free")
class SARSourceFree(TeacherStudentMethod):
    """SAR source-free domain-adaptive semi-supervised detection (see the module docstring)."""

    paradigm = "sfda"
    default_strategy = "entropy"
    designed_for = "foggy_cityscapes"
    components = {
        "pseudo-label fusion": "fusion",
        "static adversarial regularisation": "adversarial",
        "time-varying weighting": "time_weighting",
    }
    hparams = {
        **TeacherStudentMethod.hparams,
        "threshold": 0.7,
        "burn_in": 0.0,
        "burn_in_scratch": 0.25,
        "fusion": True,
        "adversarial": True,
        "time_weighting": True,
        "fusion_iou": 0.55,
        "fusion_skip": 0.1,
        "fusion_weights": [1.0, 1.0],
        "adv_weight": 0.1,
        "adv_target": "source",
        "unsup_growth": 5.0,
        "sup_weight_min": 0.5,
        "sup_decay": 3.0,
    }

    def check_hparams(self) -> None:
        if self.hp["adv_target"] not in ("source", "confusion"):
            raise SpecError(f"adv_target must be 'source' or 'confusion', got {self.hp['adv_target']!r}")
        if len(self.hp["fusion_weights"]) != 2:
            raise SpecError(f"fusion_weights needs two weights (weak, strong): {self.hp['fusion_weights']}")
        super().check_hparams()

    def start(self, ctx) -> None:
        super().start(ctx)
        source = getattr(ctx.new_detector, "source", None)
        if source is None:  # scratch initialisation: a burn-in before the teacher
            self.cfg = replace(self.cfg, burn_in=self.hp["burn_in_scratch"])
        with_head = source is not None and self.hp["adversarial"]
        self.disc = source.head("discriminator").to(self.device) if with_head else None
        self.teacher_view = TeacherStrongView(self.gen)
        self.stats["init"] = "source" if source is not None else "scratch"
        where = "source_checkpoint" if source is not None else "labelled_pool"
        self.stats["discriminator"] = where if self.hp["adversarial"] else "none"
        self._adv_p: list[float] = []

    def setup(self, model, images, targets, unlabelled) -> None:
        self._disc_images = images  # without a checkpoint: the head's "source" side

    # -- the teacher, and the discriminator when no checkpoint shipped one
    def init_teacher(self, student: torch.nn.Module) -> torch.nn.Module:
        teacher = super().init_teacher(student)
        if self.hp["adversarial"] and self.disc is None:
            disc, st = train_discriminator(
                teacher, self._disc_images, self.gen, self.device, min(8, self.schedule.batch_size)
            )
            self.disc = disc.to(self.device)
            self.stats.update(st)
        return teacher

    # -- pseudo-label fusion
    def make_pseudo_labels(self, weak: list[torch.Tensor], it: int) -> list[dict]:
        if not self.hp["fusion"]:
            return super().make_pseudo_labels(weak, it)
        strong = [self.teacher_view(im) for im in weak]
        p_weak = self.teacher_predictions(weak)
        p_strong = self.teacher_predictions(strong)
        for p, im in zip(p_strong, strong, strict=True):  # un-flip into the weak view's geometry
            p.boxes = unflip_boxes(p.boxes, int(im.shape[2]))
            if p.polygons is not None:
                p.polygons = unflip_polygons(p.polygons, int(im.shape[2]))
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in weak]
        return fuse_views(p_weak, p_strong, sizes, self.hp)

    # -- static adversarial regularisation
    def adversarial_loss(self, student: torch.nn.Module, step: Step) -> torch.Tensor | None:
        if self.disc is None:
            return None
        strides = student.cfg.strides
        parts = []
        for out, batch in ((step.labelled_out, step.batch), (step.student_out, step.ubatch)):
            if out is None:
                continue
            parts.append(pooled_features(out["fpn"], batch.sizes, strides))
        if not parts:
            return None
        logits = self.disc(torch.cat(parts))
        target = 0.0 if self.hp["adv_target"] == "source" else 0.5
        self._adv_p.append(float(torch.sigmoid(logits.detach()).mean()))
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def extra_losses(self, student: torch.nn.Module, step: Step) -> dict[str, torch.Tensor]:
        if not self.hp["adversarial"]:
            return {}
        loss = self.adversarial_loss(student, step)
        return {} if loss is None else {"adv": self.hp["adv_weight"] * loss}

    # -- time-varying exponential weighting
    def loss_weights(self, it: int) -> tuple[float, float]:
        if not self.hp["time_weighting"]:
            return super().loss_weights(it)
        T = self.schedule.iterations
        start = self.cfg.burn_in_iters(T)
        if it < start:
            return 1.0, 0.0
        tau = min(1.0, (it - start + 1) / max(1, T - start))
        lam_l = self.hp["sup_weight_min"] + (1.0 - self.hp["sup_weight_min"]) * math.exp(
            -self.hp["sup_decay"] * tau
        )
        lam_u = self.hp["unsup_weight"] * math.exp(-self.hp["unsup_growth"] * (1.0 - tau) ** 2)
        return lam_l, lam_u

    def final_model(self, student: torch.nn.Module) -> torch.nn.Module:
        if self._adv_p:
            k = max(1, len(self._adv_p) // 10)
            self.stats["disc_p_target_first"] = float(np.mean(self._adv_p[:k]))
            self.stats["disc_p_target_last"] = float(np.mean(self._adv_p[-k:]))
        return super().final_model(student)
