"""Why ``mean_teacher`` does not beat ``supervised`` at 25 labelled DOTA patches.

Every variant is trained on the default matrix's first round (25 patches, the same initial set per
seed as the matrix) and scored on a **validation** part of the pool: whole synthetic scenes, a fixed
quarter chosen by a hash of the scene id, never labelled and never used as unlabelled data. Choices
are made on validation only; the test split is reported beside it. Usage::

    python docs/experiments/mean_teacher_holdout.py run SEED TRAINER >> results.jsonl
    python docs/experiments/mean_teacher_holdout.py summary results.jsonl

``TRAINER`` is any registered trainer (``supervised``, ``mean_teacher[unsup_weight=1.0]``, ...) or
one of the two variants defined here, which are experiments and not part of the suite:

- ``mt_dense[fraction=F,box=B]``: Dense-Teacher-style dense soft pseudo-labels (Zhou et al., ECCV
  2022): the student's strong view keeps the weak view's geometry; at the top ``F`` of locations by
  the teacher's maximum class probability the student's classifier is trained towards the teacher's
  probabilities with a quality-focal (soft BCE) loss, elsewhere towards 0; with ``B`` also GIoU to
  the teacher's boxes and BCE to its centre-ness there.
- ``mt_posonly[bg_w=W]``: the hard pseudo-labels of ``mean_teacher``, but background locations of
  the unlabelled images weigh ``W`` (0: unlabelled images teach objects only, never background).

One run prints one JSON line: validation and test metrics (with per-class AP50), the labelled
class counts and the final model's pseudo-label precision and recall on 200 unlabelled patches.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import time
from contextlib import nullcontext

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.ops import generalized_box_iou_loss  # noqa: E402

from baselines.base import METHODS, TrainContext, register_method  # noqa: E402
from baselines.mean_teacher import MeanTeacher, pseudo_label_quality  # noqa: E402
from baselines.teacher_student import frozen_bn_statistics  # noqa: E402
from benchmark.augment import strong_view  # noqa: E402
from benchmark.data import load_domain_data  # noqa: E402
from benchmark.detectors.base import make_batch  # noqa: E402
from benchmark.evaluation import evaluate_domain  # noqa: E402
from benchmark.protocol import _new_detector_factory, initial_ids  # noqa: E402
from benchmark.spec import load_matrix, parse_trainer  # noqa: E402
from benchmark.training import predict_all  # noqa: E402
from domains.base import DomainDataset  # noqa: E402


def _empty(n: int) -> list[dict]:
    return [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)} for _ in range(n)]


@register_method("mt_dense")
class MTDense(MeanTeacher):
    """Experiment: Dense-Teacher-style soft pseudo-labels (see the module docstring)."""

    hparams = {**MeanTeacher.hparams, "fraction": 0.05, "box": True}

    def start(self, ctx: TrainContext) -> None:
        super().start(ctx)
        self.strong = strong_view(self.gen, geometric=False)  # same geometry as the weak view
        self.fraction, self.box, self._t = self.hp["fraction"], self.hp["box"], {}

    @torch.no_grad()
    def make_pseudo_labels(self, weak, it):
        self.teacher.losses(make_batch(weak).to(self.device), _empty(len(weak)))
        o = self.teacher.last_outputs
        self._t = {"cls": torch.sigmoid(o["cls"]), "ctr": torch.sigmoid(o["ctr"]), "reg": o["reg"]}
        return [
            {**e, "scores": torch.zeros(0), "ignore": torch.zeros(0, dtype=torch.bool)}
            for e in _empty(len(weak))
        ]

    def unsup_loss(self, student, step):
        with frozen_bn_statistics(student) if self.cfg.freeze_bn_on_unlabelled else nullcontext():
            student.losses(step.ubatch, _empty(len(step.strong)))
        o, t_cls = student.last_outputs, self._t["cls"]
        B, L, _ = t_cls.shape
        score = t_cls.amax(2)
        mask = torch.zeros((B, L), dtype=torch.bool, device=score.device)
        mask.scatter_(1, score.topk(max(1, round(self.fraction * L)), dim=1).indices, True)
        target = torch.where(mask[..., None], t_cls, torch.zeros_like(t_cls))
        s = o["cls"]
        qfl = F.binary_cross_entropy_with_logits(s, target, reduction="none") * (
            torch.sigmoid(s) - target
        ).pow(2)
        out = {"cls": qfl.sum() / float(mask.sum())}
        if self.box:
            loc = o["locations"].to(s.device)[None].expand(B, L, 2)[mask]
            sr, tr, w = o["reg"][mask], self._t["reg"][mask], score[mask]
            sb = torch.cat([loc - sr[:, :2], loc + sr[:, 2:]], 1)
            tb = torch.cat([loc - tr[:, :2], loc + tr[:, 2:]], 1)
            giou = generalized_box_iou_loss(sb, tb, reduction="none")
            out["box"] = (giou * w).sum() / max(1e-6, float(w.sum()))
            out["ctr"] = F.binary_cross_entropy_with_logits(o["ctr"][mask], self._t["ctr"][mask])
        return sum(out.values()), out


@register_method("mt_posonly")
class MTPosOnly(MeanTeacher):
    """Experiment: no background loss from unlabelled images (see the module docstring)."""

    hparams = {**MeanTeacher.hparams, "bg_w": 0.0}

    def unsup_loss(self, student, step):
        norm = getattr(student, "last_num_pos", 1.0) * len(step.strong) / self.schedule.batch_size
        with frozen_bn_statistics(student):  # a first pass for the assignment (positives vs background)
            student.losses(step.ubatch, step.strong_targets, min_normalizer=norm)
        labels = student.last_outputs["labels"]
        w = torch.where(labels >= 0, 1.0, float(self.hp["bg_w"])).float()
        with frozen_bn_statistics(student):
            ul = student.losses(step.ubatch, step.strong_targets, weights=w, min_normalizer=norm)
        return ul["cls"], ul


def _scene(s) -> str:
    return str(s.meta.get("scene", s.meta.get("group", s.id)))


def run(seed: int, trainer: str, domain: str = "dota") -> dict:
    torch.set_num_threads(1)
    cell = load_matrix(
        "default", domains=[domain], methods=["supervised+random"], budgets=[25], seeds=[seed]
    ).cells[0]
    data = load_domain_data(cell.domain, progress=False)
    ids = initial_ids(data.pool, 25, "images", seed)
    lab = [data.pool.by_id(i) for i in ids]
    lab_scenes = {_scene(s) for s in lab}
    rest = [s for s in data.pool if s.id not in set(ids)]

    def held_out(s) -> bool:
        return (
            int(hashlib.sha256(_scene(s).encode()).hexdigest(), 16) % 4 == 0 and _scene(s) not in lab_scenes
        )

    val = [s for s in rest if held_out(s)]
    unl = [s for s in rest if not held_out(s)]
    tseed = cell.seeds.train(0)
    base, opts = parse_trainer(trainer)
    method = METHODS.get(base)(**opts)
    new = _new_detector_factory(cell, len(data.domain.classes))
    ctx = TrainContext(
        lab, unl, data.images, data.domain.classes, new, cell.schedule,
        torch.Generator().manual_seed(tseed), np.random.default_rng(tseed),
    )  # fmt: skip
    t0 = time.time()
    model = method.train(ctx)
    out: dict = {"seed": seed, "trainer": trainer, "n_val": len(val), "n_unl": len(unl)}
    out["train_s"] = round(time.time() - t0, 1)
    counts = dict(zip(data.domain.classes, (int(c) for c in data.pool.class_counts()), strict=True))
    vds = DomainDataset(data.pool.domain, "val", data.domain.classes, val, options=data.pool.options)
    if getattr(data.pool, "scenes", None) is not None:
        keep = {_scene(s) for s in val}
        vds.scenes = [sc for sc in data.pool.scenes if sc.meta.get("scene", sc.id) in keep]
    for name, ds in (("val", vds), ("test", data.test)):
        met = evaluate_domain(
            data.domain, ds, predict_all(model, data.images.many(ds.ids)), class_counts=counts
        )
        out[name] = {k: round(v, 4) for k, v in met["metrics"].items() if isinstance(v, float)}
        out[name + "_per_class_AP50"] = {
            c: round(float(v.get("AP50", -1)), 3) for c, v in met["per_class"].items()
        }
    out["labelled_counts"] = dict(
        collections.Counter(data.domain.classes[int(c)] for s in lab for c in s.labels)
    )
    sub = unl[:200]
    ims = data.images.many([s.id for s in sub])
    out["pseudo_quality"] = {str(th): pseudo_label_quality(model, sub, ims, th) for th in (0.3, 0.5)}
    return out


def summary(path: str, metric: str = "mAP50") -> None:
    from scipy import stats

    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    sup = {r["seed"]: r for r in rows if r["trainer"] == "supervised"}
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        if r["trainer"] != "supervised" and r["seed"] in sup:
            by.setdefault(r["trainer"], {})[r["seed"]] = r  # the last line of a (trainer, seed) wins

    def ci(d: list[float]) -> str:
        a = np.array(d)
        if len(a) < 2:
            return f"{a.mean():+.3f}"
        hw = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
        return f"{a.mean():+.3f} [{a.mean() - hw:+.3f}, {a.mean() + hw:+.3f}]"

    print(f"| trainer | seeds | Δ{metric} validation [95 % CI] | Δ{metric} test [95 % CI] |")
    print("|---|---|---|---|")
    for tr, rs in by.items():
        seeds = sorted(rs)
        dv = [rs[s]["val"][metric] - sup[s]["val"][metric] for s in seeds]
        dt = [rs[s]["test"][metric] - sup[s]["test"][metric] for s in seeds]
        print(f"| `{tr}` | {len(seeds)} | {ci(dv)} | {ci(dt)} |")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        print(json.dumps(run(int(sys.argv[2]), sys.argv[3], os.environ.get("DOMAIN", "dota"))), flush=True)
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)
