"""``labelbudget pretrain``: the shared pretrained start, re-derivable by one seeded command.

Every SSOD and active-learning paper starts its detector from an ImageNet-pretrained backbone; the
CPU benchmark's counterpart is ``tiny_fcos_xs`` pretrained once on a synthetic corpus that shares
no image, no class and no generator with any benchmark domain (``benchmark.pretrain_corpus``:
generic shapes on textured backgrounds, small and dense objects, haze, speckle, blur, dusk). The
checkpoint ships in the package (``benchmark/detectors/weights/tiny_fcos_xs_synthetic.pt``) and a
matrix uses it with ``[detector] start = "pretrained"`` (``benchmark.detectors.start``: every
tensor but the class output layer is loaded, into horizontal and oriented detectors alike).

The run (defaults; every one is a command-line option and lands in the sidecar):
    * corpus: ``--images`` 2,000 images of 128 x 128 px, corpus seed ``--seed`` (0), ten classes;
      another ``HOLDOUT`` (200) images after them are held out to report the detector's COCO AP50;
    * detector: ``--detector tiny_fcos_xs``, horizontal, a 10-class head, initialised under
      ``seed_hash("pretrain", seed, "weights")`` (a private copy of the global RNG);
    * schedule (``benchmark.training.train_supervised``, the supervised baseline's loop): batches of
      ``--batch-size`` 8 drawn with replacement by ``torch.Generator(seed_hash("pretrain", seed,
      "train"))``, random horizontal and vertical flips, AdamW lr ``--lr`` 0.01 with 100 warm-up
      iterations and cosine decay, weight EMA 0.99 (the EMA weights are saved), ``--iterations``;
    * one torch thread (``--threads``): the same command on the same software gives the same
      weights (``tests/benchmark/test_pretrain.py`` re-derives a short run twice).

Output: the checkpoint (floating tensors as float16: 0.37 MB; ``benchmark.detectors.start`` casts
them back) and a sidecar ``<checkpoint>.json``: the command, seed, corpus spec and the sha256 of its
pixels and boxes, schedule, detector, checkpoint sha256, the training-loss curve (mean of each tenth
of the run, every 10th iteration sampled), the held-out AP50, wall time, threads and package
versions.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.detectors import build_detector
from benchmark.detectors.start import SHIPPED, file_sha256, save_start
from benchmark.pretrain_corpus import CLASSES, CorpusImage, CorpusSpec, corpus, corpus_sha256
from benchmark.spec import seed_hash
from benchmark.training import Schedule, predict_all, train_supervised
from domains.base import SpecError

HOLDOUT = 200  # corpus images after the training ones, for the held-out AP50


@dataclass(frozen=True)
class PretrainConfig:
    detector: str = "tiny_fcos_xs"
    seed: int = 0
    n_images: int = 2000
    iterations: int = 6000
    batch_size: int = 8
    lr: float = 0.01
    warmup: int = 100
    ema_decay: float = 0.99
    holdout: int = HOLDOUT

    def __post_init__(self) -> None:
        for k in ("n_images", "iterations", "batch_size"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise SpecError(f"pretrain: {k} must be a positive integer, got {getattr(self, k)!r}")
        if self.holdout < 0 or self.seed < 0:
            raise SpecError("pretrain: seed and holdout must be non-negative")

    def schedule(self) -> Schedule:
        return Schedule(
            iterations=self.iterations,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup=min(self.warmup, max(1, self.iterations // 10)),
            ema_decay=self.ema_decay,
        )

    def corpus_spec(self) -> CorpusSpec:
        return CorpusSpec(seed=self.seed, n_images=self.n_images)


def _tensors(items: list[CorpusImage]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.from_numpy(np.ascontiguousarray(c.image.transpose(2, 0, 1))) for c in items]
    targets = [
        {
            "boxes": torch.from_numpy(c.boxes.copy()),
            "labels": torch.from_numpy(c.labels.copy()),
            "ignore": torch.from_numpy(c.ignore.copy()),
        }
        for c in items
    ]
    return images, targets


def new_model(cfg: PretrainConfig) -> torch.nn.Module:
    """The detector to pretrain, initialised under a private copy of the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_hash("pretrain", cfg.seed, "weights"))
        return build_detector(cfg.detector, len(CLASSES))


def train(cfg: PretrainConfig, progress: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Generate the corpus and pretrain; returns the model (EMA weights) and the run's statistics."""
    from tqdm import tqdm

    spec = cfg.corpus_spec()
    t0 = time.perf_counter()
    items = corpus(spec)
    gen_s = time.perf_counter() - t0
    images, targets = _tensors(items)
    model = new_model(cfg)
    gen = torch.Generator().manual_seed(seed_hash("pretrain", cfg.seed, "train"))
    curve: list[tuple[int, dict[str, float]]] = []
    bar = tqdm(total=cfg.iterations, desc=f"pretraining {cfg.detector}", unit="it", disable=not progress)

    def on_step(it: int, total: int, losses: dict[str, float]) -> None:
        curve.append((it, losses))
        bar.update(it - bar.n)
        bar.set_postfix(loss=f"{sum(losses.values()):.3f}")

    t1 = time.perf_counter()
    with warnings.catch_warnings():  # the loop's progress call reads the loss tensors as floats
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        train_supervised(model, images, targets, cfg.schedule(), gen, "cpu", on_step)
    train_s = time.perf_counter() - t1
    bar.close()
    stats = {
        "corpus_sha256": corpus_sha256(items),
        "n_objects": int(sum(len(c.labels) - int(c.ignore.sum()) for c in items)),
        "generate_s": round(gen_s, 2),
        "train_s": round(train_s, 2),
        "loss_curve": loss_summary(curve, cfg.iterations),
    }
    if cfg.holdout:
        stats["holdout"] = holdout_ap(model, spec, cfg.holdout)
    return model, stats


def loss_summary(
    curve: list[tuple[int, dict[str, float]]], iterations: int, parts: int = 10
) -> dict[str, Any]:
    """Mean total loss (and per component) over each tenth of the run, from the sampled steps."""
    out = []
    for k in range(parts):
        lo, hi = iterations * k / parts, iterations * (k + 1) / parts
        pts = [ls for it, ls in curve if lo < it <= hi]
        if not pts:
            continue
        comp = {name: round(float(np.mean([p[name] for p in pts])), 4) for name in pts[0]}
        out.append(
            {"until": int(hi), "total": round(float(np.mean([sum(p.values()) for p in pts])), 4), **comp}
        )
    return {"sampled_every": 10, "tenths": out}


def holdout_ap(model: torch.nn.Module, spec: CorpusSpec, n: int) -> dict[str, Any]:
    """COCO AP / AP50 of ``model`` on the ``n`` corpus images after the training ones."""
    from benchmark.metrics.coco import evaluate, gt_to_coco, predictions_to_coco
    from domains.base import Sample

    items = corpus(spec, spec.n_images, spec.n_images + n)
    samples = [
        Sample(
            f"holdout_{i}",
            f"holdout_{i}",
            c.image.shape[1],
            c.image.shape[0],
            c.boxes,
            c.labels,
            ignore=c.ignore,
        )
        for i, c in enumerate(items)
    ]
    gt = gt_to_coco(samples, CLASSES)
    ids = [im["id"] for im in gt["images"]]
    preds = predict_all(model, _tensors(items)[0])
    res = evaluate(gt, predictions_to_coco(preds, ids))
    return {"n_images": n, "AP50": round(float(res["AP50"]), 4), "AP": round(float(res["AP"]), 4)}


def pretrain(
    cfg: PretrainConfig, out: Path, command: list[str] | None = None, progress: bool = False
) -> dict[str, Any]:
    """Train and write the checkpoint ``out`` and its sidecar ``out.with_suffix(".json")``; returns the
    sidecar."""
    model, stats = train(cfg, progress)
    meta = {"detector": cfg.detector, "classes": list(CLASSES), "corpus": cfg.corpus_spec().to_dict()}
    save_start(out, model, meta)
    sidecar = {
        "checkpoint": out.name,
        "sha256": file_sha256(out),
        "command": command if command is not None else ["labelbudget", "pretrain", *pretrain_args(cfg)],
        "seed": cfg.seed,
        "detector": cfg.detector,
        "oriented": False,
        "classes": list(CLASSES),
        "corpus": cfg.corpus_spec().to_dict(),
        "config": asdict(cfg),
        "schedule": asdict(cfg.schedule()),
        "stored_as": "float16 (cast back to float32 on loading)",
        "transfer": "every tensor but head.cls (benchmark.detectors.start)",
        "threads": torch.get_num_threads(),
        "packages": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        **stats,
    }
    from benchmark.results import atomic_write_json

    atomic_write_json(out.with_suffix(".json"), sidecar)
    return sidecar


def pretrain_args(cfg: PretrainConfig) -> list[str]:
    """The command-line options that reproduce ``cfg``."""
    return [
        f"--detector={cfg.detector}",
        f"--seed={cfg.seed}",
        f"--images={cfg.n_images}",
        f"--iterations={cfg.iterations}",
        f"--batch-size={cfg.batch_size}",
        f"--lr={cfg.lr}",
    ]


def cmd_pretrain(a: Any) -> int:
    """The ``labelbudget pretrain`` command (``benchmark.cli``)."""
    out = Path(a.out) if a.out else Path("runs") / "pretrain" / SHIPPED["tiny_fcos_xs"].name
    if out.exists() and not a.force:
        raise SpecError(
            f"{out} exists; pass --force to replace it (the shipped start is {SHIPPED['tiny_fcos_xs']})"
        )
    if out.suffix != ".pt":
        raise SpecError(f"--out must name a .pt file, got {out}")
    cfg = PretrainConfig(
        detector=a.detector,
        seed=a.seed,
        n_images=a.images,
        iterations=a.iterations,
        batch_size=a.batch_size,
        lr=a.lr,
    )
    torch.set_num_threads(a.threads)
    command = ["labelbudget", "pretrain", *pretrain_args(cfg), f"--threads={a.threads}"]
    side = pretrain(cfg, out, command, progress=not a.quiet)
    ho = side.get("holdout", {})
    print(
        f"wrote {out} (sha256 {side['sha256'][:16]}..., {out.stat().st_size / 1e6:.2f} MB) and "
        f"{out.with_suffix('.json').name}; train {side['train_s']:.0f} s, final loss "
        f"{side['loss_curve']['tenths'][-1]['total']:.3f}, held-out AP50 {ho.get('AP50', float('nan')):.3f}",
        file=sys.stdout,
    )
    return 0
