"""Source checkpoints: the source-pretrained starting weights every method of a shifted domain uses.

``docs/protocol.md#starting-weights``: on a domain whose data has a ``source`` split (foggy_cityscapes:
clear train; sonar: the source survey; DOTA with ``source_sensor``), a source model is trained once
per (domain setup, dataset version, source-split version, seed, detector, schedule, threads, code)
and cached; every method's rounds start from it (``new_detector()`` returns the source weights), the
supervised baseline included, so a comparison measures what a method adds on top of the same start.
Source-free methods (paradigm ``sfda``) get the weights and the frozen source heads (below), never
source samples: ``TrainContext`` holds only the pool's labelled and unlabelled samples.

The source phase (``train_source``)
    1. the detector is built with the run's initial weights (``Seeds.weights``) and
       trained supervised on the whole source split with the matrix's schedule (``train_supervised``:
       random flips, the same loss, optimiser, learning-rate schedule and weight EMA as the
       supervised baseline), batches drawn by ``Seeds.source``;
    2. every registered **source head** (``SOURCE_HEADS``, in name order, drawing from the same
       generator) is fitted on the finished source detector, which stays fixed, and frozen: what a
       source-free method needs from the source data besides the weights. The built-in one is SAR's
       domain discriminator (``baselines/components/domain_discriminator.py``, registered as
       ``discriminator``); its training statistics are kept in ``meta.json``.

The cache (``<out>/_cache/source/<key>/``: ``model.pt`` with ``{"detector", <head>,
<head>_config, ...}``, ``meta.json``, ``DONE``) is made safe for parallel workers on any number
of hosts: a worker holds the lease ``<key>.lease`` (``benchmark.runstate``: created atomically,
heart-beaten, taken over when its holder dies) while it checks, trains and publishes, so the others
wait and then re-use the result; the result is written into a private temporary folder and
published by one atomic ``rename`` (should two workers ever build, the identical model is trained
deterministically, the first rename wins and the other copy is discarded). The record
of every round keeps ``init`` ("source" | "scratch") and ``source_checkpoint`` (sha256 of
``model.pt``, null for scratch); the source phase's cost ``timing.source_train_s`` (seconds,
measured once, when it was trained) and ``timing.source_reused`` go with the other (volatile)
timings, since a resumed run re-uses a checkpoint that an uninterrupted one trained. The round-0
cache key includes the checkpoint hash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from benchmark.codehash import ALWAYS, closure, code_hash
from benchmark.data import DomainData, ImageStore, source_dataset
from benchmark.detectors.start import file_sha256
from benchmark.registry import Registry
from benchmark.results import atomic_write_json, atomic_write_text
from benchmark.runstate import exclusive
from benchmark.spec import Cell, canonical_hash
from benchmark.training import ProgressFn, sample_targets, train_supervised
from domains.base import DomainDataset

CHECKPOINT_FORMAT = 1


def code_version() -> str:
    """Hash of the code a source checkpoint runs (``benchmark.codehash``: this module, the detector, the
    augmentations, the training loop and what they import): a change makes old checkpoints stale."""
    heads = [SOURCE_HEADS.get(name).__module__ for name in SOURCE_HEADS.names()]
    return code_hash(closure([__name__, *heads, *ALWAYS]))


# ------------------------------------------------------------------------------ source heads


class SourceHead(Protocol):
    """A part of the checkpoint besides the detector: trained once in the source phase on the
    finished source detector with the source images, then frozen (a source-free method may use it;
    it never sees source data). A ``torch.nn.Module`` class registered with
    ``register_source_head(name)``; its state is saved as ``<name>`` and its ``config()`` as
    ``<name>_config`` in ``model.pt``. Built-in heads live in ``baselines/components/``
    (``domain_discriminator.py``: SAR's discriminator)."""

    @classmethod
    def fit(
        cls, model: nn.Module, images: list[torch.Tensor], gen: torch.Generator, device: str, batch_size: int
    ) -> tuple[nn.Module, dict[str, float]]:
        """The trained, frozen head (with ``config() -> dict`` and ``freeze()``) and its statistics."""
        ...


SOURCE_HEADS: Registry[type[SourceHead]] = Registry(
    "source head", "labelbudget.source_heads", ("baselines.components",)
)


def register_source_head(name: str):
    return SOURCE_HEADS.register(name)


# ------------------------------------------------------------------------------ checkpoints


@dataclass
class SourceCheckpoint:
    """A published source checkpoint: where it is, its hash and what it cost."""

    path: Path  # model.pt
    sha256: str
    key: str
    train_s: float
    reused: bool
    meta: dict[str, Any] = field(default_factory=dict)
    _ckpt: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._ckpt is None:
            self._ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        return self._ckpt

    def detector_state(self) -> dict[str, torch.Tensor]:
        return self._load()["detector"]

    def head(self, name: str) -> nn.Module:
        """A fresh, frozen copy of the checkpoint's source head ``name`` (``SOURCE_HEADS``)."""
        ck = self._load()
        with torch.random.fork_rng(devices=[]):
            head = SOURCE_HEADS.get(name)(**ck[f"{name}_config"])
        head.load_state_dict(ck[name])
        return head.freeze()

    def record_fields(self) -> dict[str, Any]:
        return {
            "init": "source",
            "source_checkpoint": self.sha256,
            "source_train_s": round(self.train_s, 3),
            "source_reused": self.reused,
        }


SCRATCH_RECORD = {"init": "scratch", "source_checkpoint": None, "source_train_s": 0.0, "source_reused": False}


def source_key(cell: Cell, data: DomainData, source: DomainDataset) -> str:
    return canonical_hash(
        {
            "domain": cell.domain.name,
            "options": cell.domain.options,
            "data": cell.domain.data_label(),
            "dataset": cell.dataset_version or data.version,
            "source_split": source.version,
            "seed": cell.seed,
            "detector": cell.detector,
            "detector_options": cell.detector_options,
            "schedule": asdict(cell.schedule),
            "threads": cell.threads,
            "code": code_version(),
        },
        24,
    )


def _exclusive(lock_path: Path) -> contextlib.AbstractContextManager:
    """Hold the build lease on ``lock_path`` (``benchmark.runstate.exclusive``): one worker on any
    host that shares the folder builds, the others wait; a crashed builder's lease goes stale and a
    waiter takes over. The atomic rename below keeps the cache correct even without it."""
    return exclusive(lock_path, what="source checkpoint")


def _published(final: Path, key: str, reused: bool) -> SourceCheckpoint:
    meta = json.loads((final / "meta.json").read_text())
    return SourceCheckpoint(
        final / "model.pt", file_sha256(final / "model.pt"), key, float(meta["train_s"]), reused, meta
    )


def train_source(
    cell: Cell,
    source: DomainDataset,
    new_scratch: Callable[[], nn.Module],
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The source phase (module docstring): returns the checkpoint dict and its statistics."""
    store = ImageStore(source.image)
    images = store.many(source.ids)
    targets = [sample_targets(s) for s in source]
    gen = torch.Generator().manual_seed(cell.seeds.source)
    model = new_scratch()
    train_supervised(model, images, targets, cell.schedule, gen, device, progress)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "detector": state}
    stats: dict[str, Any] = {}
    for name in SOURCE_HEADS.names():  # each head draws from ``gen`` in turn, in name order
        head, head_stats = SOURCE_HEADS.get(name).fit(
            model, images, gen, device, min(8, cell.schedule.batch_size)
        )
        ckpt[name] = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        ckpt[f"{name}_config"] = head.config()
        stats.update(head_stats)
    stats.update({"n_source": len(source), "source_version": source.version})
    return ckpt, stats


def ensure_source_checkpoint(
    cell: Cell,
    out: Path,
    data: DomainData,
    new_scratch: Callable[[], nn.Module],
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> SourceCheckpoint | None:
    """Train (once) and return the cell's source checkpoint; None when the domain has no source
    split (every method then starts from the same scratch initialisation)."""
    source = source_dataset(data)
    if source is None:
        return None
    key = source_key(cell, data, source)
    root = Path(out) / "_cache" / "source"
    final = root / key
    if (final / "DONE").is_file():
        return _published(final, key, reused=True)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f"{key}.lease"):
        if (final / "DONE").is_file():  # another worker published it while we waited
            return _published(final, key, reused=True)
        tmp = root / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir(parents=True)
        try:
            t0 = time.perf_counter()
            ckpt, stats = train_source(cell, source, new_scratch, device, progress)
            train_s = time.perf_counter() - t0
            torch.save(ckpt, tmp / "model.pt")
            meta = {
                "key": key,
                "domain": cell.domain.name,
                "seed": cell.seed,
                "detector": cell.detector,
                "train_s": round(train_s, 3),
                "sha256": file_sha256(tmp / "model.pt"),
                "code": code_version(),
                **stats,
            }
            atomic_write_json(tmp / "meta.json", meta)
            atomic_write_text(tmp / "DONE", "ok\n")
            try:
                os.rename(tmp, final)
                reused = False
            except OSError:  # published by a worker that could not take the lock: theirs wins
                if not (final / "DONE").is_file():
                    raise
                reused = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return _published(final, key, reused=reused)


def source_record(ckpt: SourceCheckpoint | None, pretrained: bool = False) -> dict[str, Any]:
    """The record fields of the starting weights: ``init`` is "source" (a source checkpoint, itself
    trained from the run's start), "pretrained" (the shared pretrained start,
    ``benchmark.detectors.start``; its sha256 is in the record's ``detector_options``) or "scratch"."""
    if ckpt is not None:
        return ckpt.record_fields()
    return {**SCRATCH_RECORD, "init": "pretrained"} if pretrained else dict(SCRATCH_RECORD)
