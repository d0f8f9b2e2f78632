"""Triple-EMA: a semi-supervised detector for large-scale, class-imbalanced remote-sensing images.

Paper: Chen, Liu, Gao, Yan, "Triple-EMA: A novel semi-supervised learning framework for large-scale
imbalanced remote sensing object detection", Engineering Applications of Artificial Intelligence
163 (2026) 113116; DOI presumably 10.1016/j.engappai.2025.113116 (Elsevier's pattern for that
article number; not verified).

Confirmed (``docs/sources.md#triple-ema``): only the title-level description: a semi-supervised
(teacher-student) framework built around a "triple EMA", with a "two-stage class adaptation" for
long-tailed remote-sensing detection, evaluated on DOTA. No abstract, page or code was found; the
reported DOTA-v1.5 numbers (mAP50 75.8, mAP50-95 51.5) are unverified.

Our reconstruction (everything below is inferred, built on ``baselines.teacher_student``,
the Unbiased-Teacher-style loop of ``mean_teacher``, with its settings and measured fixes except its
0.5 threshold: the base threshold here is Unbiased Teacher's 0.7):

* **Triple-EMA teacher**, two readings selected by ``mode``:
  - ``"tema"`` (default): the financial TEMA indicator applied to weights. E1 = EMA(student),
    E2 = EMA(E1), E3 = EMA(E2), all with the same keep rate (``ema_time_constant`` scaled to the
    schedule exactly as ``mean_teacher``), and the teacher = 3·E1 − 3·E2 + E3: a smoothed average
    whose lag behind the student is cancelled to first and second order (an EMA of a linearly
    drifting sequence lags by k/(1−k) steps; TEMA does not). Integer buffers
    (``num_batches_tracked``) are copied from the student; BatchNorm running statistics follow
    ``bn_stats``: ``"tema"`` the same combination (running variances clipped at 0), ``"e1"`` E1's.
    E1, E2 and E3 start from the burn-in EMA of the student.
  - ``"ensemble"``: three EMA teachers with time constants ``ema_time_constant`` ×
    ``ensemble_spread`` ^ (−1, 0, 1) (0.11 / 0.33 / 0.99 of the post-burn-in iterations: keep
    rates 0.97 / 0.99 / 0.997 on the default schedule, the 0.99 / 0.999 / 0.9999 spread of a
    long schedule compressed to ours); their detections are fused by Weighted Boxes Fusion
    (``benchmark.fusion.wbf``, IoU ``wbf_iou``, scores averaged over the three, so a box only one
    teacher finds keeps a third of its confidence) before thresholding. The middle teacher is
    the evaluated model.
  The trained model carries the three averages (E1, E2, E3 or the three teachers) in
  ``committee_states`` for the ``tema_disagreement`` acquisition strategy.
* **Two-stage class adaptation.**
  - Stage 1, ``adaptive_thresholds`` (whole post-burn-in phase): per-class pseudo-label thresholds
    ``tau_c = clip(threshold * (Q_c / max_k Q_k) * (n_c / n_max) ** freq_power, threshold_low,
    threshold_high)``, where ``n_c`` is the number of labelled boxes of class c and ``Q_c`` the
    ``score_quantile`` quantile of the last ``score_buffer`` teacher confidences of class c at or
    above ``ignore_below`` (a class the teacher is unsure of, or that is rare in the labelled set,
    gets a lower threshold; a class with no teacher detections yet uses ratio 1). Teacher
    detections between ``ignore_below`` and their class threshold stay ignore regions.
  - Stage 2, ``class_rebalancing`` (the last ``1 - rebalance_start`` of the post-burn-in
    iterations): the classification loss of every positive location is re-weighted by its class's
    class-balanced weight (Cui et al., CVPR 2019) ``w_c ∝ (1 − beta) / (1 − beta ** n_c)``
    (``n_c`` >= 1), normalised so that the mean weight over the labelled boxes is 1, on labelled
    positives (ground truth) and unlabelled positives (pseudo-labels, times the unsupervised
    weight). It is added as the term ``sum_pos (w_c − 1) · focal(pos) / normaliser`` on the
    logits the loop has already computed, so the positives' total classification weight is w_c.
* Oriented detectors (DOTA Task1): pseudo-labels carry the teacher's polygons. The TEMA teacher
  is one network, so its polygons are its own; the ``"ensemble"`` teachers' fused box takes the
  polygon of the member detection of its class that overlaps it most
  (``benchmark.fusion.fused_polygons``: an angle is chosen, never averaged, since a rectangle reads
  the same at theta and theta + pi and with its sides swapped at theta + pi/2).
* Everything else is ``mean_teacher``'s: burn-in, confidence = class probability, hard
  pseudo-labels on the classification branch only, unsupervised weight 4 with a sigmoid ramp-up,
  ignore band, strong-view batches that leave BatchNorm statistics alone, weak labelled views.

Hyper-parameters (defaults):
    mode = "tema"                 "tema" (3·E1 − 3·E2 + E3) or "ensemble" (three teachers + WBF)
    triple_ema = True             component switch: False = a single EMA teacher (E1 / the middle teacher)
    adaptive_thresholds = True    component switch: stage 1 (class-wise thresholds)
    class_rebalancing = True      component switch: stage 2 (effective-number re-weighting)
    bn_stats = "tema"             BatchNorm running statistics of the TEMA teacher: "tema" or "e1"
    ensemble_spread = 3.0         ratio between consecutive teachers' time constants ("ensemble")
    wbf_iou = 0.55                WBF IoU threshold ("ensemble")
    threshold = 0.7               base pseudo-label threshold (UT's 0.7; mean_teacher: 0.5)
    threshold_low = 0.5           lower clip of the class thresholds
    threshold_high = 0.9          upper clip of the class thresholds
    score_quantile = 0.5          quantile of the teacher's class confidences (Q_c)
    score_buffer = 512            teacher confidences kept per class
    freq_power = 0.1              exponent of the labelled class frequency in the thresholds
    rebalance_start = 0.5         stage 2 starts after this fraction of the post-burn-in iterations
    cb_beta = 0.9                 effective-number beta (class counts are tens of boxes here)
    confidence = "cls"            what is thresholded (class probability, as mean_teacher)
    unsup_weight = 4.0            unsupervised loss weight
    burn_in = 0.5                 fraction of the schedule trained on labelled data only
    rampup = 0.25                 ramp-up of the unsupervised weight (fraction of post-burn-in)
    unlabelled_ratio = 1.0        unlabelled : labelled images per batch
    ema_time_constant = 0.33      EMA time constant as a fraction of post-burn-in iterations
    cls_only = True               pseudo-labels supervise the classification branch only
    ignore_below = 0.3            teacher detections in [ignore_below, tau_c) are ignore regions
    labelled_view = "weak"        labelled images get the weak view
    freeze_bn_on_unlabelled = True    strong views leave BatchNorm running statistics alone
    vertical_flip = True          weak views also flip vertically (top-down imagery)
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torchvision.ops import sigmoid_focal_loss

from baselines.base import register_method
from baselines.teacher_student import PseudoLabels, Step, TeacherStudentMethod, detection_confidence
from benchmark.fusion import fused_polygons, wbf
from benchmark.training import ema_update, predict_all
from domains.base import Sample, SpecError


def labelled_class_counts(samples: list[Sample], n_classes: int) -> np.ndarray:
    """Non-ignored boxes per class in ``samples`` (int64, length ``n_classes``)."""
    counts = np.zeros(n_classes, np.int64)
    for s in samples:
        lab = np.asarray(s.labels, np.int64)[~np.asarray(s.ignore, bool)]
        counts += np.bincount(lab, minlength=n_classes)[:n_classes]
    return counts


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al.'s ``(1 − beta) / (1 − beta ** n_c)`` (``n_c`` >= 1), normalised so that the mean
    weight over the counted instances is 1 (uniform 1 when nothing is counted)."""
    n = np.maximum(np.asarray(counts, np.float64), 1.0)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    total = float(np.asarray(counts).sum())
    if total <= 0:
        return np.ones_like(w)
    return w * total / float((w * np.asarray(counts, np.float64)).sum())


def tema_combine(e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor) -> torch.Tensor:
    """The triple exponential moving average ``3·E1 − 3·E2 + E3``."""
    return 3.0 * e1 - 3.0 * e2 + e3


@register_method("triple_ema")
class TripleEMA(TeacherStudentMethod):
    """Triple-EMA teacher + two-stage class adaptation (see the module docstring)."""

    default_strategy = "tema_disagreement"
    designed_for = "dota"
    components = {
        "triple-EMA teacher": "triple_ema",
        "stage 1: class-adaptive thresholds": "adaptive_thresholds",
        "stage 2: class re-balancing": "class_rebalancing",
    }
    hparams = {
        **TeacherStudentMethod.hparams,
        "threshold": 0.7,
        "mode": "tema",
        "triple_ema": True,
        "adaptive_thresholds": True,
        "class_rebalancing": True,
        "bn_stats": "tema",
        "ensemble_spread": 3.0,
        "wbf_iou": 0.55,
        "threshold_low": 0.5,
        "threshold_high": 0.9,
        "score_quantile": 0.5,
        "score_buffer": 512,
        "freq_power": 0.1,
        "rebalance_start": 0.5,
        "cb_beta": 0.9,
    }

    def check_hparams(self) -> None:
        h = self.hp
        if h["mode"] not in ("tema", "ensemble") or h["bn_stats"] not in ("tema", "e1"):
            raise SpecError(
                f"triple_ema: mode must be 'tema' or 'ensemble' and bn_stats 'tema' or 'e1', "
                f"got {h['mode']!r} and {h['bn_stats']!r}"
            )
        if not (0.0 < h["cb_beta"] < 1.0 and 0.0 <= h["rebalance_start"] <= 1.0 and h["ensemble_spread"] > 0):
            raise SpecError(
                "triple_ema: need 0 < cb_beta < 1, 0 <= rebalance_start <= 1, ensemble_spread > 0"
            )
        if not 0.0 <= h["threshold_low"] <= h["threshold_high"] <= 1.0 or not 0 <= h["score_quantile"] <= 1:
            raise SpecError(
                "triple_ema: need 0 <= threshold_low <= threshold_high <= 1 and score_quantile in [0, 1]"
            )
        if not math.isfinite(h["freq_power"]) or h["freq_power"] < 0:
            raise SpecError("triple_ema: freq_power must be >= 0")
        super().check_hparams()

    def start(self, ctx) -> None:
        super().start(ctx)
        self.set_class_counts(labelled_class_counts(ctx.labelled, len(ctx.classes)))
        self.chain: list[dict[str, torch.Tensor]] = []  # E1, E2, E3 ("tema")
        self.members: list[torch.nn.Module] = []  # the three teachers ("ensemble")
        self.member_keeps: list[float] = []
        self._bn_stat_keys: set[str] = set()

    def set_class_counts(self, counts: np.ndarray) -> None:
        """The labelled boxes per class that stage 1 and stage 2 use (from ``ctx.labelled`` in
        ``start``); resets the teacher-confidence buffers."""
        self.counts = np.asarray(counts, np.int64)
        self.n_classes = len(self.counts)
        self.cb_weights = torch.tensor(
            class_balanced_weights(self.counts, self.hp["cb_beta"]), dtype=torch.float32
        )
        self.buffers: list[np.ndarray] = [np.zeros(0, np.float32) for _ in range(self.n_classes)]

    # ------------------------------------------------------------------ the triple-EMA teacher
    def post_burn_in(self) -> int:
        T = self.schedule.iterations
        return max(1, T - self.cfg.burn_in_iters(T))

    def init_teacher(self, student: torch.nn.Module) -> torch.nn.Module:
        teacher = super().init_teacher(student)
        self._bn_stat_keys = {
            f"{name}.{b}" if name else b
            for name, m in teacher.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in ("running_mean", "running_var")
        }
        if self.hp["mode"] == "tema":
            state = teacher.state_dict()
            self.chain = [{k: v.detach().clone() for k, v in state.items()} for _ in range(3)]
            return teacher
        tc, spread = self.hp["ema_time_constant"], self.hp["ensemble_spread"]
        consts = [tc / spread, tc, tc * spread] if self.hp["triple_ema"] else [tc]
        self.member_keeps = [1.0 - 1.0 / max(1.0, c * self.post_burn_in()) for c in consts]
        self.members = [teacher] + [copy.deepcopy(teacher) for _ in consts[1:]]
        if self.hp["triple_ema"]:
            self.members = [self.members[1], self.members[0], self.members[2]]  # middle = teacher
        return teacher

    @torch.no_grad()
    def update_teacher(self, student: torch.nn.Module, it: int) -> None:
        if self.hp["mode"] == "ensemble":
            for m, k in zip(self.members, self.member_keeps, strict=True):
                ema_update(m.state_dict(), student.state_dict(), k)
            return
        e1, e2, e3 = self.chain
        ema_update(e1, student.state_dict(), self.keep)
        ema_update(e2, e1, self.keep)
        ema_update(e3, e2, self.keep)
        t_state = self.teacher.state_dict()
        for key, t in t_state.items():
            e1, e2, e3 = (c[key] for c in self.chain)
            if not t.dtype.is_floating_point or not self.hp["triple_ema"]:
                t.copy_(e1)
            elif key in self._bn_stat_keys and self.hp["bn_stats"] == "e1":
                t.copy_(e1)
            elif key.endswith("running_var"):
                t.copy_(tema_combine(e1, e2, e3).clamp_(min=0.0))
            else:
                t.copy_(tema_combine(e1, e2, e3))

    def committee(self) -> list[dict[str, torch.Tensor]]:
        """State dicts of the three averages (E1, E2, E3 or the three teachers)."""
        if self.hp["mode"] == "tema":
            return [{k: v.detach().clone() for k, v in c.items()} for c in self.chain]
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.members]

    def final_model(self, student: torch.nn.Module) -> torch.nn.Module:
        states = self.committee()
        student.load_state_dict(self.teacher.state_dict())
        student.committee_states = states
        self.stats["class_thresholds"] = [round(float(t), 4) for t in self.class_thresholds()]
        self.stats["class_weights"] = [round(float(w), 4) for w in self.cb_weights]
        return student

    # ------------------------------------------------------------------ stage 1: class thresholds
    def class_thresholds(self) -> np.ndarray:
        """Per-class pseudo-label thresholds ``tau_c`` (see the module docstring)."""
        hp, base = self.hp, self.cfg.threshold
        if not hp["adaptive_thresholds"]:
            return np.full(self.n_classes, base, np.float64)
        q = np.array(
            [np.quantile(b, hp["score_quantile"]) if len(b) else np.nan for b in self.buffers], np.float64
        )
        ratio = np.ones(self.n_classes)
        if np.isfinite(q).any():
            ratio = np.where(np.isfinite(q), q / max(1e-6, float(np.nanmax(q))), 1.0)
        freq = (np.maximum(self.counts, 1) / max(1, int(self.counts.max()))) ** hp["freq_power"]
        return np.clip(base * ratio * freq, hp["threshold_low"], hp["threshold_high"])

    def observe(self, conf: np.ndarray, labels: np.ndarray) -> None:
        """Add teacher confidences (at or above ``ignore_below``) to the per-class buffers."""
        low = self.cfg.ignore_below if self.cfg.ignore_below is not None else 0.0
        size = int(self.hp["score_buffer"])
        for c in np.unique(labels[conf >= low]):
            new = conf[(labels == c) & (conf >= low)]
            self.buffers[c] = np.concatenate([self.buffers[c], new])[-size:]

    def teacher_detections(self, weak: list[torch.Tensor]) -> list[tuple]:
        """Per weak view: (boxes, confidences, labels, polygons or None) of the teacher (fused for
        "ensemble"; an oriented ensemble's fused box takes the polygon of its best-overlapping member
        detection, ``benchmark.fusion.fused_polygons``)."""
        kind = self.cfg.confidence
        if self.hp["mode"] != "ensemble" or len(self.members) == 1:
            preds = self.teacher_predictions(weak)
            return [(p.boxes, detection_confidence(p, kind), p.labels, p.polygons) for p in preds]
        per_member = [predict_all(m, weak, batch_size=len(weak), device=self.device) for m in self.members]
        out = []
        for i, im in enumerate(weak):
            ps = [pm[i] for pm in per_member]
            confs = [detection_confidence(p, kind) for p in ps]
            fb, fs, fl = wbf(
                [p.boxes for p in ps],
                confs,
                [p.labels for p in ps],
                (int(im.shape[1]), int(im.shape[2])),
                iou_thr=self.hp["wbf_iou"],
            )
            polys = None
            if all(p.polygons is not None for p in ps):
                polys = fused_polygons(
                    fb, fl, [p.boxes for p in ps], confs, [p.labels for p in ps], [p.polygons for p in ps]
                )
            out.append((fb, fs, fl, polys))
        return out

    def make_pseudo_labels(self, weak: list[torch.Tensor], it: int) -> list[dict]:
        dets = self.teacher_detections(weak)
        for _, conf, lab, _ in dets:
            self.observe(np.asarray(conf, np.float32), np.asarray(lab, np.int64))
        tau = self.class_thresholds()
        self.stats["class_thresholds"] = [round(float(t), 4) for t in tau]
        out = []
        for boxes, conf, lab, polys in dets:
            lab = np.asarray(lab, np.int64)
            out.append(
                PseudoLabels.from_detections(
                    np.asarray(boxes, np.float32),
                    np.asarray(conf, np.float32),
                    lab,
                    tau[lab] if len(lab) else np.zeros(0),
                    self.cfg.ignore_below,
                    None if polys is None else np.asarray(polys, np.float32),
                )
            )
        return out

    # ------------------------------------------------------------------ stage 2: re-balancing
    def rebalancing_active(self, it: int) -> bool:
        T = self.schedule.iterations
        start = self.cfg.burn_in_iters(T)
        return bool(self.hp["class_rebalancing"]) and it >= start + self.hp["rebalance_start"] * (T - start)

    def _reweight_term(self, out: dict, normaliser: float) -> torch.Tensor:
        """``sum_pos (w_c − 1) · focal(pos) / normaliser`` on a forward pass's ``last_outputs``."""
        logits, labels = out["cls"], out["labels"]
        pos = labels >= 0
        if not pos.any():
            return logits.sum() * 0.0
        lp = logits[pos]
        onehot = torch.nn.functional.one_hot(labels[pos], lp.shape[1]).to(lp.dtype)
        focal = sigmoid_focal_loss(lp, onehot, alpha=0.25, gamma=2.0, reduction="none").sum(1)
        w = self.cb_weights.to(lp.device)[labels[pos]]
        return ((w - 1.0) * focal).sum() / max(1.0, normaliser)

    def extra_losses(self, student: torch.nn.Module, step: Step) -> dict[str, torch.Tensor]:
        if not self.rebalancing_active(step.it) or step.labelled_out is None or step.student_out is None:
            return {}
        n_pos_l = float((step.labelled_out["labels"] >= 0).sum())
        term = self._reweight_term(step.labelled_out, n_pos_l)
        w_l, w_u = self.loss_weights(step.it)
        n_pos_u = float((step.student_out["labels"] >= 0).sum())
        norm_u = n_pos_u
        if self.cfg.normalize_by_labelled:
            norm_u = max(n_pos_u, max(1.0, n_pos_l) * len(step.strong) / self.schedule.batch_size)
        term = w_l * term + w_u * self._reweight_term(step.student_out, norm_u)
        return {"rebalance": term}
