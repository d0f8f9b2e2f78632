"""Shared training pieces: the fixed schedule, the optimiser, box-aware flips and the supervised loop.

Every method of a matrix trains with the same ``Schedule`` (iterations, batch size, learning rate):
iteration-based, never wall-clock, so results do not depend on machine speed. All randomness comes
from the ``torch.Generator`` the protocol passes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch

from benchmark.detectors.base import Batch, make_batch
from domains.base import Sample, SpecError


@dataclass(frozen=True)
class Schedule:
    """The fixed training schedule of a matrix (same for every method)."""

    iterations: int = 300
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    grad_clip: float = 10.0
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.0  # > 0: evaluate an exponential moving average of the weights

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or not self.lr > 0:
            raise SpecError(
                f"invalid schedule {asdict(self)}: iterations, batch_size and lr must be positive"
            )

    def lr_at(self, it: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
        if it < self.warmup:
            return self.lr * (it + 1) / self.warmup
        t = (it - self.warmup) / max(1, self.iterations - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": schedule.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=schedule.lr,
    )


def sample_targets(s: Sample) -> dict[str, torch.Tensor]:
    """Training targets of a sample: boxes, labels and ignore flags (ignore regions stay ignored),
    and the objects' ``polygons`` (N, 8) where the sample has them (oriented domains)."""
    out = {
        "boxes": torch.from_numpy(s.boxes.copy()),
        "labels": torch.from_numpy(s.labels.copy()),
        "ignore": torch.from_numpy(np.asarray(s.ignore).copy()),
    }
    if s.polygons is not None:
        out["polygons"] = torch.from_numpy(np.asarray(s.polygons, np.float32).copy())
    return out


def rotate90(
    image: torch.Tensor, boxes: torch.Tensor, polygons: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rotate a uint8 (3, H, W) image by ``k`` x 90 degrees (counter-clockwise on screen) with its
    xyxy boxes and (N, 8) polygons: one step maps a point (x, y) to (y, W - x)."""
    for _ in range(k % 4):
        w = image.shape[2]
        image = torch.rot90(image, 1, dims=(1, 2))
        boxes = torch.stack([boxes[:, 1], w - boxes[:, 2], boxes[:, 3], w - boxes[:, 0]], 1)
        if polygons is not None:
            p = polygons.reshape(-1, 4, 2)
            polygons = torch.stack([p[..., 1], w - p[..., 0]], -1).reshape(-1, 8)
    return image, boxes, polygons


def flip_batch(
    images: list[torch.Tensor],
    targets: list[dict],
    gen: torch.Generator,
    vertical: bool = True,
    rotate: bool = False,
) -> tuple[list[torch.Tensor], list[dict]]:
    """Random horizontal (and vertical) flips of uint8 (3, H, W) images with their boxes (and
    ``polygons`` where the targets have them); with ``rotate`` also a random rotation by a multiple
    of 90 degrees (drawn after the flips, so ``rotate=False`` draws exactly what it always drew)."""
    out_i, out_t = [], []
    flips = torch.rand((len(images), 2), generator=gen) < 0.5
    turns = torch.randint(4, (len(images),), generator=gen).tolist() if rotate else [0] * len(images)
    for im, t, (fh, fv), k in zip(images, targets, flips.tolist(), turns, strict=True):
        h, w = im.shape[1], im.shape[2]
        b = t["boxes"].clone()
        poly = t.get("polygons")
        poly = poly.clone().reshape(-1, 8) if poly is not None else None
        if fh:
            im = im.flip(2)
            b[:, [0, 2]] = w - b[:, [2, 0]]
            if poly is not None:
                poly[:, 0::2] = w - poly[:, 0::2]
        if vertical and fv:
            im = im.flip(1)
            b[:, [1, 3]] = h - b[:, [3, 1]]
            if poly is not None:
                poly[:, 1::2] = h - poly[:, 1::2]
        if k:
            im, b, poly = rotate90(im, b, poly, k)
        out_i.append(im)
        out_t.append({**t, "boxes": b} if poly is None else {**t, "boxes": b, "polygons": poly})
    return out_i, out_t


ProgressFn = Callable[[int, int, dict[str, float]], None]


def train_supervised(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    schedule: Schedule,
    gen: torch.Generator,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    vertical_flip: bool = True,
) -> torch.nn.Module:
    """Train ``model`` on labelled images for ``schedule.iterations`` steps (batches drawn with
    replacement by ``gen``). ``progress(it, total, losses)`` is called every 10 iterations."""
    if not images:
        raise ValueError("no labelled images to train on")
    model.to(device).train()
    opt = make_optimizer(model, schedule)
    ema = ModelEMA(model, schedule.ema_decay) if schedule.ema_decay > 0 else None
    n = len(images)
    rotate = bool(getattr(model, "oriented", False)) and bool(
        getattr(getattr(model, "cfg", None), "rotate90", True)
    )
    for it in range(schedule.iterations):
        for g in opt.param_groups:
            g["lr"] = schedule.lr_at(it)
        idx = torch.randint(n, (schedule.batch_size,), generator=gen).tolist()
        ims, tg = flip_batch([images[i] for i in idx], [targets[i] for i in idx], gen, vertical_flip, rotate)
        batch: Batch = make_batch(ims).to(device)
        losses = model.losses(batch, tg)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        if progress is not None and (it % 10 == 9 or it == schedule.iterations - 1):
            progress(it + 1, schedule.iterations, {k: float(v) for k, v in losses.items()})
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return model


class ModelEMA:
    """Exponential moving average of a model's parameters and buffers (BatchNorm statistics
    included), with the usual warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early
    averages are not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


@torch.no_grad()
def predict_all(
    model, images: list[torch.Tensor], batch_size: int = 32, device: str = "cpu", dense: bool = False
):
    """Predictions for a list of uint8 (3, H, W) images, in order. Images are batched by size."""
    model.eval()
    order = sorted(range(len(images)), key=lambda i: (images[i].shape[1], images[i].shape[2]))
    out = [None] * len(images)
    for k in range(0, len(order), batch_size):
        chunk = order[k : k + batch_size]
        preds = model.predict(make_batch([images[i] for i in chunk]).to(device), dense=dense)
        for i, p in zip(chunk, preds, strict=True):
            out[i] = p
    return out


# ------------------------------------------------------------------------------ teacher-student


@dataclass(frozen=True)
class TeacherStudentConfig:
    """Hyper-parameters of the shared teacher-student loop (``train_teacher_student``).

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
    scale_jitter: tuple[float, float] = (0.8, 1.25)
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


@torch.no_grad()
def update_teacher(teacher: torch.nn.Module, student: torch.nn.Module, keep_rate: float) -> None:
    """``teacher = keep_rate * teacher + (1 - keep_rate) * student`` on parameters and float buffers
    (BatchNorm statistics included); integer buffers are copied."""
    t_state = teacher.state_dict()
    for k, v in student.state_dict().items():
        t = t_state[k]
        if v.dtype.is_floating_point:
            t.mul_(keep_rate).add_(v.detach(), alpha=1.0 - keep_rate)
        else:
            t.copy_(v)


def detection_confidence(pred, kind: str = "cls") -> np.ndarray:
    """Per detection: its class probability (``"cls"``) or its detection score (``"score"``)."""
    if kind == "score":
        return np.asarray(pred.scores, dtype=np.float32)
    if kind != "cls":
        raise SpecError(f"confidence must be 'cls' or 'score', got {kind!r}")
    if len(pred.labels) == 0:
        return np.zeros(0, np.float32)
    return pred.class_probs[np.arange(len(pred.labels)), pred.labels].astype(np.float32)


def pseudo_labels(
    teacher: torch.nn.Module,
    images: list[torch.Tensor],
    threshold: float,
    device: str = "cpu",
    ignore_below: float | None = None,
    confidence: str = "cls",
) -> list[dict[str, torch.Tensor]]:
    """Teacher detections scoring at least ``threshold`` as targets (boxes, labels, scores, ignore);
    with ``ignore_below``, detections scoring in ``[ignore_below, threshold)`` come as ignore regions.
    An oriented teacher's pseudo-labels also carry its ``polygons``."""
    preds = predict_all(teacher, images, batch_size=len(images), device=device)
    out = []
    low = threshold if ignore_below is None else min(ignore_below, threshold)
    for p in preds:
        conf = detection_confidence(p, confidence)
        keep = conf >= low
        pl = {
            "boxes": torch.from_numpy(p.boxes[keep].copy()),
            "labels": torch.from_numpy(p.labels[keep].copy()),
            "scores": torch.from_numpy(conf[keep].copy()),
            "ignore": torch.from_numpy(conf[keep] < threshold),
        }
        if p.polygons is not None:
            pl["polygons"] = torch.from_numpy(p.polygons[keep].copy())
        out.append(pl)
    return out


def _apply_view(view, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """A view of ``image`` with ``target`` carried into it: boxes (and ``polygons``) mapped, every
    other per-object tensor kept for the surviving objects."""
    polys = target.get("polygons")
    im, boxes, kept, new_polys = view.with_polygons(image, target["boxes"], polys)
    skip = ("boxes", "polygons")
    out = {k: v[kept] for k, v in target.items() if isinstance(v, torch.Tensor) and k not in skip}
    out["boxes"] = boxes
    if new_polys is not None:
        out["polygons"] = new_polys
    return im, {**{k: v for k, v in target.items() if not isinstance(v, torch.Tensor)}, **out}


@dataclass
class Step:
    """What the hooks of ``TeacherStudent`` see in one post-burn-in iteration.

    ``weak``: the weak views of the unlabelled images (the teacher's input); ``pseudo``: the
    teacher's targets on them; ``strong``: the strong views (the student's unlabelled input),
    ``strong_targets`` the pseudo-labels carried into their geometry; ``batch``/``targets``: the
    labelled batch; ``student_out``: the detector's ``last_outputs`` of the unlabelled forward pass
    (features, flattened logits and the assignment, see ``FCOS.losses``) for extra losses that reuse it.
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


class TeacherStudent:
    """The shared mean-teacher loop (Unbiased-Teacher style) with hooks for the methods built on it.

    ``fit`` runs the matrix's fixed schedule: iterations ``[0, burn_in)`` are supervised on the
    labelled images (``labelled_view``; the same loss, optimiser and learning-rate schedule as
    ``train_supervised``). At the end of burn-in ``init_teacher`` makes the teacher (a copy of the
    student, of its EMA when the schedule has ``ema_decay``). Then each iteration draws
    ``batch_size`` labelled and ``round(batch_size * unlabelled_ratio)`` unlabelled images; the
    teacher labels a weak view of each unlabelled image (``make_pseudo_labels``), the strong view is
    made from the weak one with the pseudo boxes carried into its geometry (``make_strong``), and the
    student's loss is ``w_l(t) L_sup + w_u(t) L_unsup + sum(extra_losses)`` (``loss_weights``,
    ``unsup_loss``, ``extra_losses``). After each step ``update_teacher`` (EMA with the scaled keep
    rate). The returned model is ``final_model`` (the teacher, in eval mode, with the student kept in
    ``committee_states`` for committee-based acquisition). Methods subclass and override hooks;
    every random draw comes from ``self.gen``.
    """

    def __init__(
        self,
        cfg: TeacherStudentConfig,
        schedule: Schedule,
        gen: torch.Generator,
        device: str = "cpu",
        progress: ProgressFn | None = None,
        stats: dict | None = None,
    ) -> None:
        from benchmark.augment import strong_view, weak_view

        self.cfg, self.schedule, self.gen, self.device = cfg, schedule, gen, device
        self.progress = progress
        self.stats = stats if stats is not None else {}
        self.weak = weak_view(gen, cfg.vertical_flip, cfg.scale_jitter)
        self.strong = strong_view(gen)
        self.teacher: torch.nn.Module | None = None
        self.ema: ModelEMA | None = None
        self.keep = 1.0
        self.rotate = False  # set by ``fit``: 90-degree rotations for oriented detectors

    # ------------------------------------------------------------------ hooks (override these)
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
        import copy

        teacher = copy.deepcopy(student)
        if self.ema is not None:
            self.ema.copy_to(teacher)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def update_teacher(self, student: torch.nn.Module, it: int) -> None:
        update_teacher(self.teacher, student, self.keep)

    def make_pseudo_labels(self, weak: list[torch.Tensor], it: int) -> list[dict]:
        cfg = self.cfg
        return pseudo_labels(self.teacher, weak, cfg.threshold, self.device, cfg.ignore_below, cfg.confidence)

    def make_strong(
        self, weak: list[torch.Tensor], pseudo: list[dict]
    ) -> tuple[list[torch.Tensor], list[dict]]:
        views = [
            _apply_view(self.strong, im, {**pl, "cls_only": self.cfg.cls_only})
            for im, pl in zip(weak, pseudo, strict=True)
        ]
        return [v[0] for v in views], [v[1] for v in views]

    def unsup_loss(
        self, student: torch.nn.Module, step: Step
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's loss on the strong views (default: focal classification loss only, with the
        labelled batch's number of positives as the lower bound of its normaliser)."""
        cfg, b_u = self.cfg, len(step.strong)
        norm = getattr(student, "last_num_pos", 1.0) * b_u / self.schedule.batch_size
        weights = self.background_weights(step) if cfg.soft_background else None
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
            views = [_apply_view(self.weak, images[i], targets[i]) for i in idx]
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
        if not images:
            raise ValueError("no labelled images to train on")
        cfg, schedule, gen, device = self.cfg, self.schedule, self.gen, self.device
        model.to(device).train()
        turn = getattr(getattr(model, "cfg", None), "rotate90", True)
        if getattr(model, "oriented", False) and turn and not self.rotate:
            # oriented detectors see aerial views at every multiple of 90 degrees (weak views too)
            from benchmark.augment import weak_view

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
                step = Step(
                    it,
                    T,
                    batch,
                    tg,
                    weak,
                    pls,
                    strong,
                    s_targets,
                    make_batch(strong).to(device),
                    labelled_out=labelled_out,
                )
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


def train_teacher_student(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    unlabelled: list[torch.Tensor],
    schedule: Schedule,
    cfg: TeacherStudentConfig,
    gen: torch.Generator,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    stats: dict | None = None,
) -> torch.nn.Module:
    """Mean-teacher training with the default hooks (see ``TeacherStudent``). ``stats`` (optional)
    receives the mean pseudo-labels per image, the keep rate and the burn-in length."""
    return TeacherStudent(cfg, schedule, gen, device, progress, stats).fit(model, images, targets, unlabelled)
