"""The teacher-student family: one base class for every semi-supervised method of the suite.

A semi-supervised method is a ``TeacherStudentMethod``: its hyper-parameters (the shared ones of
``TeacherStudentMethod.hparams`` with only what differs overridden or added) and the hooks it
overrides. The base owns everything else: the projection of the hyper-parameters onto the loop's
``TeacherStudentConfig`` (``config``), the per-round state (``loop``: a fresh copy of the method,
started on the round's ``TrainContext``), the training loop (``fit``), the EMA teacher (one
implementation, ``benchmark.training.ema_update``), the pseudo-labels (``PseudoLabels``) and the
statistics a round returns (``stats``, published as ``Method.last_stats``)::

    @register_method("my_ssl")
    class MySSL(TeacherStudentMethod):
        hparams = {**TeacherStudentMethod.hparams, "threshold": 0.6, "my_weight": 1.0}

        def extra_losses(self, student, step):  # a hook: see the list below
            return {"mine": self.hp["my_weight"] * ...}

The loop (``fit``) runs the matrix's fixed schedule: iterations ``[0, burn_in)`` are supervised on
the labelled images (``labelled_view``; the loss, optimiser and learning-rate schedule of
``train_supervised``). At the end of burn-in ``init_teacher`` makes the teacher (a copy of the
student, of its EMA when the schedule has ``ema_decay``). Then each iteration draws
``batch_size`` labelled and ``round(batch_size * unlabelled_ratio)`` unlabelled images; the teacher
labels a weak view of each unlabelled image (``make_pseudo_labels``), the strong view is made from
the weak one with the pseudo boxes carried into its geometry (``make_strong``), and the student's
loss is ``w_l(t) L_sup + w_u(t) L_unsup + sum(extra_losses)`` (``loss_weights``, ``unsup_loss``
with its per-location ``unsup_location_weights``, ``extra_losses``). After each step
``update_teacher`` (EMA with the scaled keep rate). The returned model is ``final_model`` (the
teacher, in eval mode, with the student kept in ``committee_states`` for committee-based
acquisition). Hooks: ``start`` (per-round state), ``setup``, ``extra_parameters``,
``init_teacher``, ``update_teacher``, ``teacher_predictions``, ``make_pseudo_labels``,
``make_strong``, ``unsup_location_weights``, ``unsup_loss``, ``extra_losses``, ``loss_weights``,
``final_model``. Every random draw comes from the round's generator (``self.gen``).

The shared defaults are the ``mean_teacher`` baseline's (Unbiased Teacher with the measured fixes
its card describes): burn-in half the schedule, class-probability threshold 0.5 with ignore regions
in [0.3, 0.5), classification-only pseudo-labels with weight 4 and a sigmoid ramp-up, weak
labelled views, strong views that leave BatchNorm statistics alone, an EMA teacher whose time
constant is a third of the post-burn-in iterations.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import numpy as np
import torch

from baselines.base import Method, TrainContext
from benchmark.augment import WEAK_SCALE, apply_view, strong_view, weak_view
from benchmark.detectors.base import Batch, make_batch
from benchmark.training import ModelEMA, ema_update, flip_batch, make_optimizer, predict_all
from domains.base import SpecError


@dataclass(frozen=True)
class TeacherStudentConfig:
    """Hyper-parameters of the shared teacher-student loop (``TeacherStudentMethod.fit``).

    ``burn_in``: fraction of the schedule trained on labelled data only; at its end the teacher is
    initialised from the student (from its EMA when the schedule has ``ema_decay``).
    ``threshold``: teacher detections scoring at least this become pseudo-labels.
    ``unsup_weight``: weight of the unlabelled loss, reached after a sigmoid ramp-up
    ``exp(-5 (1 - t)^2)`` over the first ``rampup`` fraction of the post-burn-in iterations.
    ``unlabelled_ratio``: unlabelled images per labelled image in a batch.
    ``ema_time_constant``: the teacher's EMA keep rate is ``1 - 1 / (ema_time_constant * T)`` with
    ``T`` the post-burn-in iterations (the keep rate scaled to the schedule's length).
    ``cls_only``: pseudo-labels supervise only the classification branch (no box/centre-ness loss).
    ``ignore_below``: teacher detections scoring in ``[ignore_below, threshold)`` become ignore
    regions (neither positive nor background) instead of background; ``None`` = off.
    ``confidence``: what is thresholded: ``"cls"`` the detection's class probability (the
    classifier's confidence, as Unbiased Teacher thresholds its ROI classifier), or ``"score"`` the
    detection score (for FCOS ``sqrt(p_cls * centre-ness)``).
    ``labelled_view``: augmentation of the labelled images: ``"flip"`` (random flips, exactly as
    ``train_supervised``, so a paired comparison with the supervised baseline measures what the
    unlabelled images add) or ``"weak"`` (the weak view: flips + scale jitter).
    ``freeze_bn_on_unlabelled``: the unlabelled (strong-view) forward pass does not update
    BatchNorm running statistics (see ``frozen_bn_statistics``).
    ``normalize_by_labelled``: the unlabelled classification loss is divided by at least the
    labelled batch's number of positives (scaled to the unlabelled batch size), so a batch with few
    pseudo-labels does not weigh its background many times more than a labelled batch does.
    ``soft_background``: each background location of the unlabelled loss is weighted by the
    teacher's background probability there, ``1 - max_c p_teacher(c)`` on the student's strong view
    (Soft Teacher's reliability weighting of negatives), so objects the teacher half-sees but did
    not pseudo-label are not taught as background; pseudo-label positives keep weight 1. Off by
    default (hard background, as in Unbiased Teacher).
    """

    burn_in: float = 0.33
    threshold: float = 0.7
    unsup_weight: float = 4.0
    rampup: float = 0.25
    unlabelled_ratio: float = 1.0
    ema_time_constant: float = 0.05
    cls_only: bool = True
    ignore_below: float | None = None
    confidence: str = "cls"
    normalize_by_labelled: bool = True
    vertical_flip: bool = True
    scale_jitter: tuple[float, float] = WEAK_SCALE
    labelled_view: str = "flip"
    freeze_bn_on_unlabelled: bool = True
    soft_background: bool = False

    def __post_init__(self) -> None:
        if self.labelled_view not in ("flip", "weak") or self.confidence not in ("cls", "score"):
            raise SpecError(
                f"labelled_view must be 'flip' or 'weak' and confidence 'cls' or 'score', "
                f"got {self.labelled_view!r} and {self.confidence!r}"
            )
        if not 0.0 <= self.burn_in <= 1.0 or self.unlabelled_ratio <= 0:
            raise SpecError(f"burn_in must lie in [0, 1] and unlabelled_ratio be positive: {self}")

    def keep_rate(self, iterations: int) -> float:
        t = max(1, iterations - self.burn_in_iters(iterations))
        return max(0.0, 1.0 - 1.0 / max(1.0, self.ema_time_constant * t))

    def burn_in_iters(self, iterations: int) -> int:
        return min(iterations, max(1, round(self.burn_in * iterations)))

    def unsup_weight_at(self, it: int, iterations: int) -> float:
        """0 during burn-in, then the sigmoid ramp-up to ``unsup_weight``."""
        start = self.burn_in_iters(iterations)
        if it < start:
            return 0.0
        ramp = self.rampup * max(1, iterations - start)
        if ramp <= 0:
            return self.unsup_weight
        t = min(1.0, (it - start + 1) / ramp)
        return self.unsup_weight * math.exp(-5.0 * (1.0 - t) ** 2)


CONFIG_FIELDS = frozenset(f.name for f in fields(TeacherStudentConfig))


@contextmanager
def frozen_bn_statistics(model: torch.nn.Module):
    """BatchNorm layers normalise with the batch's statistics but leave their running statistics
    alone (momentum 0) inside the block: strongly augmented unlabelled batches must not drift the
    statistics the evaluated model (and the EMA teacher, which averages them) uses on clean images.
    Detectors with frozen BatchNorm (Unbiased Teacher's ImageNet R50) never meet this problem."""
    saved = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


def detection_confidence(pred, kind: str = "cls") -> np.ndarray:
    """Per detection: its class probability (``"cls"``) or its detection score (``"score"``)."""
    if kind == "score":
        return np.asarray(pred.scores, dtype=np.float32)
    if kind != "cls":
        raise SpecError(f"confidence must be 'cls' or 'score', got {kind!r}")
    if len(pred.labels) == 0:
        return np.zeros(0, np.float32)
    return pred.class_probs[np.arange(len(pred.labels)), pred.labels].astype(np.float32)


class PseudoLabels(dict):
    """The targets a teacher gives one unlabelled image: ``boxes``, ``labels``, ``scores`` (the
    thresholded confidences), ``ignore`` (the detections in the ignore band) and, from an oriented
    teacher, ``polygons``. A plain ``dict`` of tensors, so the detector's losses take it as is."""

    @classmethod
    def from_detections(
        cls,
        boxes: np.ndarray,
        confidences: np.ndarray,
        labels: np.ndarray,
        threshold: float | np.ndarray,
        ignore_below: float | None = None,
        polygons: np.ndarray | None = None,
    ) -> PseudoLabels:
        """Detections with confidence >= ``threshold`` as positives and, with ``ignore_below``,
        those in ``[ignore_below, threshold)`` as ignore regions; the rest dropped. ``threshold``
        is one number or one per detection (class-wise thresholds). Arrays keep their dtypes."""
        conf = np.asarray(confidences)
        if isinstance(threshold, np.ndarray):
            low = threshold if ignore_below is None else np.minimum(threshold, ignore_below)
        else:
            low = threshold if ignore_below is None else min(ignore_below, threshold)
        keep = conf >= low
        above = threshold[keep] if isinstance(threshold, np.ndarray) else threshold
        out = cls(
            boxes=torch.from_numpy(np.asarray(boxes)[keep].copy()),
            labels=torch.from_numpy(np.asarray(labels)[keep].copy()),
            scores=torch.from_numpy(conf[keep].copy()),
            ignore=torch.from_numpy(conf[keep] < above),
        )
        if polygons is not None:
            out["polygons"] = torch.from_numpy(np.asarray(polygons)[keep].copy())
        return out

    @classmethod
    def from_prediction(
        cls, pred, threshold: float, ignore_below: float | None = None, confidence: str = "cls"
    ) -> PseudoLabels:
        """``from_detections`` on a detector's ``Prediction`` (``detection_confidence`` thresholded)."""
        conf = detection_confidence(pred, confidence)
        return cls.from_detections(pred.boxes, conf, pred.labels, threshold, ignore_below, pred.polygons)


@dataclass
class Step:
    """What the hooks see in one post-burn-in iteration.

    ``weak``: the weak views of the unlabelled images (the teacher's input); ``pseudo``: the
    teacher's targets on them; ``strong``: the strong views (the student's unlabelled input),
    ``strong_targets`` the pseudo-labels carried into their geometry; ``batch``/``targets``: the
    labelled batch; ``student_out``: the detector's ``last_outputs`` of the unlabelled forward pass
    (features, flattened logits and the assignment, see ``FCOS.losses``) for extra losses that reuse
    it; ``labelled_out`` the same of the labelled forward pass.
    """

    it: int
    iterations: int
    batch: Batch
    targets: list[dict]
    weak: list[torch.Tensor]
    pseudo: list[dict]
    strong: list[torch.Tensor]
    strong_targets: list[dict]
    ubatch: Batch
    student_out: dict | None = None
    labelled_out: dict | None = None


class TeacherStudentMethod(Method):
    """A semi-supervised method on the shared mean-teacher loop (see the module docstring)."""

    paradigm = "ssl"
    default_strategy = "random"
    hparams: ClassVar[dict[str, Any]] = {
        "threshold": 0.5,
        "confidence": "cls",
        "unsup_weight": 4.0,
        "burn_in": 0.5,
        "rampup": 0.25,
        "unlabelled_ratio": 1.0,
        "ema_time_constant": 0.33,
        "cls_only": True,
        "ignore_below": 0.3,
        "labelled_view": "weak",
        "freeze_bn_on_unlabelled": True,
        "vertical_flip": True,
    }

    # per-round state, set by ``start`` on the copy ``loop`` returns
    ctx: TrainContext
    cfg: TeacherStudentConfig
    stats: dict[str, Any]
    teacher: torch.nn.Module | None

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.check_hparams()

    def check_hparams(self) -> None:
        """Raise ``SpecError`` on invalid hyper-parameter values (called by the constructor); the
        base builds the configuration, which checks its own fields."""
        self.config()

    def config(self) -> TeacherStudentConfig:
        """The loop's configuration: the hyper-parameters that name one of its fields (a method may
        derive further fields with ``dataclasses.replace(super().config(), ...)``)."""
        return TeacherStudentConfig(**{k: v for k, v in self.hp.items() if k in CONFIG_FIELDS})

    # ------------------------------------------------------------------ the round
    def loop(self, ctx: TrainContext) -> Self:
        """A copy of this method started on ``ctx``: it holds one round's state (teacher, views,
        statistics), so nothing carries over from one round to the next."""
        run = copy.copy(self)
        run.start(ctx)
        return run

    def train(self, ctx: TrainContext) -> torch.nn.Module:
        model, images, targets, unlabelled = ctx.start()
        run = self.loop(ctx)
        self.last_stats = run.stats
        return run.fit(model, images, targets, unlabelled)

    # ------------------------------------------------------------------ hooks (override these)
    def start(self, ctx: TrainContext) -> None:
        """Set up one round's state from ``ctx`` (extend with ``super().start(ctx)`` first: the
        views draw their seeds from the round's generator in this order)."""
        self.ctx = ctx
        self.cfg = cfg = self.config()
        self.schedule, self.gen, self.device, self.progress = ctx.schedule, ctx.gen, ctx.device, ctx.progress
        self.stats = {}
        self.weak = weak_view(self.gen, cfg.vertical_flip, cfg.scale_jitter)
        self.strong = strong_view(self.gen)
        self.teacher = None
        self.ema: ModelEMA | None = None
        self.keep = 1.0
        self.rotate = False  # set by ``fit``: 90-degree rotations for oriented detectors

    def setup(
        self,
        model: torch.nn.Module,
        images: list[torch.Tensor],
        targets: list[dict],
        unlabelled: list[torch.Tensor],
    ) -> None:
        """Called once before the first iteration (e.g. to build banks or extra heads)."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters besides the detector's (e.g. a projection head); optimised too."""
        return []

    def init_teacher(self, student: torch.nn.Module) -> torch.nn.Module:
        teacher = copy.deepcopy(student)
        if self.ema is not None:
            self.ema.copy_to(teacher)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def update_teacher(self, student: torch.nn.Module, it: int) -> None:
        """``teacher = keep * teacher + (1 - keep) * student`` (``ema_update``)."""
        ema_update(self.teacher.state_dict(), student.state_dict(), self.keep)

    def teacher_predictions(self, weak: list[torch.Tensor]) -> list:
        """The teacher's ``Prediction`` per weak view (one batch)."""
        return predict_all(self.teacher, weak, batch_size=len(weak), device=self.device)

    def make_pseudo_labels(self, weak: list[torch.Tensor], it: int) -> list[dict]:
        cfg = self.cfg
        return [
            PseudoLabels.from_prediction(p, cfg.threshold, cfg.ignore_below, cfg.confidence)
            for p in self.teacher_predictions(weak)
        ]

    def make_strong(
        self, weak: list[torch.Tensor], pseudo: list[dict]
    ) -> tuple[list[torch.Tensor], list[dict]]:
        views = [
            apply_view(self.strong, im, {**pl, "cls_only": self.cfg.cls_only})
            for im, pl in zip(weak, pseudo, strict=True)
        ]
        return [v[0] for v in views], [v[1] for v in views]

    def unsup_location_weights(self, step: Step) -> torch.Tensor | None:
        """Per-location (B, L) weights of the unlabelled loss, or None (all 1): by default the
        teacher's background probability with ``soft_background``."""
        return self.background_weights(step) if self.cfg.soft_background else None

    def unsup_loss(
        self, student: torch.nn.Module, step: Step
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's loss on the strong views (default: focal classification loss only, with the
        labelled batch's number of positives as the lower bound of its normaliser)."""
        cfg, b_u = self.cfg, len(step.strong)
        norm = getattr(student, "last_num_pos", 1.0) * b_u / self.schedule.batch_size
        weights = self.unsup_location_weights(step)
        with frozen_bn_statistics(student) if cfg.freeze_bn_on_unlabelled else nullcontext():
            ulosses = student.losses(
                step.ubatch,
                step.strong_targets,
                weights=weights,
                min_normalizer=norm if cfg.normalize_by_labelled else 1.0,
            )
        return (ulosses["cls"] if cfg.cls_only else sum(ulosses.values())), ulosses

    @torch.no_grad()
    def background_weights(self, step: Step) -> torch.Tensor:
        """Per location of the strong views (B, L): 1 at the pseudo-labels' positive locations, else
        the teacher's background probability there, ``1 - max_c sigmoid(logit_c)`` (``soft_background``)."""
        self.teacher.losses(step.ubatch, step.strong_targets)
        out = self.teacher.last_outputs
        bg = 1.0 - torch.sigmoid(out["cls"]).amax(2)
        return torch.where(out["labels"].to(bg.device) >= 0, torch.ones_like(bg), bg)

    def extra_losses(self, student: torch.nn.Module, step: Step) -> dict[str, torch.Tensor]:
        """Further weighted loss terms of a method (already multiplied by their weights)."""
        return {}

    def loss_weights(self, it: int) -> tuple[float, float]:
        """(labelled weight, unlabelled weight) at iteration ``it``."""
        return 1.0, self.cfg.unsup_weight_at(it, self.schedule.iterations)

    def final_model(self, student: torch.nn.Module) -> torch.nn.Module:
        student_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
        student.load_state_dict(self.teacher.state_dict())
        student.committee_states = [student_state]  # the student, for committee-based acquisition
        return student

    # ------------------------------------------------------------------ the loop
    def labelled_batch(
        self, images: list[torch.Tensor], targets: list[dict]
    ) -> tuple[list[torch.Tensor], list[dict]]:
        idx = torch.randint(len(images), (self.schedule.batch_size,), generator=self.gen).tolist()
        if self.cfg.labelled_view == "weak":
            views = [apply_view(self.weak, images[i], targets[i]) for i in idx]
            return [v[0] for v in views], [v[1] for v in views]
        return flip_batch(
            [images[i] for i in idx], [targets[i] for i in idx], self.gen, self.cfg.vertical_flip, self.rotate
        )

    def fit(
        self,
        model: torch.nn.Module,
        images: list[torch.Tensor],
        targets: list[dict],
        unlabelled: list[torch.Tensor],
    ) -> torch.nn.Module:
        """Train ``model`` for the round (see the module docstring); fills ``self.stats`` with the
        mean pseudo-labels per unlabelled image, the keep rate and the burn-in length."""
        if not images:
            raise ValueError("no labelled images to train on")
        cfg, schedule, gen, device = self.cfg, self.schedule, self.gen, self.device
        model.to(device).train()
        turn = getattr(getattr(model, "cfg", None), "rotate90", True)
        if getattr(model, "oriented", False) and turn and not self.rotate:
            # oriented detectors see aerial views at every multiple of 90 degrees (weak views too)
            self.rotate = True
            self.weak = weak_view(gen, cfg.vertical_flip, cfg.scale_jitter, rotate90=True)
        self.setup(model, images, targets, unlabelled)
        opt = make_optimizer(model, schedule)
        extra = [p for p in self.extra_parameters() if p.requires_grad]
        if extra:
            opt.add_param_group({"params": extra, "weight_decay": schedule.weight_decay})
        self.ema = ModelEMA(model, schedule.ema_decay) if schedule.ema_decay > 0 else None
        T = schedule.iterations
        start = cfg.burn_in_iters(T) if unlabelled else T
        self.keep = cfg.keep_rate(T)
        n_u = len(unlabelled)
        b_u = max(1, round(schedule.batch_size * cfg.unlabelled_ratio))
        n_pseudo, n_unl_seen = 0, 0
        for it in range(T):
            for g in opt.param_groups:
                g["lr"] = schedule.lr_at(it)
            if it == start and self.teacher is None:
                self.teacher = self.init_teacher(model)
            ims, tg = self.labelled_batch(images, targets)
            batch = make_batch(ims).to(device)
            losses = model.losses(batch, tg)
            labelled_out = getattr(model, "last_outputs", None)
            l_sup = sum(losses.values())
            logs = {k: float(v.detach()) for k, v in losses.items()}
            loss = l_sup
            if self.teacher is not None:
                uidx = torch.randint(n_u, (b_u,), generator=gen).tolist()
                no_boxes = torch.zeros((0, 4))
                weak = [self.weak(unlabelled[i], no_boxes)[0] for i in uidx]
                pls = self.make_pseudo_labels(weak, it)
                n_pseudo += sum(int((~p["ignore"]).sum()) for p in pls)
                n_unl_seen += len(pls)
                strong, s_targets = self.make_strong(weak, pls)
                ubatch = make_batch(strong).to(device)
                step = Step(it, T, batch, tg, weak, pls, strong, s_targets, ubatch, labelled_out=labelled_out)
                u_loss, _ = self.unsup_loss(model, step)
                step.student_out = getattr(model, "last_outputs", None)
                w_l, w_u = self.loss_weights(it)
                loss = w_l * l_sup + w_u * u_loss
                logs["unsup"] = float(u_loss.detach())
                for k, v in self.extra_losses(model, step).items():
                    loss = loss + v
                    logs[k] = float(v.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + extra, schedule.grad_clip)
            opt.step()
            if self.teacher is not None:
                self.update_teacher(model, it)
            elif self.ema is not None:
                self.ema.update(model)
            if self.progress is not None and (it % 10 == 9 or it == T - 1):
                self.progress(it + 1, T, logs)
        self.stats["pseudo_per_image"] = n_pseudo / max(1, n_unl_seen)
        self.stats["keep_rate"] = self.keep
        self.stats["burn_in_iters"] = start
        if self.teacher is None:  # no unlabelled images (or burn-in covers the schedule): supervised
            if self.ema is not None:
                self.ema.copy_to(model)
            model.eval()
            return model
        out = self.final_model(model)
        out.eval()
        return out
