"""DIL: Dense Information Learning based semi-supervised object detection.

Paper: X. Yang, P. Li, Q. Zhou, N. Wang, X. Gao, "Dense Information Learning Based Semi-Supervised
Object Detection", IEEE Transactions on Image Processing, 2025, DOI 10.1109/TIP.2025.3530786.
No code was released; only the abstract could be read (``docs/sources.md#dil``).

Confirmed from the abstract [C]: adaptive-threshold SSOD methods are "passive, relying solely on the
original image data" and ignore the relations between categories. **Dense Information Augmentation
(DIA)** "leverages the prior information of the network to create a foreground bank and actively
incorporates exploitable information into the unlabeled data"; it "automatically performs
information enhancement and filters noise". **Relation Consistency Regularization (RCR)** keeps the
network consistent "at the manifold level" under feature-level and image-level perturbations. Gains
of 12.6 / 10.0 mAP over the supervised baseline with 5 % / 10 % of COCO labelled.

Our reconstruction [I] (designed for ``dota``: 128 px patches of long-tailed aerial scenes), on the
shared mean-teacher loop (``baselines.teacher_student.TeacherStudentMethod``, with the settings of
our ``mean_teacher`` baseline - burn-in half the schedule, focal-classification-only pseudo-labels,
EMA teacher evaluated - except the class-probability threshold: 0.7, Unbiased Teacher's value, where
``mean_teacher`` uses 0.5; ignore regions in [0.3, 0.7)):

* **Foreground bank** (switch ``foreground_bank``): per class, instance crops (the box plus a
  ``paste_margin``-pixel border of context, its class and its scale). The labelled ground truth
  (boxes not touching the patch border) is always in the bank and never evicted. With
  ``foreground_bank`` on, the bank also takes the teacher's detections on the unlabelled images (the
  network's prior), filtered for noise: class probability >= ``bank_threshold`` **and** stable
  under a horizontal flip (the teacher's box on the flipped weak view - a detection of the same
  class with class probability >= ``ignore_below`` - flipped back, overlaps the original one with
  IoU >= ``bank_stability_iou``); these live in a FIFO queue of ``bank_size`` instances per
  class. Off: the bank holds the labelled ground truth only. ``bank_threshold`` is 0.6, below the
  pseudo-label threshold: the focal-loss teacher of a 25-image budget almost never reaches 0.8
  (synthetic DOTA v3, hidden pool labels, diagnostics only: recall <= 0.2 % at 0.8, so the teacher
  part of the bank stayed empty), while its detections at >= 0.6 are 80-88 % precise before the
  stability check.
  Teacher crops are cut from the weak view, whose scale jitter is recorded, so every crop is
  stored with its size in native pixels.
* **DIA** (switch ``dia``): each unlabelled weak view receives ``paste_k`` bank instances before the
  strong augmentation is applied (so the pasted objects get the same colour jitter, blur, cutout
  and affine jitter as the rest of the image). The class of each paste is drawn with probability
  proportional to ``(1 / (n_c + 1)) ** rare_power`` (``n_c``: labelled boxes of class c) among the
  classes the bank holds, so rare classes are pasted more; the instance within the class uniformly.
  A paste keeps its native size times the destination view's scale, jittered by up to
  ``+-paste_scale_jitter``; it goes to a random place where its crop overlaps no teacher box
  (pseudo-label or ignore region) and no earlier paste (``paste_attempts`` tries, else skipped);
  it is blended with an alpha ramp over its context border (soft edge, the object itself opaque).
  The pasted boxes are added to the pseudo-labels as positives; with ``paste_full_positive`` they
  also get the box-regression (GIoU) and centre-ness losses (their box is exact by construction),
  while the teacher's pseudo-labels stay classification-only.
* **RCR** (switch ``rcr``): the instances of an unlabelled batch (the teacher's pseudo-labels and
  the pasted boxes) are embedded by RoIAlign (1x1, every FPN level concatenated) on the teacher's
  FPN features of the weak view (with the pastes) and on the student's FPN features of the strong
  view; each side's relation matrix is the row-softmax of cosine similarities / ``rcr_temperature``
  over the other instances of the batch; loss = KL(teacher rows || student rows), weighted by
  ``rcr_weight`` times the unsupervised ramp. Image-level perturbation: the strong view;
  feature-level perturbation (switch ``rcr_feature_noise``): dropout (``rcr_dropout``) and Gaussian
  noise (``rcr_noise`` x the embeddings' standard deviation) on the student's embeddings.

Oriented detectors (DOTA Task1): every bank instance keeps its polygon in crop coordinates (the
ground truth's polygon, or the oriented teacher's) and a paste carries it scaled and shifted exactly
as its crop (``paste_polygon``; pastes are not rotated, so a pasted object keeps its source's
angle); pseudo-labels carry the teacher's polygons; with ``paste_full_positive`` the pasted
instances get the oriented box loss (ProbIoU + angle term, ``FCOS.oriented_regression``) and
centre-ness in their box frame. RCR embeds the instances by their horizontal boxes either way.

Default acquisition strategy: ``class_balanced``. DIL's bank and its rare-class paste sampling feed
on labelled instances of rare classes (the ground-truth part of the bank is never evicted), so a
strategy that queries the images where the model sees rare classes adds exactly what DIA multiplies.

Hyper-parameters (defaults):
    threshold = 0.7           pseudo-label class-probability threshold (UT; ``mean_teacher``: 0.5)
    confidence = "cls"        what is thresholded: class probability ("cls") or FCOS score ("score")
    unsup_weight = 4.0        unsupervised loss weight
    burn_in = 0.5             fraction of the schedule trained on labelled data only
    rampup = 0.25             fraction of the post-burn-in iterations of the sigmoid ramp-up
    unlabelled_ratio = 1.0    unlabelled : labelled images per batch
    ema_time_constant = 0.33  teacher EMA time constant (fraction of post-burn-in iterations)
    cls_only = True           teacher pseudo-labels supervise classification only
    ignore_below = 0.3        teacher detections in [ignore_below, threshold) are ignore regions
    labelled_view = "weak"    labelled images get the weak view
    freeze_bn_on_unlabelled = True   strong views leave BatchNorm running statistics alone
    vertical_flip = True      weak views also flip vertically
    foreground_bank = True    the bank also takes filtered teacher detections (off: labelled GT only)
    bank_threshold = 0.6      class probability a teacher detection needs to enter the bank
    bank_stability_iou = 0.7  IoU with its flipped-view twin a teacher detection needs (0: no check)
    bank_size = 64            FIFO length of the teacher part of the bank, per class
    dia = True                paste bank instances into the unlabelled images
    paste_k = 3               pastes per unlabelled image
    rare_power = 0.5          class sampling weight (1 / (n_c + 1)) ** rare_power
    paste_scale_jitter = 0.1  relative size jitter of a paste
    paste_margin = 2          context border (pixels) cut around each instance, blended softly
    paste_attempts = 20       random placements tried per paste
    paste_full_positive = True  pasted boxes also get the box and centre-ness losses
    rcr = True                relation consistency regularisation
    rcr_weight = 1.0          its weight (times the unsupervised ramp)
    rcr_temperature = 0.2     softmax temperature of the relation rows
    rcr_feature_noise = True  feature-level perturbation of the student's embeddings
    rcr_dropout = 0.1         its dropout rate
    rcr_noise = 0.1           its Gaussian noise (times the embeddings' standard deviation)
    rcr_min_instances = 3     fewer instances in a batch: no RCR term
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss, roi_align

from baselines.base import register_method
from baselines.teacher_student import PseudoLabels, Step, TeacherStudentMethod, detection_confidence
from benchmark.detectors.base import make_batch

# --------------------------------------------------------------------------- the foreground bank


@dataclass
class BankInstance:
    """One instance of the foreground bank."""

    pixels: torch.Tensor  # uint8 (3, h, w): the box plus its context border
    box: tuple[float, float, float, float]  # the object's box inside ``pixels`` (xyxy)
    label: int
    scale: float  # pixels of the crop per native pixel (the weak view's resize factor)
    source: str  # "gt" or "teacher"
    polygon: tuple[float, ...] | None = None  # the object's (8,) polygon inside ``pixels``, if oriented


def crop_instance(
    image: torch.Tensor, box, label: int, scale: float, source: str, margin: int, polygon=None
) -> BankInstance | None:
    """Cut ``box`` plus a ``margin``-pixel border out of a uint8 (3, H, W) image; None when the box
    is degenerate (under 2 pixels a side) or touches the image border (a truncated object). An
    object's ``polygon`` (8,) (oriented data) is kept in the crop's coordinates."""
    h, w = int(image.shape[1]), int(image.shape[2])
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 - x0 < 2 or y1 - y0 < 2 or x0 < 1 or y0 < 1 or x1 > w - 1 or y1 > h - 1:
        return None
    cx0, cy0 = max(0, math.floor(x0) - margin), max(0, math.floor(y0) - margin)
    cx1, cy1 = min(w, math.ceil(x1) + margin), min(h, math.ceil(y1) + margin)
    pixels = image[:, cy0:cy1, cx0:cx1].clone()
    poly = None
    if polygon is not None:
        q = [float(v) for v in polygon]
        poly = tuple(v - (cx0 if k % 2 == 0 else cy0) for k, v in enumerate(q))
    return BankInstance(
        pixels, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), int(label), float(scale), source, poly
    )


def paste_polygon(inst: BankInstance, pasted_box: torch.Tensor) -> torch.Tensor:
    """The (8,) polygon of ``inst`` pasted as ``pasted_box`` (what ``paste_instance`` returned): the
    crop's scale and shift applied to the instance's polygon (its box's corners when it has none)."""
    x0, y0, x1, y1 = inst.box
    poly = inst.polygon if inst.polygon is not None else (x0, y0, x1, y0, x1, y1, x0, y1)
    pb = [float(v) for v in pasted_box]
    fx, fy = (pb[2] - pb[0]) / max(x1 - x0, 1e-6), (pb[3] - pb[1]) / max(y1 - y0, 1e-6)
    ox, oy = pb[0] - x0 * fx, pb[1] - y0 * fy
    return torch.tensor([v * fx + ox if k % 2 == 0 else v * fy + oy for k, v in enumerate(poly)])


class ForegroundBank:
    """Per-class instance store: pinned labelled instances plus a FIFO of teacher instances."""

    def __init__(self, num_classes: int, size: int) -> None:
        self.num_classes = num_classes
        self.gt: list[list[BankInstance]] = [[] for _ in range(num_classes)]
        self.teacher: list[deque[BankInstance]] = [deque(maxlen=max(1, size)) for _ in range(num_classes)]
        self.added = 0

    def add(self, inst: BankInstance) -> None:
        if inst.source == "gt":
            self.gt[inst.label].append(inst)
        else:
            self.teacher[inst.label].append(inst)
            self.added += 1

    def counts(self) -> np.ndarray:
        return np.array([len(self.gt[c]) + len(self.teacher[c]) for c in range(self.num_classes)])

    def sample(self, gen: torch.Generator, class_weights: np.ndarray) -> BankInstance | None:
        """A class by ``class_weights`` among the non-empty ones, then an instance uniformly."""
        w = np.where(self.counts() > 0, class_weights, 0.0)
        if w.sum() <= 0:
            return None
        c = int(torch.multinomial(torch.as_tensor(w, dtype=torch.float64), 1, generator=gen))
        pool = self.gt[c] + list(self.teacher[c])
        return pool[int(torch.randint(len(pool), (1,), generator=gen))]


def paste_instance(
    image: torch.Tensor,
    inst: BankInstance,
    scale: float,
    occupied: torch.Tensor,
    gen: torch.Generator,
    attempts: int = 20,
    margin: int = 2,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Paste ``inst`` resized by ``scale`` into a free place of ``image`` (uint8 (3, H, W)): its crop
    must overlap none of the ``occupied`` boxes (N, 4). Returns (new image, pasted box (4,)) or None.
    The crop's border is alpha-ramped into the background; the object itself stays opaque."""
    H, W = int(image.shape[1]), int(image.shape[2])
    ch, cw = int(inst.pixels.shape[1]), int(inst.pixels.shape[2])
    nh, nw = max(2, round(ch * scale)), max(2, round(cw * scale))
    if nh >= H or nw >= W:
        return None
    fx, fy = nw / cw, nh / ch
    bx = torch.tensor(inst.box, dtype=torch.float32) * torch.tensor([fx, fy, fx, fy])
    for _ in range(max(1, attempts)):
        x = int(torch.randint(0, W - nw + 1, (1,), generator=gen))
        y = int(torch.randint(0, H - nh + 1, (1,), generator=gen))
        if len(occupied):
            o = occupied
            iw = (o[:, 2].clamp(max=x + nw) - o[:, 0].clamp(min=x)).clamp(min=0)
            ih = (o[:, 3].clamp(max=y + nh) - o[:, 1].clamp(min=y)).clamp(min=0)
            if bool((iw * ih > 0).any()):
                continue
        crop = inst.pixels.float()[None]
        if (nh, nw) != (ch, cw):
            crop = F.interpolate(crop, size=(nh, nw), mode="bilinear", align_corners=False)
        crop = crop[0]
        ramp = max(1.0, margin * min(fx, fy))
        ay = torch.minimum(torch.arange(nh) + 0.5, nh - torch.arange(nh) - 0.5) / ramp
        ax = torch.minimum(torch.arange(nw) + 0.5, nw - torch.arange(nw) - 0.5) / ramp
        alpha = torch.minimum(ay[:, None], ax[None, :]).clamp(0, 1)[None]
        out = image.clone()
        region = out[:, y : y + nh, x : x + nw].float()
        out[:, y : y + nh, x : x + nw] = (
            (alpha * crop + (1 - alpha) * region).round().clamp(0, 255).to(torch.uint8)
        )
        return out, bx + torch.tensor([x, y, x, y], dtype=torch.float32)
    return None


class _ScaleRecorder:
    """Wraps the weak view and records each call's resize factor (output / input height)."""

    def __init__(self, view) -> None:
        self.view = view
        self.scales: deque[float] = deque(maxlen=256)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor):
        out = self.view(image, boxes)
        self.scales.append(self._ratio(image, out[0]))
        return out

    def with_polygons(self, image: torch.Tensor, boxes: torch.Tensor, polygons):
        out = self.view.with_polygons(image, boxes, polygons)
        self.scales.append(self._ratio(image, out[0]))
        return out

    @staticmethod
    def _ratio(image: torch.Tensor, view: torch.Tensor) -> float:
        (h, w), (vh, vw) = image.shape[1:], view.shape[1:]
        turned = (h - w) * (vh - vw) < 0  # a quarter turn swapped the sides (oriented weak views)
        return (vw if turned else vh) / max(1, h)


# --------------------------------------------------------------------------- relation consistency


def instance_embeddings(fpn: list[torch.Tensor], boxes: list[torch.Tensor], strides) -> torch.Tensor:
    """RoIAlign (1x1) of each box on every FPN level, concatenated: (N, levels * channels)."""
    outs = []
    for f, s in zip(fpn, strides, strict=True):
        rois = [b.to(f.dtype).to(f.device) for b in boxes]
        outs.append(roi_align(f, rois, output_size=1, spatial_scale=1.0 / s, sampling_ratio=2, aligned=True))
    return torch.cat(outs, 1).flatten(1)


def relation_log_probs(emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row-wise log-softmax of cosine similarities / T over the *other* instances: (N, N - 1)."""
    z = F.normalize(emb, dim=1)
    sim = z @ z.T / temperature
    n = len(z)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return F.log_softmax(sim[off].view(n, n - 1), dim=1)


def relation_consistency(t_emb: torch.Tensor, s_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher relation rows || student relation rows), mean over rows."""
    lt = relation_log_probs(t_emb.detach(), temperature)
    ls = relation_log_probs(s_emb, temperature)
    return F.kl_div(ls, lt, log_target=True, reduction="batchmean")


# --------------------------------------------------------------------------- the training loop


def pasted_box_losses(
    out: dict, pasted: list[torch.Tensor], model: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU (centre-ness weighted) and centre-ness losses at the student's positive locations that
    are assigned to a pasted box, from ``last_outputs`` of its strong-view forward pass. An oriented
    ``model`` (its ``last_outputs`` carry ``gt_rbox``) uses its own oriented box loss instead."""
    labels, gt, reg, ctr = out["labels"], out["gt"], out["reg"], out["ctr"]
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for b, pb in enumerate(pasted):
        if len(pb):
            pb = pb.to(gt.device)
            hit = ((gt[b][:, None, :] - pb[None]).abs().amax(2) < 1e-3).any(1)
            mask[b] = hit & (labels[b] >= 0)
    if not mask.any():
        zero = reg.sum() * 0.0 + ctr.sum() * 0.0
        return zero, zero
    if "gt_rbox" in out and model is not None:
        box_l, ctr_t, ctr_logit = model.oriented_regression(out, mask)
        box = (box_l * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        return box, F.binary_cross_entropy_with_logits(ctr_logit, ctr_t, reduction="mean")
    locs = out["locations"].to(reg.device)[None].expand(labels.shape[0], -1, 2)[mask]
    p_reg, p_gt = reg[mask], gt[mask]
    pred = torch.cat([locs - p_reg[:, :2], locs + p_reg[:, 2:]], 1)
    ltrb = torch.cat([locs - p_gt[:, :2], p_gt[:, 2:] - locs], 1).clamp(min=1e-6)
    ctr_t = torch.sqrt(
        (torch.minimum(ltrb[:, 0], ltrb[:, 2]) / torch.maximum(ltrb[:, 0], ltrb[:, 2]))
        * (torch.minimum(ltrb[:, 1], ltrb[:, 3]) / torch.maximum(ltrb[:, 1], ltrb[:, 3]))
    )
    giou = generalized_box_iou_loss(pred, p_gt, reduction="none")
    box = (giou * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
    ctr_l = F.binary_cross_entropy_with_logits(ctr[mask], ctr_t, reduction="mean")
    return box, ctr_l


@register_method("dil")
class DIL(TeacherStudentMethod):
    """Dense Information Learning: foreground bank, DIA and RCR on the mean teacher (see the module
    docstring)."""

    default_strategy = "class_balanced"
    designed_for = "dota"
    components = {
        "foreground bank (teacher instances)": "foreground_bank",
        "dense information augmentation": "dia",
        "relation consistency regularisation": "rcr",
        "RCR feature-level perturbation": "rcr_feature_noise",
    }
    hparams = {
        **TeacherStudentMethod.hparams,
        "threshold": 0.7,
        "foreground_bank": True,
        "bank_threshold": 0.6,
        "bank_stability_iou": 0.7,
        "bank_size": 64,
        "dia": True,
        "paste_k": 3,
        "rare_power": 0.5,
        "paste_scale_jitter": 0.1,
        "paste_margin": 2,
        "paste_attempts": 20,
        "paste_full_positive": True,
        "rcr": True,
        "rcr_weight": 1.0,
        "rcr_temperature": 0.2,
        "rcr_feature_noise": True,
        "rcr_dropout": 0.1,
        "rcr_noise": 0.1,
        "rcr_min_instances": 3,
    }

    def start(self, ctx) -> None:
        super().start(ctx)
        self.num_classes = len(ctx.classes)
        self.bank = ForegroundBank(self.num_classes, int(self.hp["bank_size"]))
        self.class_weights = np.ones(self.num_classes)
        self._composites: list[torch.Tensor] = []
        self._weak_scales: list[float] = []
        self._n_pasted = 0
        self._n_paste_images = 0

    # ------------------------------------------------------------------ hooks
    def setup(self, model, images, targets, unlabelled) -> None:
        hp = self.hp
        self.weak = _ScaleRecorder(self.weak)
        counts = np.zeros(self.num_classes)
        oriented = bool(getattr(model, "oriented", False))
        for im, t in zip(images, targets, strict=True):
            ign = t.get("ignore", torch.zeros(len(t["labels"]), dtype=torch.bool))
            polys = t.get("polygons") if oriented else None
            rows = zip(t["boxes"], t["labels"].tolist(), ign.tolist(), strict=True)
            for k, (box, lab, ig) in enumerate(rows):
                if ig:
                    continue
                counts[lab] += 1
                poly = polys[k] if polys is not None else None
                inst = crop_instance(im, box, lab, 1.0, "gt", int(hp["paste_margin"]), poly)
                if inst is not None:
                    self.bank.add(inst)
        self.class_weights = (1.0 / (counts + 1.0)) ** float(hp["rare_power"])

    def make_pseudo_labels(self, weak: list[torch.Tensor], it: int) -> list[dict]:
        cfg, hp, n = self.cfg, self.hp, len(weak)
        scales = list(self.weak.scales)[-n:] if isinstance(self.weak, _ScaleRecorder) else []
        self._weak_scales = scales if len(scales) == n else [1.0] * n
        grow = hp["foreground_bank"] and hp["dia"]
        views = weak + ([w.flip(2) for w in weak] if grow and hp["bank_stability_iou"] > 0 else [])
        preds = self.teacher_predictions(views)
        out = [
            PseudoLabels.from_prediction(p, cfg.threshold, cfg.ignore_below, cfg.confidence)
            for p in preds[:n]
        ]
        if grow:
            self.grow_bank(weak, preds[:n], preds[n:] if len(preds) > n else None)
        return out

    def grow_bank(self, weak: list[torch.Tensor], preds, flipped) -> None:
        """Add the teacher's confident and flip-stable detections to the bank (the noise filter)."""
        hp, cfg = self.hp, self.cfg
        for i, (im, p) in enumerate(zip(weak, preds, strict=True)):
            conf = detection_confidence(p, cfg.confidence)
            cand = np.nonzero(conf >= hp["bank_threshold"])[0]
            if not len(cand):
                continue
            boxes = torch.from_numpy(p.boxes[cand].copy())
            if flipped is not None:
                q = flipped[i]
                qc = detection_confidence(q, cfg.confidence)
                fb = torch.from_numpy(q.boxes.copy())
                w = float(im.shape[2])
                fb = torch.stack([w - fb[:, 2], fb[:, 1], w - fb[:, 0], fb[:, 3]], 1) if len(fb) else fb
                ok = qc >= float(cfg.ignore_below if cfg.ignore_below is not None else cfg.threshold)
                if len(fb) and ok.any():
                    iou = box_iou(boxes, fb).numpy()
                    iou = iou * (p.labels[cand][:, None] == q.labels[None, :]) * ok[None, :]
                    stable = iou.max(1) >= hp["bank_stability_iou"]
                else:
                    stable = np.zeros(len(cand), bool)
            else:
                stable = np.ones(len(cand), bool)
            for j, k in enumerate(cand):
                if stable[j]:
                    inst = crop_instance(
                        im,
                        boxes[j],
                        int(p.labels[k]),
                        self._weak_scales[i],
                        "teacher",
                        int(hp["paste_margin"]),
                        p.polygons[k] if p.polygons is not None else None,
                    )
                    if inst is not None:
                        self.bank.add(inst)

    def make_strong(
        self, weak: list[torch.Tensor], pseudo: list[dict]
    ) -> tuple[list[torch.Tensor], list[dict]]:
        hp = self.hp
        composites, targets = [], []
        for i, (im, pl) in enumerate(zip(weak, pseudo, strict=True)):
            boxes, labels = pl["boxes"].reshape(-1, 4).float(), pl["labels"]
            pasted_boxes, pasted_labels, pasted_polys = [], [], []
            if hp["dia"]:
                occupied = boxes.clone()
                for _ in range(int(hp["paste_k"])):
                    inst = self.bank.sample(self.gen, self.class_weights)
                    if inst is None:
                        break
                    jit = 1.0 + float(hp["paste_scale_jitter"]) * (
                        2 * float(torch.rand((), generator=self.gen)) - 1
                    )
                    s = self._weak_scales[i] / inst.scale * jit if self._weak_scales else jit
                    res = paste_instance(
                        im, inst, s, occupied, self.gen, int(hp["paste_attempts"]), int(hp["paste_margin"])
                    )
                    if res is None:
                        continue
                    im, pb = res
                    pasted_boxes.append(pb)
                    pasted_labels.append(inst.label)
                    pasted_polys.append(paste_polygon(inst, pb))
                    # the crop's border counts as occupied too, so later pastes do not cover it
                    m = float(hp["paste_margin"])
                    occupied = torch.cat([occupied, (pb + torch.tensor([-m, -m, m, m]))[None]])
            n_p = len(pasted_boxes)
            self._n_pasted += n_p
            self._n_paste_images += 1
            pb_t = torch.stack(pasted_boxes) if n_p else torch.zeros((0, 4))
            t = {
                "boxes": torch.cat([boxes, pb_t]),
                "labels": torch.cat([labels, torch.as_tensor(pasted_labels, dtype=labels.dtype)]),
                "scores": torch.cat([pl["scores"], torch.ones(n_p, dtype=pl["scores"].dtype)]),
                "ignore": torch.cat([pl["ignore"], torch.zeros(n_p, dtype=torch.bool)]),
                "pasted": torch.cat(
                    [torch.zeros(len(boxes), dtype=torch.bool), torch.ones(n_p, dtype=torch.bool)]
                ),
                "index": torch.arange(len(boxes) + n_p),
            }
            if "polygons" in pl:  # an oriented teacher: the pastes carry their polygons too
                pp = torch.stack(pasted_polys) if n_p else torch.zeros((0, 8))
                t["polygons"] = torch.cat([pl["polygons"].reshape(-1, 8).float(), pp.float()])
            composites.append(im)
            targets.append(t)
        self._composites = composites
        self._composite_targets = targets
        return super().make_strong(composites, targets)

    def unsup_loss(self, student, step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, ulosses = super().unsup_loss(student, step)
        if self.hp["dia"] and self.hp["paste_full_positive"] and self.cfg.cls_only:
            pasted = [t["boxes"][t["pasted"]] for t in step.strong_targets]
            box, ctr = pasted_box_losses(student.last_outputs, pasted, student)
            loss = loss + box + ctr
            ulosses = {**ulosses, "paste_box": box, "paste_ctr": ctr}
        return loss, ulosses

    def rcr_loss(self, student, step: Step) -> torch.Tensor | None:
        """The relation consistency term (unweighted), or None with too few instances."""
        hp = self.hp
        s_boxes, t_boxes = [], []
        for st, ct in zip(step.strong_targets, self._composite_targets, strict=True):
            keep = ~st["ignore"]
            s_boxes.append(st["boxes"][keep].reshape(-1, 4).float())
            t_boxes.append(ct["boxes"][st["index"][keep]].reshape(-1, 4).float())
        if sum(len(b) for b in s_boxes) < max(2, int(hp["rcr_min_instances"])):
            return None
        strides = student.cfg.strides
        s_emb = instance_embeddings(step.student_out["fpn"], s_boxes, strides)
        with torch.no_grad():
            self.teacher.eval()
            t_fpn = self.teacher.features(make_batch(self._composites).to(self.device).images)[1]
            t_emb = instance_embeddings(t_fpn, t_boxes, strides)
        if hp["rcr_feature_noise"]:
            keep = (torch.rand(s_emb.shape, generator=self.gen) >= hp["rcr_dropout"]).to(s_emb)
            noise = torch.randn(s_emb.shape, generator=self.gen).to(s_emb)
            s_emb = s_emb * keep / (1.0 - hp["rcr_dropout"]) + hp["rcr_noise"] * s_emb.detach().std() * noise
        return relation_consistency(t_emb, s_emb, float(hp["rcr_temperature"]))

    def extra_losses(self, student, step: Step) -> dict[str, torch.Tensor]:
        if not self.hp["rcr"] or step.student_out is None:
            return {}
        loss = self.rcr_loss(student, step)
        if loss is None:
            return {}
        ramp = self.loss_weights(step.it)[1] / max(1e-12, self.cfg.unsup_weight)
        return {"rcr": float(self.hp["rcr_weight"]) * ramp * loss}

    def final_model(self, student):
        self.stats["bank_gt"] = int(sum(len(g) for g in self.bank.gt))
        self.stats["bank_teacher"] = int(sum(len(t) for t in self.bank.teacher))
        self.stats["bank_teacher_added"] = int(self.bank.added)
        self.stats["pastes_per_image"] = self._n_pasted / max(1, self._n_paste_images)
        return super().final_model(student)
