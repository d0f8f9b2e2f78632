"""The round loop of one run: initial labelled set -> train -> evaluate -> query -> reveal, per budget.

Rules (``docs/protocol.md``):
* the initial labelled set depends only on (dataset, seed, first budget, unit): every method of a
  seed starts from the same labels; the orchestrator saves it as ids before any run starts;
* each round retrains from the same initial weights (``Seeds.weights``) with the
  same schedule, unless the matrix sets ``warm_start``;
* seeds derive per purpose (``benchmark.spec.Seeds``): ``init``, ``weights``, ``train(round)``,
  ``query(round)`` (and ``source`` for a source checkpoint);
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.contexts import QueryContext, TrainContext, predicted_box_counts
from benchmark.data import DomainData
from benchmark.detectors import build_detector
from benchmark.evaluation import evaluate_domain, metrics_code_version, needs_dense, scoring_domain
from benchmark.metrics.coco import predictions_to_coco
from benchmark.records import RoundRecord, provenance, read_record
from benchmark.registry import METHODS, STRATEGIES
from benchmark.results import RunDir, atomic_write_json, atomic_write_text, ids_sha256, read_ids, write_ids
from benchmark.runstate import exclusive
from benchmark.source import SourceCheckpoint, ensure_source_checkpoint, source_record
from benchmark.spec import Cell, Seeds, canonical_hash, parse_trainer
from benchmark.training import predict_all
from domains.base import DOMAINS, DomainDataset, LabelFreeSample, Sample, SpecError

# cuBLAS needs a fixed workspace for deterministic results on CUDA >= 10.2; it is read when the
# first cuBLAS handle is made, so it is set before any GPU work (an explicit user setting wins).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


RoundCallback = Callable[[Cell, int, dict[str, Any]], None]


# ---------------------------------------------------------------------------------- initial set


def initial_ids(pool: DomainDataset, budget: int, unit: str, seed: int) -> list[str]:
    """The seed's initial labelled set: a random order of the pool's labelling units (by
    ``Seeds.init``), cut at the first budget (in units, or in boxes with the last unit
    allowed to overshoot); a unit brings all its samples (``DomainDataset.unit_members``)."""
    rng = np.random.default_rng(Seeds(seed).init)
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
    weights_seed = cell.seeds.weights
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


@dataclass
class _Run:
    """What every round of one run shares: the cell, its data, trainer and strategy, its folder,
    the detector factory (with the start weights) and where the run is executed."""

    cell: Cell
    out: Path
    data: DomainData
    method: Any  # a baselines.base.Method (the methods' layer sits above the protocol)
    strategy: Any  # a baselines.base.Strategy
    rd: RunDir
    new_detector: Callable[[], torch.nn.Module]
    start: dict[str, Any]  # ``source_record``: init, source checkpoint hash, its (volatile) cost
    device: str
    launcher: str
    train_progress: Callable[[int, int, dict[str, float]], None] | None
    round0_stats: bool | None
    held: ExitStack  # what the run holds (round-0 leases), released by the caller on errors

    @property
    def n_rounds(self) -> int:
        return len(self.cell.budgets)


@dataclass
class _Labels:
    """The labelled state a round starts from: the labelled ids (in labelling order), their samples
    and the label-free views of the rest of the pool (methods never see their labels)."""

    ids: list[str]
    samples: list[Sample]
    unlabelled: list[LabelFreeSample]

    @classmethod
    def of(cls, pool: DomainDataset, labelled: list[str]) -> _Labels:
        lab_set = set(labelled)
        unl = [s.label_free() for s in pool if s.id not in lab_set]
        return cls(list(labelled), [pool.by_id(i) for i in labelled], unl)


@dataclass
class _Round0Share:
    """Round 0 shared by every cell with the same trainer, initial set and training seed (the cache
    under ``<out>/_cache/round0/``): ``cached`` it is loaded from there, ``publish`` this cell builds
    it for the others (holding ``hold``, the cache's lease, until published)."""

    path: Path | None
    hold: ExitStack
    cached: bool = False
    publish: bool = False
    stats: dict[str, Any] | None = None  # the training statistics saved with the cache


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
    run = _start_run(cell, out, data, device, launcher, train_progress, round0_stats, held)
    labelled: list[str] = list(ensure_initial_split(out, cell, data.pool))
    prev_state = None  # the previous round's weights (``warm_start`` only)
    records: list[dict[str, Any]] = []
    for r, target in enumerate(_targets(cell, data.pool)):
        if run.rd.round_done(r):
            rec, acquired = _replay_round(run, r, labelled)
            if cell.warm_start:
                prev_state = torch.load(
                    run.rd.round_dir(r) / "model.pt", map_location="cpu", weights_only=True
                )
        else:
            rec, acquired, prev_state = _run_round(run, r, target, labelled, prev_state)
            if on_round is not None:
                on_round(cell, r, rec)
        records.append(rec)
        labelled = labelled + acquired
    run.rd.finish()
    return records


def _start_run(
    cell: Cell,
    out: Path,
    data: DomainData,
    device: str,
    launcher: str,
    train_progress: Callable[[int, int, dict[str, float]], None] | None,
    round0_stats: bool | None,
    held: ExitStack,
) -> _Run:
    """Build the run's trainer and strategy, claim its folder (``spec.json``) and get its start
    weights (the source checkpoint, trained first if the cell needs one and none is cached)."""
    if cell.dataset_version != data.version:
        raise SpecError(f"cell dataset version {cell.dataset_version!r} != loaded data {data.version!r}")
    base, opts = parse_trainer(cell.trainer)
    method = METHODS.get(base)(**opts)
    strategy = STRATEGIES.get(cell.strategy)()
    rd = RunDir(run_path(out, cell))
    rd.clear_stale_temps()  # a killed run's unfinished temp files; its finished files stay
    atomic_write_json(rd.root / "spec.json", {"run_id": cell.run_id, **cell.canonical()})
    n_classes = len(data.domain.classes)
    src_ckpt = ensure_source_checkpoint(
        cell, out, data, _new_detector_factory(cell, n_classes), device, train_progress
    )
    return _Run(
        cell,
        Path(out),
        data,
        method,
        strategy,
        rd,
        _new_detector_factory(cell, n_classes, src_ckpt),
        source_record(
            src_ckpt, cell.detector_options.get("start", "random") != "random"
        ),  # init + checkpoint hash; its cost goes to the (volatile) timing
        device,
        launcher,
        train_progress,
        round0_stats,
        held,
    )


def _targets(cell: Cell, pool: DomainDataset) -> list[int]:
    """The label budget of each round; a reference cell has one round: every labelling unit of the
    pool, in the run's budget unit."""
    if not cell.reference:
        return list(cell.budgets)
    if cell.budget_unit == "images":
        return [len({pool.unit_of(i) for i in pool.ids})]
    return [pool.unit_boxes(pool.ids)]


def _replay_round(run: _Run, r: int, labelled: list[str]) -> tuple[dict[str, Any], list[str]]:
    """A finished round of a resumed run: its record and the ids it acquired, after checking that
    it started from the labelled ids replayed so far."""
    d = run.rd.round_dir(r)
    rec = read_record(d / "record.json")
    if read_ids(d / "labelled.ids") != labelled:
        raise SpecError(f"{d}: saved labelled ids differ from the replayed ones")
    return rec, read_ids(d / "acquired.ids")


def _run_round(
    run: _Run, r: int, target: int, labelled: list[str], prev_state: dict[str, torch.Tensor] | None
) -> tuple[dict[str, Any], list[str], dict[str, torch.Tensor] | None]:
    """Train (or load the shared round 0), evaluate, query the next round's labels and write the
    round; returns its record, the acquired ids and the weights the next round starts from."""
    cell = run.cell
    run.rd.heartbeat(r)
    labels = _Labels.of(run.data.pool, labelled)
    t0 = time.perf_counter()
    share = _round0_share(run, r, labelled)
    if share.cached:
        model = _load_round0(run, share)
    else:
        model = run.method.train(_train_context(run, r, labels, prev_state))
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics, preds_json = _evaluate(run, model, share)
    share.hold.close()
    validation = _evaluate_validation(run, model)
    eval_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    acquired: list[str] = []
    if r + 1 < run.n_rounds:
        acquired = _query(run, r, model, labels, cell.budgets[r + 1])
    query_s = time.perf_counter() - t2
    timing = {
        "train_s": round(train_s, 3),
        "eval_s": round(eval_s, 3),
        "query_s": round(query_s, 3),
        "round0_reused": bool(share.cached),
        "source_train_s": run.start["source_train_s"],
        "source_reused": run.start["source_reused"],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "images_seen": 0 if share.cached else cell.schedule.iterations * cell.schedule.batch_size,
    }
    rec = RoundRecord.build(
        cell,
        run.method,
        run.strategy,
        round=r,
        n_rounds=run.n_rounds,
        target=target,
        pool=run.data.pool,
        label_unit=run.data.domain.label_unit,
        n_test=len(run.data.test),
        labelled=labelled,
        acquired=acquired,
        evaluation=metrics,
        start=run.start,
        train_stats=_record_train_stats(
            run.method, share.cached, share.stats, r, share.path, run.round0_stats
        ),
        timing=timing,
        provenance=provenance(_device_name(run.device), run.launcher),
        validation=validation,
    )
    rec_json = rec.check(str(run.rd.round_dir(r) / "record.json")).to_json()
    if cell.warm_start:
        prev_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        _save_state(run.rd.round_dir(r) / "model.pt", prev_state)
    run.rd.write_round(r, rec_json, labelled, acquired, preds_json)
    return rec_json, acquired, prev_state


def _train_context(
    run: _Run, r: int, labels: _Labels, prev_state: dict[str, torch.Tensor] | None
) -> TrainContext:
    seed = run.cell.seeds.train(r)
    return TrainContext(
        labels.samples,
        labels.unlabelled,
        run.data.images,
        run.data.domain.classes,
        run.new_detector,
        run.cell.schedule,
        torch.Generator().manual_seed(seed),
        np.random.default_rng(seed),
        run.device,
        run.train_progress,
        r,
        prev_state,
    )


def _round0_share(run: _Run, r: int, labelled: list[str]) -> _Round0Share:
    """Whether round ``r`` is the shared round 0 and, if so, whether it is loaded or built here.
    It is built once for every cell that shares it, on any host: the builder holds the cache's
    lease while it trains, evaluates and publishes; the others wait, then load it. Under
    ``warm_start`` too: round 0 starts from the run's initial weights either way, and the next
    round starts from the (loaded or trained) round-0 model."""
    hold = ExitStack()
    run.held.callback(hold.close)  # released on errors too
    if r != 0:
        return _Round0Share(None, hold)
    src_sha = run.start["source_checkpoint"]
    cache = run.out / "_cache" / "round0" / _round0_key(run.cell, labelled, run.method.version(), src_sha)
    if not (cache / "DONE").is_file():
        hold.enter_context(_round0_lease(cache))
    share = _Round0Share(cache, hold, cached=(cache / "DONE").is_file())
    share.publish = not share.cached
    share.stats = _round0_stats(cache) if share.cached else None
    if share.cached and run.round0_stats and share.stats is None:
        share.cached = False  # a cache without its training statistics: train (the same numbers) here
    if not share.publish:
        hold.close()  # nothing to build for the others
    return share


def _load_round0(run: _Run, share: _Round0Share) -> torch.nn.Module:
    model = run.new_detector()
    model.load_state_dict(torch.load(share.path / "model.pt", map_location="cpu", weights_only=True))
    return model.to(run.device).eval()


def _evaluate(run: _Run, model: torch.nn.Module, share: _Round0Share) -> tuple[dict[str, Any], list]:
    """The round's metrics (``evaluate_domain``) and test predictions (``predictions.json``
    entries): read from the shared round 0, or computed (and published, if this cell builds it)."""
    if share.cached:
        preds_json = json.loads((share.path / "predictions.json").read_text())
        return json.loads((share.path / "metrics.json").read_text()), preds_json
    test = run.data.test
    metrics, preds = _score(run, model, test)
    preds_json = predictions_json(preds, test.ids)
    if share.publish:
        _write_round0_cache(share.path, model, preds_json, metrics, _train_stats(run.method, False))
    return metrics, preds_json


def _evaluate_validation(run: _Run, model: torch.nn.Module) -> dict[str, Any] | None:
    """The round's model scored on the pool's held-out validation part (None without one): the
    number every default of the suite is chosen on (``docs/protocol.md``), never the test split."""
    val = run.data.val
    if val is None:
        return None
    res, _ = _score(run, model, val)
    return {"n": len(val), "metrics": res["metrics"], "primary": res["primary"]}


def _score(run: _Run, model: torch.nn.Module, split: DomainDataset) -> tuple[dict[str, Any], list]:
    """``evaluate_domain`` of ``model``'s predictions on ``split`` (the test split or the validation
    part; the long-tail groups from the pool's class counts), and the predictions."""
    data = run.data
    preds = predict_all(model, data.images.many(split.ids), device=run.device, dense=needs_dense(data.domain))
    counts = dict(zip(data.domain.classes, (int(c) for c in data.pool.class_counts()), strict=True))
    scoring = scoring_domain(data.domain, getattr(model, "oriented", False))
    return evaluate_domain(scoring, split, preds, class_counts=counts), preds


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


def _query(run: _Run, r: int, model: torch.nn.Module, labels: _Labels, next_target: int) -> list[str]:
    """Ask the strategy and reveal labels up to the next budget (images or boxes)."""
    cell, pool = run.cell, run.data.pool
    seed = cell.seeds.query(r)
    qctx = QueryContext(
        model,
        labels.samples,
        labels.unlabelled,
        run.data.images,
        run.data.domain.classes,
        torch.Generator().manual_seed(seed),
        np.random.default_rng(seed),
        run.device,
        r,
        cell.budget_unit,
    )
    if cell.budget_unit == "images" and all(len(m) == 1 for m in pool.unit_members().values()):
        k = next_target - len(labels.ids)
        picks = run.strategy.select(qctx, k)
        _check_picks(run.strategy.name, picks, set(labels.ids), {s.id for s in labels.unlabelled}, k)
        return list(picks)
    return _reveal(run.strategy, qctx, pool, labels, next_target)


def _reveal(
    strategy: Any, qctx: QueryContext, pool: DomainDataset, labels: _Labels, next_target: int
) -> list[str]:
    """Reveal in the strategy's order until the round's budget is spent: in labelling units (a
    unit's samples come together) or in boxes (the oracle's count is known only on reveal). Each
    ask requests about as many picks as the remaining budget needs (``_per_pick``)."""
    by_images = qctx.budget_unit == "images"
    labelled = labels.ids
    lab_set = set(labelled)
    members = pool.unit_members()
    have = len({pool.unit_of(i) for i in labelled}) if by_images else pool.unit_boxes(labelled)
    per_pick = 1.0 if by_images else _per_pick(qctx, pool, labels, have)
    acquired: list[str] = []
    remaining = list(labels.unlabelled)
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


def _per_pick(qctx: QueryContext, pool: DomainDataset, labels: _Labels, have_boxes: int) -> float:
    """Boxes one pick is expected to bring: the labelled units' mean, blended with what the model
    predicts per unlabelled image (the oracle's counts come only on reveal)."""
    n_units = max(1, len({pool.unit_of(i) for i in labels.ids}))
    per_pick = max(1.0, have_boxes / n_units)
    if labels.unlabelled:
        per_pick = max(1.0, 0.5 * per_pick + 0.5 * float(predicted_box_counts(qctx).mean()))
    return per_pick


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
