"""Mean Teacher for detection, in the style of Unbiased Teacher: the semi-supervised baseline.

Paper: Y.-C. Liu et al., "Unbiased Teacher for Semi-Supervised Object Detection", ICLR 2021
(code: facebookresearch/unbiased-teacher), building on Tarvainen & Valpola, "Mean teachers are
better role models", NeurIPS 2017.

Confirmed from the paper and its code (``docs/sources.md#mean-teacher-unbiased-teacher``): burn-in on
labelled data, then the teacher is a copy of the student and is updated as an EMA of it every iteration
(keep rate 0.9996 over 180k iterations); the teacher predicts on a weak view (flip) of each unlabelled
image, its detections with confidence >= 0.7 become hard pseudo-labels for the student on a strong view
(colour jitter, grayscale, blur, three random erasings); focal loss on the classification branch; **no
box-regression loss on pseudo-labels**; unsupervised loss weight 4; labelled and unlabelled images in equal
numbers per batch; evaluation uses the teacher.

Our reconstruction for the benchmark detector (FCOS, one stage, trained from scratch on a CPU
schedule): the thresholded "confidence" is the detection's class probability (the classifier's
confidence, as UT thresholds its ROI classifier; FCOS's ranking score sqrt(p_cls * centre-ness)
almost never reaches 0.7 on this detector); pseudo-labels supervise the sigmoid focal
classification loss only (``cls_only`` targets: no GIoU and no centre-ness loss); the burn-in is a
fraction of the fixed schedule (a from-scratch tiny detector needs far more than UT's 1 % of the
iterations before its detections are worth distilling), the teacher starts from the burn-in EMA,
and the EMA keep rate is scaled to the schedule's length (time constant = 33 % of the post-burn-in
iterations: 0.99 for the default matrix, the averaging the supervised baseline evaluates with);
the unsupervised weight ramps up with the Mean-Teacher sigmoid ``exp(-5 (1 - t)^2)``. The weak view
adds scale jitter and the strong view a small affine jitter (STAC / Soft Teacher), see
``benchmark.augment``. The schedule (iterations, batch size, learning rate) is the matrix's, the
same as every other method's.

Four changes address failure causes we measured on synthetic DOTA (25 labelled images; the figures
follow): (1) teacher detections with confidence in [0.3, threshold) become ignore
regions instead of background (at 0.7 the teacher recalled only ~20 % of the objects, and treating
the rest as background taught the student to suppress them: mAP50 collapsed from 0.28 to 0.04);
(2) the unlabelled classification loss is divided by at least the labelled batch's number of
positives (a batch with no pseudo-labels was otherwise normalised by 1, weighing its background
tens of times more than a labelled batch); (3) strong-view batches do not update BatchNorm
running statistics (our detector trains its BatchNorm; UT's ImageNet R50 has it frozen);
(4) the pseudo-label threshold is 0.5, not UT's 0.7. UT's 0.7 thresholds a softmax classifier
trained with cross-entropy; ours is a sigmoid classifier trained with focal loss, whose
probabilities run lower. Measured on synthetic DOTA (dataset 3b59b1b86537bd86, seeds 0-2, the
teacher at the end of burn-in against the hidden labels of 200 unlabelled patches): at 0.7
precision 0.86-0.90 but recall 0.01-0.07 (0.1-0.7 pseudo-labels per patch), at 0.5 precision
0.63-0.76 and recall 0.12-0.24. Paired mAP50 gain over ``supervised`` at 25 patches, default
schedule: +0.029 / +0.012 / +0.053 at 0.7 and +0.040 / +0.040 / +0.082 at 0.5 (seeds 0 / 1 / 2).
Those gains were test-split figures; the choice was redone on the validation part of the pool
(``docs/experiments/thresholds.md``: the default matrix's pretrained start and schedule, 25 images,
seeds 0-2, all four domains, a rule written before the sweep ran): 0.7 against 0.5 averages
-0.005 over the domains, so 0.5 stays, now as the validation choice.

Measured and left off (same data and seeds, gain over ``supervised``): soft background
(``soft_background``, Soft Teacher's negative weighting: each background location of the
unlabelled loss weighted by the teacher's background probability ``1 - max_c p(c)`` on the same
strong view) +0.019 / +0.020 / +0.060 at threshold 0.7 and +0.041 / +0.047 / +0.081 at 0.5, no
better than the 0.5 threshold alone at the cost of one more teacher forward pass per iteration;
box-regression and centre-ness losses on the pseudo-labels (``cls_only = False``) -0.008 on seed 0.
Over seeds 0-5 the 0.5 threshold gains +0.017 mAP50, 95 % t-CI [-0.033, +0.067]: not yet a
significant improvement over ``supervised`` at this budget; ``docs/experiments/mean_teacher.md`` traces why.

Oriented detectors (DOTA Task1, ``[detector] oriented = true``): the teacher's pseudo-labels carry
its polygons, mapped through the strong view with the boxes (``benchmark.augment``); labelled and
weak views also rotate by multiples of 90 degrees. With ``cls_only`` the angle reaches the student
only through the assignment (positives are the locations inside the pseudo-label's rotated box);
the angle itself is learnt from the labelled images (ProbIoU + angle term).

Hyper-parameters (defaults):
    threshold = 0.5           pseudo-label confidence threshold (UT ``BBOX_THRESHOLD`` = 0.7, see (4))
    confidence = "cls"        what is thresholded: class probability ("cls") or FCOS score ("score")
    unsup_weight = 4.0        unsupervised loss weight (UT ``UNSUP_LOSS_WEIGHT``)
    burn_in = 0.5             fraction of the schedule trained on labelled data only
    rampup = 0.25             fraction of the post-burn-in iterations over which the weight ramps up
    unlabelled_ratio = 1.0    unlabelled : labelled images per batch (UT: 1)
    ema_time_constant = 0.33  teacher EMA time constant as a fraction of post-burn-in iterations
    cls_only = True           no box-regression / centre-ness loss on pseudo-labels (UT)
    ignore_below = 0.3        teacher detections in [ignore_below, threshold) are ignore regions
    labelled_view = "weak"    labelled images get the weak view (flips + scale jitter), as in UT
    freeze_bn_on_unlabelled = True   strong views leave BatchNorm running statistics alone
    vertical_flip = True      weak views also flip vertically (top-down imagery)
    soft_background = False   unlabelled background weighted by the teacher's background probability
"""

from __future__ import annotations

import numpy as np
import torch

from baselines.base import register_method
from baselines.teacher_student import TeacherStudentMethod, detection_confidence
from benchmark.training import predict_all


@register_method("mean_teacher")
class MeanTeacher(TeacherStudentMethod):
    """Unbiased-Teacher-style mean teacher (see the module docstring): the shared loop as it is."""

    hparams = {**TeacherStudentMethod.hparams, "soft_background": False}


def pseudo_label_quality(
    model: torch.nn.Module,
    samples,
    images: list[torch.Tensor],
    threshold: float,
    iou: float = 0.5,
    confidence: str = "cls",
) -> dict[str, float]:
    """Diagnostics (never used in training): precision and recall of the pseudo-labels a model
    would produce at ``threshold`` on ``samples``, against their hidden labels (IoU >= ``iou``,
    same class, ignore regions excluded)."""
    from torchvision.ops import box_iou

    preds = predict_all(model, images)
    tp = n_pred = n_gt = 0
    for s, p in zip(samples, preds, strict=True):
        conf = detection_confidence(p, confidence)
        keep = conf >= threshold
        pb, pl = torch.from_numpy(p.boxes[keep]), p.labels[keep]
        ok = ~np.asarray(s.ignore, dtype=bool)
        gb, gl = torch.from_numpy(s.boxes[ok]), s.labels[ok]
        n_pred += len(pb)
        n_gt += len(gb)
        if len(pb) and len(gb):
            m = box_iou(pb, gb).numpy() * (pl[:, None] == gl[None, :])
            used = np.zeros(len(gb), bool)
            for i in np.argsort(-conf[keep]):
                j = int(np.argmax(np.where(used, -1, m[i])))
                if m[i, j] >= iou and not used[j]:
                    used[j] = True
                    tp += 1
    return {
        "precision": tp / max(1, n_pred),
        "recall": tp / max(1, n_gt),
        "pseudo_per_image": n_pred / max(1, len(samples)),
    }
