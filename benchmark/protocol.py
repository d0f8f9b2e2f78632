"""The round loop of one run: initial labelled set -> train -> evaluate -> query -> reveal, per budget.

Rules (DESIGN §4):
* the initial labelled set depends only on (dataset, seed, first budget, unit): every method of a
  seed starts from the same labels; the orchestrator saves it as ids before any run starts;
* each round retrains from the same initial weights (``seed_hash(seed, "weights")``) with the
  same schedule, unless the matrix sets ``warm_start``;
* seeds derive per purpose: ``("init")``, ``("train", round)``, ``("query", round)``;
* budgets are cumulative, in images or in boxes (boxes: images are revealed in the strategy's
  order until the round's box budget is reached; the last image may overshoot and the record
  keeps the actual count);
* round 0 of runs that share a trainer, an initial set and a training seed trains once: the model,
  its test predictions and metrics are cached under ``<out>/_cache/round0/``;
* a finished round (``round<r>/DONE``) is never redone; a killed run resumes at the first
  unfinished round and produces the same records as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.contexts import QueryContext, TrainContext, predicted_box_counts
from benchmark.data import DomainData
from benchmark.detectors import build_detector
from benchmark.evaluation import evaluate_domain, metrics_code_version, needs_dense, scoring_domain
from benchmark.metrics.coco import predictions_to_coco
from benchmark.registry import METHODS, STRATEGIES
from benchmark.results import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    git_commit,
    ids_sha256,
    package_versions,
    read_ids,
    write_ids,
)
from benchmark.runstate import exclusive
from benchmark.source import SourceCheckpoint, ensure_source_checkpoint, source_record
from benchmark.spec import SCHEMA_VERSION, Cell, canonical_hash, parse_trainer, seed_hash
from benchmark.training import predict_all
from domains.base import DOMAINS, DomainDataset, SpecError

# cuBLAS needs a fixed workspace for deterministic results on CUDA >= 10.2; it is read when the
# first cuBLAS handle is made, so it is set before any GPU work (an explicit user setting wins).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


RoundCallback = Callable[[Cell, int, dict[str, Any]], None]


# ---------------------------------------------------------------------------------- initial set


def initial_ids(pool: DomainDataset, budget: int, unit: str, seed: int) -> list[str]:
    """The seed's initial labelled set: a random order of the pool's labelling units (by
    ``seed_hash(seed, "init")``), cut at the first budget (in units, or in boxes with the last unit
    allowed to overshoot); a unit brings all its samples (``DomainDataset.unit_members``)."""
    rng = np.random.default_rng(seed_hash(seed, "init"))
    members = pool.unit_members()
    keys = sorted(members)
    order = [keys[i] for i in rng.permutation(len(keys))]
    if unit == "images":
        if budget > len(order):
            raise SpecError(f"first budget {budget} exceeds the pool's {len(order)} labelling units")
        return [sid for u in order[:budget] for sid in members[u]]
    out, boxes = [], 0
    for u in order:
        if boxes >= budget:
            break
        out.extend(members[u])
        boxes += pool.by_id(members[u][0]).num_objects
    return out


def split_file(out: Path, domain: str, version: str, seed: int, budget: int, unit: str) -> Path:
    return out / "splits" / domain / version / f"seed{seed}-{unit}{budget}.ids"


def ensure_initial_split(out: Path, cell: Cell, pool: DomainDataset) -> list[str]:
    """Write (once) and read back the initial labelled ids of (domain, seed); a reference cell
    labels the whole pool."""
    if cell.reference:
        return list(pool.ids)
    path = split_file(
        out, cell.domain.name, cell.dataset_version, cell.seed, cell.budgets[0], cell.budget_unit
    )
    ids = initial_ids(pool, cell.budgets[0], cell.budget_unit, cell.seed)
    if path.is_file():
        saved = read_ids(path)
        if saved != ids:
            raise SpecError(f"{path} does not match the initial set this code draws; delete it to regenerate")
        return saved
    write_ids(path, ids)
    return ids


# ----------------------------------------------------------------------------------------- rounds


def _new_detector_factory(
    cell: Cell, n_classes: int, source: SourceCheckpoint | None = None
) -> Callable[[], torch.nn.Module]:
    """The run's ``new_detector``: the seed's initialisation, or with ``source`` the source
    checkpoint's weights (``make.source`` then carries the checkpoint, its hash and its frozen
    domain discriminator for source-free methods; never source samples)."""
    weights_seed = seed_hash(cell.seed, "weights")
    state = source.detector_state() if source is not None else None
    box_type = DOMAINS.get(cell.domain.name).box_type  # resolves ``oriented = "auto"``

    def make() -> torch.nn.Module:
        # initialise under a private copy of the global RNG: the caller's state is untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(weights_seed)
            model = build_detector(cell.detector, n_classes, box_type, **cell.detector_options)
        if state is not None:
            model.load_state_dict(state)
        return model.to(memory_format=torch.channels_last)

    make.source = source  # type: ignore[attr-defined]
    return make


def _round0_key(cell: Cell, init: list[str], trainer_version: str, source_sha: str | None = None) -> str:
    return canonical_hash(
        {
            "source_checkpoint": source_sha,
            "domain": cell.domain.name,
            "options": cell.domain.options,
            "dataset": cell.dataset_version,
            "trainer": cell.trainer,
            "trainer_version": trainer_version,
            "detector": cell.detector,
            "detector_options": cell.detector_options,
            "schedule": cell.canonical()["schedule"],
            "init": ids_sha256(init),
            "seed": cell.seed,
            "threads": cell.threads,
            "metrics_code": metrics_code_version(),
        },
        24,
    )


def _train_stats(method, cached: bool) -> dict[str, Any]:
    """The trainer's own statistics of this round (``method.last_stats``: JSON scalars only)."""
    stats = getattr(method, "last_stats", None)
    if cached or not isinstance(stats, dict):
        return {}
    return {str(k): v for k, v in stats.items() if isinstance(v, bool | int | float | str) or v is None}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


@contextmanager
def deterministic(device: str):
    """Same seed -> same numbers on a GPU too: inside the block, cuDNN and PyTorch use their
    deterministic kernels (``torch.use_deterministic_algorithms``; an op without one raises rather
    than silently varying); the previous settings come back afterwards. A no-op on the CPU, whose
    kernels are deterministic already."""
    if not str(device).startswith("cuda"):
        yield
        return
    cudnn = torch.backends.cudnn
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        cudnn.deterministic, cudnn.benchmark = prev[2], prev[3]


def run_cell(
    cell: Cell,
    out: Path,
    data: DomainData,
    device: str = "cpu",
    launcher: str = "serial",
    on_round: RoundCallback | None = None,
    train_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    round0_stats: bool | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) one cell; returns its records, one per round. On a GPU the cell runs with
    deterministic kernels (``deterministic``), so a seed gives the same selections and metrics.
    ``round0_stats``: see ``_record_train_stats``."""
    with deterministic(device), ExitStack() as held:
        return _run_cell(cell, out, data, device, launcher, on_round, train_progress, round0_stats, held)


def _run_cell(
    cell: Cell,
    out: Path,
    data: DomainData,
    device: str,
    launcher: str,
    on_round: RoundCallback | None,
    train_progress: Callable[[int, int, dict[str, float]], None] | None,
    round0_stats: bool | None = None,
    held: ExitStack | None = None,
) -> list[dict[str, Any]]:
    held = ExitStack() if held is None else held  # the caller releases what is held on errors
    if cell.dataset_version != data.version:
        raise SpecError(f"cell dataset version {cell.dataset_version!r} != loaded data {data.version!r}")
    base, opts = parse_trainer(cell.trainer)
    method = METHODS.get(base)(**opts)
    strategy = STRATEGIES.get(cell.strategy)()
    rd = RunDir(run_path(out, cell))
    rd.clear_stale_temps()  # a killed run's unfinished temp files; its finished files stay
    atomic_write_json(rd.root / "spec.json", {"run_id": cell.run_id, **cell.canonical()})
    pool, test = data.pool, data.test
    classes = data.domain.classes
    n_rounds = len(cell.budgets)
    seeds = cell.seeds(n_rounds)
    src_ckpt = ensure_source_checkpoint(
        cell, out, data, _new_detector_factory(cell, len(classes)), device, train_progress
    )
    new_detector = _new_detector_factory(cell, len(classes), src_ckpt)
    src_sha = src_ckpt.sha256 if src_ckpt is not None else None
    src_rec = source_record(src_ckpt)  # init + checkpoint hash; its cost goes to the (volatile) timing
    labelled: list[str] = list(ensure_initial_split(out, cell, pool))
    prev_state = None
    records: list[dict[str, Any]] = []
    targets = list(cell.budgets)
    if cell.reference:  # every labelling unit of the pool, in the run's budget unit
        targets = [
            len({pool.unit_of(i) for i in pool.ids})
            if cell.budget_unit == "images"
            else pool.unit_boxes(pool.ids)
        ]
    for r, target in enumerate(targets):
        if rd.round_done(r):
            rec = rd.read_record(r)
            saved = read_ids(rd.round_dir(r) / "labelled.ids")
            if saved != labelled:
                raise SpecError(f"{rd.round_dir(r)}: saved labelled ids differ from the replayed ones")
            acquired = read_ids(rd.round_dir(r) / "acquired.ids")
            labelled = labelled + acquired
            records.append(rec)
            if cell.warm_start:
                prev_state = torch.load(rd.round_dir(r) / "model.pt", map_location="cpu", weights_only=True)
            continue
        rd.heartbeat(r)
        lab_set = set(labelled)
        lab_samples = [pool.by_id(i) for i in labelled]
        unl_samples = [s.label_free() for s in pool if s.id not in lab_set]  # methods never see their labels
        gen = torch.Generator().manual_seed(seeds["train"][r])
        rng = np.random.default_rng(seeds["train"][r])
        t0 = time.perf_counter()
        cache = None
        if r == 0 and not cell.warm_start:
            cache = out / "_cache" / "round0" / _round0_key(cell, labelled, method.version(), src_sha)
        # round 0 is built once for every cell that shares it, on any host: the builder holds the
        # cache's lease while it trains, evaluates and publishes; the others wait, then load it
        hold = ExitStack()
        held.callback(hold.close)  # released on errors too
        if cache is not None and not (cache / "DONE").is_file():
            hold.enter_context(_round0_lease(cache))
        cached = cache is not None and (cache / "DONE").is_file()
        publish = cache is not None and not cached
        cached_stats = _round0_stats(cache) if cached else None
        if cached and round0_stats and cached_stats is None:
            cached = False  # a cache without its training statistics: train (the same numbers) here
        if not publish:
            hold.close()  # nothing to build for the others
        if cached:
            model = new_detector()
            model.load_state_dict(torch.load(cache / "model.pt", map_location="cpu", weights_only=True))
            model.to(device).eval()
        else:
            ctx = TrainContext(
                lab_samples,
                unl_samples,
                data.images,
                classes,
                new_detector,
                cell.schedule,
                gen,
                rng,
                device,
                train_progress,
                r,
                prev_state,
            )
            model = method.train(ctx)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        if cached:
            preds_json = json.loads((cache / "predictions.json").read_text())
            metrics = json.loads((cache / "metrics.json").read_text())
        else:
            preds = predict_all(
                model, data.images.many(test.ids), device=device, dense=needs_dense(data.domain)
            )
            counts = dict(zip(classes, (int(c) for c in pool.class_counts()), strict=True))
            scoring = scoring_domain(data.domain, getattr(model, "oriented", False))
            metrics = evaluate_domain(scoring, test, preds, class_counts=counts)
            preds_json = predictions_json(preds, test.ids)
            if publish:
                _write_round0_cache(cache, model, preds_json, metrics, _train_stats(method, False))
        hold.close()
        eval_s = time.perf_counter() - t1
        # -- query and reveal
        t2 = time.perf_counter()
        acquired: list[str] = []
        if r + 1 < n_rounds:
            acquired = _query(
                cell,
                strategy,
                model,
                pool,
                labelled,
                lab_samples,
                unl_samples,
                data,
                classes,
                seeds["query"][r],
                device,
                r,
                cell.budgets[r + 1],
            )
        query_s = time.perf_counter() - t2
        n_boxes = pool.unit_boxes(labelled)
        rec = {
            "schema_version": SCHEMA_VERSION,
            "run_id": cell.run_id,
            "matrix": cell.matrix,
            "domain": cell.domain.name,
            "domain_options": cell.domain.options,
            "data": cell.domain.data_label(),
            "dataset_version": cell.dataset_version,
            "label_unit": data.domain.label_unit,
            "method": cell.method,
            "trainer": cell.trainer,
            "strategy": cell.strategy,
            "paradigm": {"trainer": method.paradigm, "strategy": strategy.paradigm},
            "method_version": method.version(),
            "strategy_version": strategy.version(),
            "hparams": {"trainer": method.hp, "strategy": strategy.hp},
            "seed": cell.seed,
            "seeds": {k: (v[r] if isinstance(v, list) else v) for k, v in seeds.items()},
            "round": r,
            "n_rounds": n_rounds,
            "budget_unit": cell.budget_unit,
            "budget_target": target,
            "n_labelled": len(labelled),
            "n_labelled_units": len({pool.unit_of(i) for i in labelled}),
            "n_labelled_boxes": n_boxes,
            "labelled_sha256": ids_sha256(labelled),
            "n_acquired": len(acquired),
            "metrics": metrics["metrics"],
            "primary_metric": metrics["primary"],
            "higher_is_better": metrics["higher_is_better"],
            "per_class": metrics["per_class"],
            "long_tail": metrics.get("long_tail", {}),
            "metric_impl": metrics["impl"],
            "eval_split": "test",
            "n_test": len(test),
            "detector": cell.detector,
            "detector_options": cell.detector_options,
            "schedule": cell.canonical()["schedule"],
            "threads": cell.threads,
            "warm_start": cell.warm_start,
            "reference": cell.reference,
            "init": src_rec["init"],
            "source_checkpoint": src_rec["source_checkpoint"],
            "train_stats": _record_train_stats(method, cached, cached_stats, r, cache, round0_stats),
            "timing": {
                "train_s": round(train_s, 3),
                "eval_s": round(eval_s, 3),
                "query_s": round(query_s, 3),
                "round0_reused": bool(cached),
                "source_train_s": src_rec["source_train_s"],
                "source_reused": src_rec["source_reused"],
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "images_seen": 0 if cached else cell.schedule.iterations * cell.schedule.batch_size,
            },
            "provenance": {
                "git_commit": git_commit(),
                "packages": package_versions(),
                "device": _device_name(device),
                "launcher": launcher,
                "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ"),
            },
        }
        if cell.warm_start:
            prev_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
            _save_state(rd.round_dir(r) / "model.pt", prev_state)
        rd.write_round(r, rec, labelled, acquired, preds_json)
        records.append(rec)
        if on_round is not None:
            on_round(cell, r, rec)
        labelled = labelled + acquired
    rd.finish()
    return records


def predictions_json(preds, ids: list[str]) -> list[dict[str, Any]]:
    """``predictions.json`` entries (COCO results): the box, and for oriented detections also
    ``segmentation`` ``[[x1, y1, ..., x4, y4]]`` (the polygon, COCO's polygon format)."""
    out = predictions_to_coco(preds, ids)
    polys = [q for p in preds if p.polygons is not None for q in p.polygons.tolist()]
    if polys:
        if len(polys) != len(out) or any(p.polygons is None for p in preds):
            raise RuntimeError("some predictions carry polygons and some do not")
        for entry, q in zip(out, polys, strict=True):
            entry["segmentation"] = [[float(v) for v in q]]
    return out


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    """torch.save, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk or a read-only folder leaves no temp file behind
        tmp.unlink(missing_ok=True)
        raise


def _write_round0_cache(cache: Path, model: torch.nn.Module, preds_json, metrics, stats=None) -> None:
    """Publish a round-0 cache: written into a private folder, then renamed into place in one step
    (if another worker published it first, this copy is discarded)."""
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _save_state(tmp / "model.pt", model.state_dict())
        atomic_write_text(tmp / "predictions.json", json.dumps(preds_json, separators=(",", ":")) + "\n")
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "train_stats.json", stats or {})
        atomic_write_text(tmp / "DONE", "ok\n")
        try:
            os.rename(tmp, cache)
        except OSError:
            if not (cache / "DONE").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _round0_lease(cache: Path):
    cache.parent.mkdir(parents=True, exist_ok=True)
    return exclusive(cache.with_name(f"{cache.name}.lease"), what="round-0 model")


def _round0_stats(cache: Path) -> dict[str, Any] | None:
    """The training statistics saved with a round-0 cache (None: a cache from before they were)."""
    f = cache / "train_stats.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _record_train_stats(method, cached: bool, cached_stats, r: int, cache, round0_stats) -> dict[str, Any]:
    """The record's ``train_stats``. Which cell of a group trains a shared round 0 depends on who
    gets there first under a parallel launcher, so with ``round0_stats`` given (the launchers give
    it: True for the first cell of its (domain, trainer, seed) group in matrix order) the record
    does not depend on it: the first cell reports the round's training statistics (its own, or
    those saved with the cache), the others ``{}`` -- what a serial run has always written. With
    ``round0_stats=None`` (a direct call) the cell reports what it trained itself."""
    if round0_stats is None or r != 0 or cache is None:
        return _train_stats(method, cached)
    if not round0_stats:
        return {}
    return dict(cached_stats) if cached else _train_stats(method, False)


def _query(
    cell,
    strategy,
    model,
    pool,
    labelled,
    lab_samples,
    unl_samples,
    data,
    classes,
    qseed,
    device,
    r,
    next_target,
) -> list[str]:
    """Ask the strategy and reveal labels up to the next budget (images or boxes)."""
    qctx = QueryContext(
        model,
        lab_samples,
        unl_samples,
        data.images,
        classes,
        torch.Generator().manual_seed(qseed),
        np.random.default_rng(qseed),
        device,
        r,
        cell.budget_unit,
    )
    lab_set = set(labelled)
    members = pool.unit_members()
    if cell.budget_unit == "images" and all(len(m) == 1 for m in members.values()):
        k = next_target - len(labelled)
        picks = strategy.select(qctx, k)
        _check_picks(strategy.name, picks, lab_set, {s.id for s in unl_samples}, k)
        return list(picks)
    # reveal in the strategy's order until the round's budget is spent: in labelling units (a unit's
    # samples come together) or in boxes (the oracle's count is known only on reveal)
    by_images = cell.budget_unit == "images"
    have = len({pool.unit_of(i) for i in labelled}) if by_images else pool.unit_boxes(labelled)
    per_pick = 1.0
    if not by_images:
        n_units = max(1, len({pool.unit_of(i) for i in labelled}))
        per_pick = max(1.0, have / n_units)
        if unl_samples:  # what the model predicts per unlabelled image (oracle counts come on reveal)
            per_pick = max(1.0, 0.5 * per_pick + 0.5 * float(predicted_box_counts(qctx).mean()))
    acquired: list[str] = []
    remaining = list(unl_samples)
    while have < next_target and remaining:
        k = max(1, math.ceil((next_target - have) / per_pick))
        qctx.unlabelled = remaining
        picks = strategy.select(qctx, min(k, len(remaining)))
        _check_picks(strategy.name, picks, lab_set | set(acquired), {s.id for s in remaining}, k)
        if not picks:
            break
        taken = set(acquired)
        for sid in picks:
            if have >= next_target:
                break
            if sid in taken:  # already revealed with its unit
                continue
            unit = [m for m in members[pool.unit_of(sid)] if m not in lab_set and m not in taken]
            acquired.extend(unit)
            taken.update(unit)
            have += 1 if by_images else pool.by_id(sid).num_objects
        remaining = [s for s in remaining if s.id not in taken]
    return acquired


def _check_picks(name: str, picks: list[str], labelled: set[str], unlabelled: set[str], k: int) -> None:
    if len(picks) > k:
        raise RuntimeError(f"strategy {name} returned {len(picks)} ids for a budget of {k}")
    if len(set(picks)) != len(picks):
        raise RuntimeError(f"strategy {name} returned duplicate ids")
    bad = [p for p in picks if p not in unlabelled or p in labelled]
    if bad:
        raise RuntimeError(f"strategy {name} returned ids outside the unlabelled pool: {bad[:5]}")


def run_path(out: Path, cell: Cell) -> Path:
    return Path(out) / cell.domain.name / cell.method / f"seed{cell.seed}" / cell.run_id
