"""``labelbudget run --dry-run``: check a matrix against its data and size it, without training.

For every domain of the matrix it
  * checks the data root (exists, has the adapter's layout: ``Domain.verify``) and loads the
    annotations of every split (pool, test and, where the domain has one, source): no pixel is
    decoded (image sizes come from headers);
  * resolves the budgets (fractions such as ``"10%"`` become counts of this pool) and checks they
    fit the pool;
  * prints the runs (cells), rounds, images (or boxes) revealed per round and an estimate of the GPU
    time, and at the end the exact command for each registered launcher.

A problem with a root is one line that names the domain, the dataset and the section of
``docs/data.md`` that describes the layout (exit code 2, like every ``LabelbudgetError``).

How the GPU time is estimated (an estimate, not a promise):
  * training speed measured by ``tests/perf/test_perf_gpu_train.py`` on an H200 with the
    deterministic kernels a ``--device cuda`` run uses (``MEASURED_SPEED``: FCOS R50 7.4 it/s at
    1024 x 1024 px, batch 8; ``tiny_fcos_xs`` 39 it/s at 128 px, batch 8);
  * scaled linearly by batch size and by the mean image area of the domain's pool against the
    measured side squared (the detectors run at the images' native size);
  * one training per round of every run, except that runs sharing a trainer and a seed train
    round 0 once (``runs/<matrix>/_cache/round0``), plus one full-supervision reference per seed
    where the matrix asks for it and one source checkpoint per seed on domains with a source split;
  * per training iteration, a trainer costs ``RELATIVE_COST`` times a supervised one: the ratio of
    the mean training time per round to ``supervised``'s in the committed default-matrix records
    (``leaderboards/*.csv``, CPU, ``tiny_fcos_xs``), averaged over the four domains. A GPU may
    shift these ratios; a trainer without a measured ratio counts as the most expensive one;
  * inference (evaluating the test split every round, scoring the unlabelled pool every round but
    the last) at ``INFERENCE_SPEEDUP`` times the training throughput in images per second: an
    assumption (a forward pass without backward), not a measurement.
"""

from __future__ import annotations

import argparse
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from benchmark.spec import DATA_DOCS, Cell, DomainSetup, Matrix, parse_trainer, resolve_budgets
from domains.base import DatasetNotFoundError, LabelbudgetError, SpecError

# detector: (iterations per second, image side in px, batch size), H200, deterministic kernels
MEASURED_SPEED: dict[str, tuple[float, int, int]] = {
    "fcos_r50": (7.4, 1024, 8),
    "tiny_fcos_xs": (39.0, 128, 8),
}
SPEED_SOURCE = "tests/perf/test_perf_gpu_train.py, NVIDIA H200, deterministic kernels"
# training cost per iteration relative to supervised (committed default-matrix records, CPU)
RELATIVE_COST: dict[str, float] = {
    "supervised": 1.0,
    "mean_teacher": 1.9,
    "eucl": 1.45,
    "dil": 2.5,
    "sar_source_free": 3.2,
    "triple_ema": 1.75,
}
INFERENCE_SPEEDUP = 3.0  # assumed: inference images/s = 3 x training images/s
# extra flags a launcher needs in the printed command (a launcher not listed needs none)
LAUNCHER_FLAGS: dict[str, list[str]] = {"process": ["--workers", "{workers}"]}


def launcher_names() -> list[str]:
    """The registered launchers: ``benchmark.launchers.LAUNCHERS`` where that package exists (a
    registry with ``names()`` or a sequence of names), else ``benchmark.runner.LAUNCHERS``."""
    import importlib

    reg = None
    try:
        reg = getattr(importlib.import_module("benchmark.launchers"), "LAUNCHERS", None)
    except ModuleNotFoundError as exc:
        if exc.name != "benchmark.launchers":  # a registry that exists but fails to import
            raise
    if reg is None:
        from benchmark.runner import LAUNCHERS as reg  # noqa: N811
    names = reg.names() if hasattr(reg, "names") else list(reg)
    return [str(n) for n in names]


def pretrained_weights(detector: str, options: dict) -> Path | None:
    """Where torchvision keeps the ImageNet backbone a ``pretrained = true`` ResNet-50 detector
    loads (``torch.hub`` cache), or None when the detector loads none."""
    from benchmark.detectors import PRESETS

    if not options.get("pretrained") or PRESETS.get(detector, {}).get("backbone") != "resnet50":
        return None
    if options.get("weights"):
        return Path(str(options["weights"])).expanduser()
    from benchmark.detectors import hub_weights_file

    return hub_weights_file()


def rerun_command(a: argparse.Namespace, matrix: str) -> list[str]:
    """The ``labelbudget run`` command of this invocation without ``--dry-run`` and without the
    launcher options (each launcher's are added by ``dry_run``)."""
    cmd = ["labelbudget", "run", matrix]
    for opt in ("domains", "methods", "budgets", "seeds"):
        v = getattr(a, opt, None)
        if v:
            cmd += [f"--{opt}", v]
    for v in getattr(a, "data_root", None) or []:
        cmd += ["--data-root", v]
    for v in getattr(a, "set", None) or []:
        cmd += ["--set", v]
    for opt in ("device", "out", "leaderboards"):
        v = getattr(a, opt, None)
        if v:
            cmd += [f"--{opt}", v]
    return cmd


@dataclass
class DomainPlan:
    setup: DomainSetup
    root: str
    cells: list[Cell]
    n_units: int = 0
    n_samples: int = 0
    n_boxes: int = 0
    n_test: int = 0
    n_source: int | None = None
    mean_px: float = 0.0
    source_px: float = 0.0
    trainings: dict[str, int] = field(default_factory=dict)  # trainer -> trainings
    source_trainings: int = 0
    inference_images: int = 0
    train_h: float | None = None
    infer_h: float | None = None

    @property
    def gpu_h(self) -> float | None:
        if self.train_h is None or self.infer_h is None:
            return None
        return self.train_h + self.infer_h


def _fail(setup: DomainSetup, root: str, exc: Exception) -> LabelbudgetError:
    msg = " ".join(str(exc).split())  # one line
    return DatasetNotFoundError(
        f"{setup.name} ({setup.dataset or setup.name}) at {root}: {msg} (layout: {DATA_DOCS}#{setup.name})"
    )


def _load(setup: DomainSetup, progress: bool) -> tuple[object, str, dict[str, object]]:
    """Verify the root and load every split's annotations; returns (domain, root, splits)."""
    from benchmark.data import resolve_root
    from domains.base import get_domain

    root = str(setup.root) if setup.root is not None else "(built-in synthetic data)"
    if setup.root is not None and not Path(setup.root).is_dir():
        raise DatasetNotFoundError(
            f"{setup.name} ({setup.dataset or setup.name}): data root {setup.root} does not exist or is "
            f"not a folder (layout: {DATA_DOCS}#{setup.name})"
        )
    try:
        domain = get_domain(setup.name, **setup.options)
        path = resolve_root(setup, progress=progress)
        if setup.root is None:
            root = f"{path} (built-in synthetic, {setup.synthetic_size})"
        domain.verify(path)
        splits = {s: domain.load(path, s) for s in domain.splits}
    except (LabelbudgetError, OSError, ValueError) as exc:
        if isinstance(exc, SpecError) and not isinstance(exc, DatasetNotFoundError):
            raise
        raise _fail(setup, root, exc) from None
    return domain, root, splits


def _mean_px(ds) -> float:
    n = len(ds)
    return sum(float(s.width) * float(s.height) for s in ds) / n if n else 0.0


def plan_domain(setup: DomainSetup, cells: list[Cell], progress: bool = False) -> DomainPlan:
    domain, root, splits = _load(setup, progress)
    pool, test = splits["pool"], splits["test"]
    overlap = {s.group for s in pool} & {s.group for s in test}  # as the run itself checks
    if overlap:
        leak = SpecError(f"groups {sorted(overlap)[:5]} appear in both pool and test splits")
        raise _fail(setup, root, leak)
    n_units = len(pool.unit_members())
    n_boxes = pool.unit_boxes(pool.ids)
    setup = resolve_budgets(setup, n_units, n_boxes)
    cap = n_units if setup.budget_unit == "images" else n_boxes
    if setup.budgets[-1] > cap:
        raise SpecError(
            f"{setup.name}: the last budget {setup.budgets[-1]} exceeds the pool's {cap} "
            f"{'labelling units' if setup.budget_unit == 'images' else 'boxes'}"
        )
    plan = DomainPlan(setup, root, cells, n_units, len(pool), n_boxes, len(test))
    plan.mean_px = _mean_px(pool)
    if "source" in splits:
        plan.n_source = len(splits["source"])
        plan.source_px = _mean_px(splits["source"])
    # trainings: round 0 is shared by the runs of one (trainer, seed); a reference run is one round
    round0: set[tuple[str, int]] = set()
    trainings: dict[str, int] = defaultdict(int)
    infer = 0
    per_unit = len(pool) / max(1, n_units)  # samples per labelling unit (patches per scene)
    seeds = set()
    for c in cells:
        seeds.add(c.seed)
        n_rounds = 1 if c.reference else len(setup.budgets)
        for r in range(n_rounds):
            if r == 0 and not c.reference and not c.warm_start:
                if (c.trainer, c.seed) in round0:
                    continue
                round0.add((c.trainer, c.seed))
            trainings[c.trainer] += 1
            infer += len(test)
        if not c.reference:  # the unlabelled pool is scored before every round but the last
            for r in range(n_rounds - 1):
                labelled = setup.budgets[r] * (per_unit if setup.budget_unit == "images" else 1)
                if setup.budget_unit == "boxes":
                    labelled = len(pool) * setup.budgets[r] / max(1, n_boxes)
                infer += max(0, round(len(pool) - labelled))
    plan.trainings = dict(trainings)
    plan.source_trainings = len(seeds) if "source" in splits else 0
    plan.inference_images = infer
    plan.setup = setup
    return plan


def _estimate(plan: DomainPlan) -> str:
    """Fill in the plan's GPU hours; returns the basis of the estimate (or why there is none)."""
    c0 = plan.cells[0]
    speed = MEASURED_SPEED.get(c0.detector)
    if speed is None:
        return f"no measured GPU speed for detector {c0.detector!r}; GPU time not estimated"
    its, side, batch = speed
    worst = max(RELATIVE_COST.values())
    sched = {c.trainer: c.schedule for c in plan.cells}

    def seconds_per_iter(px: float, bs: int) -> float:
        return (bs / batch) * (max(px, 1.0) / side**2) / its

    train_s = 0.0
    for trainer, n in plan.trainings.items():
        base, _ = parse_trainer(trainer)
        s = sched[trainer]
        cost = RELATIVE_COST.get(base, worst)
        train_s += n * s.iterations * cost * seconds_per_iter(plan.mean_px, s.batch_size)
    if plan.source_trainings:
        s = c0.schedule
        train_s += plan.source_trainings * s.iterations * seconds_per_iter(plan.source_px, s.batch_size)
    img_s = its * batch * INFERENCE_SPEEDUP * side**2 / max(plan.mean_px, 1.0)
    plan.train_h = train_s / 3600
    plan.infer_h = plan.inference_images / img_s / 3600
    return (
        f"{its} it/s at {side}x{side} px, batch {batch} ({SPEED_SOURCE}); scaled by batch and mean "
        f"image area; inference assumed {INFERENCE_SPEEDUP:g}x the training images/s"
    )


def _fmt_h(h: float) -> str:
    return f"{h:.2g}" if h < 1 else (f"{h:.2f}" if h < 10 else f"{h:.1f}")


def dry_run(
    matrix: Matrix,
    command: list[str],
    workers: int = 2,
    device: str = "cpu",
    out: TextIO | None = None,
    progress: bool = False,
) -> int:
    """Check every domain's data and options and print the plan (see the module docstring)."""
    import sys

    from benchmark.detectors import detector_options

    w = out or sys.stdout
    c0 = matrix.cells[0]
    bad = set(c0.detector_options) - set(detector_options(c0.detector))
    if bad:
        raise SpecError(f"unknown detector option(s) {sorted(bad)} for {c0.detector}")
    print(f"dry run of matrix {matrix.name} ({matrix.source}): {len(matrix.cells)} runs", file=w)
    if matrix.description:
        print(f"  {matrix.description}", file=w)
    print(f"  detector {c0.detector} {c0.detector_options or ''}".rstrip(), file=w)
    weights = pretrained_weights(c0.detector, c0.detector_options)
    if weights is not None:
        state = "cached" if weights.is_file() else "missing (provide this file before the run)"
        print(f"  ImageNet weights: {state} {weights}", file=w)
    by_domain: dict[str, list[Cell]] = defaultdict(list)
    for c in matrix.cells:
        by_domain[c.domain.name].append(c)
    total_h, basis_lines, plans = 0.0, set(), []
    for name, setup in matrix.domains.items():
        plan = plan_domain(setup, by_domain[name], progress)
        basis_lines.add(_estimate(plan))
        plans.append(plan)
        s = plan.setup
        unit = "labelling units" if s.budget_unit == "images" else "boxes"
        print(f"\n{name} ({s.dataset or name}): {plan.root}", file=w)
        if s.options:
            print(f"  options: {', '.join(f'{k}={v}' for k, v in sorted(s.options.items()))}", file=w)
        units = f" in {plan.n_units} labelling units" if plan.n_units != plan.n_samples else ""
        src = f"; source {plan.n_source} images" if plan.n_source is not None else ""
        print(
            f"  data: pool {plan.n_samples} samples{units}, {plan.n_boxes} boxes; test {plan.n_test} "
            f"samples{src}; mean image {plan.mean_px**0.5:.0f} px (square equivalent)",
            file=w,
        )
        ordinary = [c for c in plan.cells if not c.reference]
        refs = len(plan.cells) - len(ordinary)
        methods = sorted({c.method for c in ordinary})
        seeds = sorted({c.seed for c in plan.cells})
        print(
            f"  cells: {len(plan.cells)} runs = {len(methods)} methods x {len(seeds)} "
            + ("seed" if len(seeds) == 1 else "seeds")
            + (f" + {refs} full-supervision references" if refs else ""),
            file=w,
        )
        fr = s.budget_fractions
        budgets = (
            ", ".join(f"{b} ({100 * f:g}%)" for b, f in zip(s.budgets, fr, strict=True))
            if fr
            else ", ".join(str(b) for b in s.budgets)
        )
        print(f"  rounds: {len(s.budgets)}; cumulative budgets in {unit}: {budgets}", file=w)
        per_round = [s.budgets[0]] + [b - a for a, b in zip(s.budgets, s.budgets[1:], strict=False)]
        what = "images" if s.budget_unit == "images" else "boxes"
        rounds_txt = ", ".join(str(x) for x in per_round)
        print(f"  {what} per round: {rounds_txt} (the first is the initial set)", file=w)
        sch = {repr(c.schedule): c.schedule for c in plan.cells}
        for one in sch.values():
            print(
                f"  schedule: {one.iterations} iterations, batch {one.batch_size}, lr {one.lr:g}, "
                f"warm-up {one.warmup}, EMA {one.ema_decay:g}",
                file=w,
            )
        n_train = sum(plan.trainings.values())
        src_t = f" + {plan.source_trainings} source checkpoints" if plan.source_trainings else ""
        print(
            f"  trainings: {n_train}{src_t}; inference on {plan.inference_images} images (test every "
            "round, unlabelled pool before each query)",
            file=w,
        )
        if plan.gpu_h is not None:
            total_h += plan.gpu_h
            print(
                f"  estimated GPU time: {_fmt_h(plan.gpu_h)} GPU-hours (training {_fmt_h(plan.train_h)}, "
                f"inference {_fmt_h(plan.infer_h)})",
                file=w,
            )
        else:
            print("  estimated GPU time: not estimated (see below)", file=w)
    print("", file=w)
    if all(p.gpu_h is not None for p in plans):
        print(f"total estimated GPU time: {_fmt_h(total_h)} GPU-hours on one GPU", file=w)
    for line in sorted(basis_lines):
        print(f"  basis: {line}", file=w)
    if device == "cpu" and c0.detector in MEASURED_SPEED and c0.detector == "fcos_r50":
        print("  note: --device is cpu; this matrix is sized for a GPU (add --device cuda:0)", file=w)
    names = launcher_names()
    print(f"\ncommands (launchers: {', '.join(names)}):", file=w)
    for n in names:
        extra = [x.format(workers=workers) for x in LAUNCHER_FLAGS.get(n, [])]
        print(f"  {n:8s} {shlex.join(command + ['--launcher', n] + extra)}", file=w)
    print("everything checked: data roots, annotations, options and budgets; nothing was trained", file=w)
    return 0
