"""EUCL: entropy-uncertainty contrastive learning, rebuilt for dense detection on side-scan sonar.

Paper: S. Yuan, Z. Wang, F.-L. He, S.-W. Zhang, "Semi-Supervised Salient Object Detection for
Side-Scan Sonar Images via Entropy-Based Uncertainty and Contrastive Learning", IEEE Access, 2025
(IEEE document 11059963; open access). No code was found.

Confirmed from the paper's abstract (``docs/sources.md#eucl``): the task is
semi-supervised salient object detection (pixel-wise saliency) on side-scan sonar images with few
annotations; the method is called "entropy uncertainty contrastive learning" and aims to improve
pseudo-label quality; it has an **uncertainty map evaluation module** that uses an
**entropy-based partition (segmentation) loss** and a **contrastive learning mechanism** together
with the uncertainty map, and an **uncertainty weighting mechanism**. Nothing else (architecture,
teacher/student, loss weights, temperature, sampling) is confirmed.

Our reconstruction on the benchmark's FCOS detector (a mean teacher,
``baselines.teacher_student.TeacherStudentMethod``, as in standard semi-supervised SOD such as Liu,
Zhang & Barnes, arXiv 2112.14019):

* **Uncertainty map.** The EMA teacher runs on the weak view of each unlabelled image; its
  per-location class probabilities (sigmoids, all FPN levels, flattened in ``FCOS.losses``'s
  location order) give a foreground probability ``f = max_c p_c`` and the normalised entropy
  ``U = H(f) / log 2`` (``entropy = "foreground"``; ``"classes"``: the mean of the per-class binary
  entropies, each over ``log 2``). The certainty is ``1 - U``.
* **Geometry.** The student's strong view is made *without* the affine jitter
  (``benchmark.augment.strong_view(gen, geometric=False)``: colour jitter, grayscale, blur and
  cutout only), so the strong view has the weak view's geometry and the teacher's dense maps align
  location by location with the student's. The pseudo boxes are unchanged by the strong view.
* **Uncertainty weighting** (switch ``uncertainty_weighting``): the student's pseudo-label focal
  classification loss is weighted per location by the teacher's certainty,
  ``w = max(min_certainty, 1 - U)`` (``FCOS.losses`` takes (B, L) weights): background near
  half-seen objects and boundaries of uncertain detections weigh little, certain background and
  certain objects fully.
* **Foreground loss** (switch ``foreground_loss``; the "entropy-based partition loss"): a dense
  segmentation-like loss on the student's foreground map (max-class probability per location,
  every level) against the teacher's binarised foreground map (``f >= fg_threshold``): binary
  cross-entropy weighted per location by the certainty ``1 - U``, averaged separately over the
  teacher's foreground and background locations and the two means averaged (foreground
  locations are a few percent of all; without the balance the loss only teaches background).
  Padding locations are left out.
* **Contrastive loss** (switch ``contrastive``): InfoNCE with temperature ``temperature`` between
  the student's FPN features on the strong view (``last_outputs["fpn"]``) and the teacher's FPN
  features on the weak view (same geometry), both through a small projection head (two linear
  layers, ReLU, L2-normalised output; the teacher side without gradient). Anchors are up to
  ``contrast_anchors`` low-uncertainty foreground locations (teacher ``f >= threshold``); the
  positives of an anchor are the teacher embeddings of the anchors with the same teacher class
  (its own location included); the negatives are up to ``contrast_negatives`` teacher embeddings
  of certain-background (``f < bg_threshold``) and high-uncertainty (``U >= uncertain_above``,
  not foreground) locations. Locations are sampled with a generator seeded from ``self.gen`` (bounded CPU
  cost; the ablations draw the same batches and views).
* The foreground and contrastive weights follow the unsupervised loss's ramp-up
  (``exp(-5 (1 - t)^2)``, zero during burn-in).
* The rest is the shared mean-teacher loop (as our ``mean_teacher`` baseline): hard
  pseudo-labels at class confidence ``threshold`` on the classification branch only, ignore
  regions for detections in ``[ignore_below, threshold)``, the unsupervised loss normalised by at
  least the labelled batch's positives, strong views leave BatchNorm statistics alone, the teacher
  (EMA) is evaluated.

Defaults chosen on synthetic sonar by seed 0's mAP50 at budget 25 with the default schedule (seven
configurations compared; a small selection on the test split, disclosed here; seeds 1 and 2 were
run only after the choice): labelled images get the supervised baseline's random flips
(``labelled_view = "flip"``; the weak view's scale jitter cost about 0.05 mAP50 there); the
pseudo-label threshold is 0.5 (the certainty weights already discount half-sure locations) and
the foreground loss weighs 0.25 (at 1.0 it raised the teacher's pseudo-label recall but fought the
labelled classification loss and cost mAP50). After seeing all three seeds, the unlabelled weak
view's scale jitter was also switched off (``weak_scale = 1.0``: mAP50 +0.008 on average over seeds
0-2; the sonar test images all have one scale). Those four choices were then redone on the
validation part of the pool (``docs/experiments/thresholds.md``: the default matrix's pretrained
start and schedule, 25 images, seeds 0-2, all four domains, one change at a time, a rule written
before the sweep ran): ``threshold = 0.7`` -0.006, ``labelled_view = "weak"`` -0.040,
``weak_scale = 1.25`` -0.013, ``fg_weight = 1.0`` -0.007 on average over the domains, so every
default stays, now as the validation choice.

Measured: the current figures are in ``docs/methods/eucl.md`` (its ablation table) and the sonar
leaderboard: at 25 sonar images EUCL is +0.011 [-0.092, +0.114] mAP50 over ``supervised`` (3 seeds),
not a significant gain, and no component helps measurably. The teacher's pseudo-labels are precise
(precision 0.87-0.95 at class confidence 0.7 on the pool) but recall little (0.28-0.31). (Figures
measured before the sonar source checkpoints, quoted here earlier, no longer apply.)

Saliency metrics on sonar (MAE, max-F, S-measure, pixel accuracy) are computed by
``benchmark.metrics.saliency`` from ``Prediction.dense["foreground"]`` (the detector's dense
foreground map: the max over FPN levels of the max-class probability, resized to the image), so the
foreground loss acts on the per-location probabilities that are scored.

Oriented detectors (DOTA Task1): the pseudo-labels are the shared loop's, with the teacher's
polygons carried through the strong view (``mean_teacher``'s card); the dense uncertainty, foreground
and contrastive terms work on locations and are unchanged.

Hyper-parameters (defaults):
    uncertainty_weighting = True   per-location certainty weights on the pseudo-label cls loss
    foreground_loss = True         certainty-weighted, balanced BCE on the foreground map
    contrastive = True             InfoNCE between student and teacher location embeddings
    entropy = "foreground"         "foreground": H(max_c p_c); "classes": mean_c H(p_c)
    min_certainty = 0.0            lower bound of the per-location weight
    fg_weight = 0.25               weight of the foreground loss
    fg_threshold = 0.5             teacher foreground probability that binarises its map
    contrast_weight = 0.1          weight of the contrastive loss
    temperature = 0.2              InfoNCE temperature
    contrast_anchors = 64          anchors (low-uncertainty foreground) sampled per batch
    contrast_negatives = 256       negatives sampled per batch
    bg_threshold = 0.1             teacher foreground below this = certain background
    uncertain_above = 0.5          normalised entropy at or above this = high uncertainty
    proj_dim = 32                  projection head output size
    threshold = 0.5                pseudo-label class-confidence threshold
    unsup_weight = 4.0             unsupervised (pseudo-label) loss weight
    burn_in = 0.5                  fraction of the schedule trained on labelled data only
    rampup = 0.25                  ramp-up fraction of the post-burn-in iterations
    unlabelled_ratio = 1.0         unlabelled : labelled images per batch
    ema_time_constant = 0.33       teacher EMA time constant (fraction of post-burn-in iterations)
    ignore_below = 0.3             detections in [ignore_below, threshold) are ignore regions
    labelled_view = "flip"         labelled images get random flips, exactly as ``supervised``
    vertical_flip = True           weak views also flip vertically
    weak_scale = 1.0               the unlabelled weak view is resized by [1 / weak_scale, weak_scale]
    confidence = "cls"             what is thresholded (the shared default: class probability)
    cls_only = True                pseudo-labels supervise the classification branch only
    freeze_bn_on_unlabelled = True strong views leave BatchNorm running statistics alone

Ablation switches (``components``): uncertainty weighting -> ``uncertainty_weighting``,
foreground loss -> ``foreground_loss``, contrastive loss -> ``contrastive``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import register_method
from baselines.teacher_student import Step, TeacherStudentConfig, TeacherStudentMethod
from benchmark.augment import strong_view
from benchmark.detectors.base import make_batch
from domains.base import SpecError

LOG2 = math.log(2.0)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Binary entropy in nats of probabilities ``p`` (element-wise)."""
    p = p.clamp(1e-6, 1.0 - 1e-6)
    return -(p * p.log() + (1.0 - p) * (1.0 - p).log())


def uncertainty_map(probs: torch.Tensor, mode: str = "foreground") -> torch.Tensor:
    """Normalised entropy in [0, 1] per location of (..., C) per-class sigmoid probabilities:
    ``"foreground"`` the binary entropy of ``max_c p_c``, ``"classes"`` the mean over classes of the
    per-class binary entropies (each over ``log 2``)."""
    if mode == "foreground":
        return binary_entropy(probs.max(-1).values) / LOG2
    if mode == "classes":
        return binary_entropy(probs).mean(-1) / LOG2
    raise SpecError(f"eucl: entropy must be 'foreground' or 'classes', got {mode!r}")


def valid_locations(locations: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """(B, L) bool: the location lies inside its image (not in the batch's padding)."""
    x, y = locations[:, 0], locations[:, 1]
    return torch.stack([(x < w) & (y < h) for h, w in sizes])


def foreground_loss(
    student_logits: torch.Tensor,
    teacher_fg: torch.Tensor,
    weights: torch.Tensor,
    valid: torch.Tensor,
    fg_threshold: float = 0.5,
) -> torch.Tensor:
    """Certainty-weighted, foreground/background-balanced BCE between the student's foreground map
    ``max_c sigmoid(logits)`` (B, L) and the teacher's binarised foreground (B, L)."""
    s_fg = torch.sigmoid(student_logits).max(-1).values.clamp(1e-6, 1.0 - 1e-6)
    target = (teacher_fg >= fg_threshold).float()
    bce = F.binary_cross_entropy(s_fg, target, reduction="none")
    w = weights * valid.float()
    terms = []
    for mask in (target > 0.5, target < 0.5):
        wm = w * mask.float()
        if float(wm.sum()) > 1e-8:
            terms.append((bce * wm).sum() / wm.sum())
    if not terms:
        return student_logits.sum() * 0.0
    return torch.stack(terms).mean()


def _flat(maps: list[torch.Tensor]) -> torch.Tensor:
    """(B, K, H, W) per level -> (B, sum HW, K): ``FCOS.losses``'s location order."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)


def _sample(mask: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Up to ``k`` flat indices of the True entries of ``mask``, drawn without replacement."""
    idx = mask.reshape(-1).nonzero().squeeze(1)
    if len(idx) > k:
        idx = idx[torch.randperm(len(idx), generator=gen)[:k].to(idx.device)]
    return idx


def contrastive_loss(
    query: torch.Tensor,
    positives: torch.Tensor,
    labels: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """InfoNCE: student embeddings ``query`` (A, D) of the anchors against the teacher embeddings
    ``positives`` (A, D) of the anchors with the same label (its own location included) and
    ``negatives`` (N, D). Embeddings are L2-normalised. Zero when there are no anchors or negatives."""
    if len(query) == 0 or len(negatives) == 0:
        return query.sum() * 0.0
    s_pos = query @ positives.T / temperature  # (A, A)
    s_neg = query @ negatives.T / temperature  # (A, N)
    same = labels[:, None] == labels[None, :]
    log_den = torch.logsumexp(torch.cat([s_pos, s_neg], 1), 1)
    log_num = torch.logsumexp(s_pos.masked_fill(~same, float("-inf")), 1)
    return (log_den - log_num).mean()


class ProjectionHead(nn.Module):
    """Two linear layers with a ReLU between; L2-normalised output. Initialised from ``gen``."""

    def __init__(self, cin: int, dim: int, gen: torch.Generator) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn((cin, cin), generator=gen) * math.sqrt(2.0 / cin))
        self.b1 = nn.Parameter(torch.zeros(cin))
        self.w2 = nn.Parameter(torch.randn((cin, dim), generator=gen) * math.sqrt(1.0 / cin))
        self.b2 = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.relu(x @ self.w1 + self.b1) @ self.w2 + self.b2, dim=-1)


@register_method("eucl")
class EUCL(TeacherStudentMethod):
    """Entropy-uncertainty contrastive learning on a mean teacher (see the module docstring)."""

    default_strategy = "eucl_uncertainty"
    designed_for = "sonar"
    components = {
        "uncertainty weighting": "uncertainty_weighting",
        "foreground loss": "foreground_loss",
        "contrastive loss": "contrastive",
    }
    hparams = {
        **TeacherStudentMethod.hparams,
        "labelled_view": "flip",
        "weak_scale": 1.0,
        "uncertainty_weighting": True,
        "foreground_loss": True,
        "contrastive": True,
        "entropy": "foreground",
        "min_certainty": 0.0,
        "fg_weight": 0.25,
        "fg_threshold": 0.5,
        "contrast_weight": 0.1,
        "temperature": 0.2,
        "contrast_anchors": 64,
        "contrast_negatives": 256,
        "bg_threshold": 0.1,
        "uncertain_above": 0.5,
        "proj_dim": 32,
    }

    def check_hparams(self) -> None:
        if self.hp["entropy"] not in ("foreground", "classes"):
            raise SpecError(f"eucl: entropy must be 'foreground' or 'classes', got {self.hp['entropy']!r}")
        if not self.hp["temperature"] > 0 or not self.hp["weak_scale"] > 0:
            raise SpecError(
                f"eucl: temperature and weak_scale must be positive, got {self.hp['temperature']!r} "
                f"and {self.hp['weak_scale']!r}"
            )
        super().check_hparams()

    def config(self) -> TeacherStudentConfig:
        s = float(self.hp["weak_scale"])
        return replace(super().config(), scale_jitter=(1.0 / s, s))

    def start(self, ctx) -> None:
        super().start(ctx)
        # no affine jitter: the strong view keeps the weak view's geometry (teacher maps align)
        self.strong = strong_view(self.gen, geometric=False)
        self.proj: ProjectionHead | None = None
        self.cgen = torch.Generator().manual_seed(0)  # replaced in ``setup``
        self.tdense: dict[str, Any] = {}

    def setup(self, model, images, targets, unlabelled) -> None:
        # the contrastive branch draws from its own generator (seeded from ``self.gen`` whether or
        # not it is switched on), so an ablation sees the same batches and views as the full method
        seed = int(torch.randint(0, 2**62, (1,), generator=self.gen))
        self.cgen = torch.Generator().manual_seed(seed)
        if self.hp["contrastive"]:
            ch = int(model.cfg.fpn_channels)
            self.proj = ProjectionHead(ch, int(self.hp["proj_dim"]), self.cgen).to(self.device)

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.proj.parameters()) if self.proj is not None else []

    @torch.no_grad()
    def teacher_predictions(self, weak: list[torch.Tensor]) -> list:
        """The teacher's detections on the weak batch, and from the same forward pass (its head's
        input and class logits, caught by a forward hook) the dense maps of ``teacher_dense``."""
        batch = make_batch(weak).to(self.device)
        seen: list = []
        hook = self.teacher.head.register_forward_hook(lambda m, args, out: seen.append((args[0], out[0])))
        try:
            self.teacher.eval()
            preds = self.teacher.predict(batch)
        finally:
            hook.remove()
        self.tdense = self.teacher_dense(batch, *seen[0])
        return preds

    def teacher_dense(self, batch, fpn: list[torch.Tensor], cls: list[torch.Tensor]) -> dict[str, Any]:
        """The teacher's flattened class probabilities (B, L, C), uncertainty (B, L), FPN features
        and valid-location mask on the weak ``batch`` (the strong batch's geometry), from its FPN
        maps ``fpn`` and class logits ``cls``."""
        probs = torch.sigmoid(_flat(cls))
        shapes = [tuple(c.shape[-2:]) for c in cls]
        locs = torch.cat(self.teacher.locations(shapes, probs.device), 0)
        return {
            "probs": probs,
            "fg": probs.max(-1).values,
            "unc": uncertainty_map(probs, self.hp["entropy"]),
            "fpn": fpn,
            "valid": valid_locations(locs, batch.sizes),
        }

    def certainty(self) -> torch.Tensor:
        return (1.0 - self.tdense["unc"]).clamp(min=float(self.hp["min_certainty"]))

    def unsup_location_weights(self, step: Step) -> torch.Tensor | None:
        return self.certainty() if self.hp["uncertainty_weighting"] else None

    def ramp(self, it: int) -> float:
        """The unsupervised ramp-up factor in [0, 1] at iteration ``it``."""
        w = self.cfg.unsup_weight_at(it, self.schedule.iterations)
        return w / self.cfg.unsup_weight if self.cfg.unsup_weight > 0 else 1.0

    def extra_losses(self, student, step: Step) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        so = step.student_out
        if so is None or not self.tdense:
            return out
        hp, td, r = self.hp, self.tdense, self.ramp(step.it)
        if hp["foreground_loss"]:
            lf = foreground_loss(so["cls"], td["fg"], 1.0 - td["unc"], td["valid"], hp["fg_threshold"])
            out["fg"] = hp["fg_weight"] * r * lf
        if hp["contrastive"] and self.proj is not None:
            out["contrast"] = hp["contrast_weight"] * r * self.contrast(so["fpn"], td)
        return out

    def contrast(self, student_fpn: list[torch.Tensor], td: dict[str, Any]) -> torch.Tensor:
        hp = self.hp
        fg, unc, valid = td["fg"], td["unc"], td["valid"]
        anchor_mask = valid & (fg >= self.cfg.threshold)
        neg_mask = valid & ~anchor_mask & ((fg < hp["bg_threshold"]) | (unc >= hp["uncertain_above"]))
        neg_mask &= fg < hp["fg_threshold"]
        anchors = _sample(anchor_mask, int(hp["contrast_anchors"]), self.cgen)
        negatives = _sample(neg_mask, int(hp["contrast_negatives"]), self.cgen)
        if len(anchors) == 0 or len(negatives) == 0:
            return sum(p.sum() for p in self.proj.parameters()) * 0.0
        s_feat = _flat(student_fpn).flatten(0, 1)  # (B * L, ch)
        t_feat = _flat(td["fpn"]).flatten(0, 1)
        query = self.proj(s_feat[anchors])
        with torch.no_grad():
            pos, neg = self.proj(t_feat[anchors]), self.proj(t_feat[negatives])
        labels = td["probs"].flatten(0, 1)[anchors].argmax(-1)
        return contrastive_loss(query, pos, labels, neg, float(hp["temperature"]))
