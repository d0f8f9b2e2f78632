"""The method contract: trainers (``Method``) and acquisition strategies (``Strategy``).

A contributor adds a method in one file::

    @register_method("my_method")
    class MyMethod(Method):
        paradigm = "ssl"                 # supervised | ssl | sfda
        default_strategy = "entropy"
        hparams = {"threshold": 0.7}     # every hyper-parameter with its default
        def train(self, ctx: TrainContext) -> torch.nn.Module: ...

and a strategy with ``@register_strategy("name")`` and ``select(ctx, k) -> list[str]``. Methods get
all randomness from the context (``ctx.gen``, ``ctx.rng``), never from global state; they never
read files and never see the test split. Third-party packages register through the entry-point
groups ``labelbudget.methods`` and ``labelbudget.strategies``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.codehash import class_modules, code_hash
from benchmark.registry import Registry
from benchmark.training import ProgressFn, Schedule, predict_all
from domains.base import LabelFreeSample, Sample, SpecError


class ImageStore:
    """Sample id -> uint8 (3, H, W) tensor, decoded once per process."""

    def __init__(self, loader: Callable[[str], np.ndarray]) -> None:
        self._loader = loader
        self._cache: dict[str, torch.Tensor] = {}

    def __getitem__(self, sid: str) -> torch.Tensor:
        t = self._cache.get(sid)
        if t is None:
            im = self._loader(sid)
            t = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))
            self._cache[sid] = t
        return t

    def many(self, ids: list[str]) -> list[torch.Tensor]:
        return [self[i] for i in ids]


@dataclass
class TrainContext:
    """What a trainer gets for one round."""

    labelled: list[Sample]
    unlabelled: list[LabelFreeSample]  # label-free views: reading their labels raises HiddenLabelError
    images: ImageStore
    classes: tuple[str, ...]
    new_detector: Callable[[], torch.nn.Module]  # a fresh detector with the run's initial weights
    schedule: Schedule
    gen: torch.Generator
    rng: np.random.Generator
    device: str = "cpu"
    progress: ProgressFn | None = None
    round: int = 0
    initial_state: dict[str, torch.Tensor] | None = None  # previous round's weights under warm_start

    def start(
        self, unlabelled: bool = True
    ) -> tuple[torch.nn.Module, list[torch.Tensor], list[dict], list[torch.Tensor]]:
        """What every trainer begins with: a fresh detector (with ``initial_state`` loaded under
        warm start), the labelled images and their targets, and (unless ``unlabelled=False``) the
        unlabelled images."""
        from benchmark.training import sample_targets

        model = self.new_detector()
        if self.initial_state is not None:
            model.load_state_dict(self.initial_state)
        images = self.images.many([s.id for s in self.labelled])
        targets = [sample_targets(s) for s in self.labelled]
        rest = self.images.many([s.id for s in self.unlabelled]) if unlabelled else []
        return model, images, targets, rest


@dataclass
class QueryContext:
    """What an acquisition strategy gets: the trained model and the unlabelled pool."""

    model: torch.nn.Module
    labelled: list[Sample]
    unlabelled: list[LabelFreeSample]  # label-free views: reading their labels raises HiddenLabelError
    images: ImageStore
    classes: tuple[str, ...]
    gen: torch.Generator
    rng: np.random.Generator
    device: str = "cpu"
    round: int = 0
    budget_unit: str = "images"
    _preds: dict[str, Any] = field(default_factory=dict)

    def predictions(self, samples: list[Sample] | None = None, dense: bool = False):
        """Model predictions on (by default all) unlabelled samples, computed once and cached."""
        samples = self.unlabelled if samples is None else samples
        missing = [s.id for s in samples if (s.id, dense) not in self._preds]
        if missing:
            preds = predict_all(self.model, self.images.many(missing), device=self.device, dense=dense)
            for sid, p in zip(missing, preds, strict=True):
                self._preds[(sid, dense)] = p
        return [self._preds[(s.id, dense)] for s in samples]

    def embeddings(self, samples: list[Sample] | None = None, batch_size: int = 64) -> np.ndarray:
        """``model.embed`` features (N, D) float32 of (by default all) unlabelled samples, cached."""
        from benchmark.detectors.base import make_batch

        samples = self.unlabelled if samples is None else samples
        missing = [s.id for s in samples if (s.id, "embed") not in self._preds]
        if missing:
            self.model.eval()
            with torch.no_grad():
                for k in range(0, len(missing), batch_size):
                    chunk = missing[k : k + batch_size]
                    feats = self.model.embed(make_batch(self.images.many(chunk)).to(self.device))
                    for sid, f in zip(chunk, feats.float().cpu().numpy(), strict=True):
                        self._preds[(sid, "embed")] = f
        if not samples:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._preds[(s.id, "embed")] for s in samples]).astype(np.float32)


def predicted_box_counts(ctx: QueryContext, min_score: float = 0.3) -> np.ndarray:
    """Predicted boxes per unlabelled sample (detections scoring >= ``min_score``): what a strategy
    can know of an image's annotation cost before the oracle reveals it (box budgets)."""
    return np.array([int((p.scores >= min_score).sum()) for p in ctx.predictions()], dtype=np.int64)


class _Configurable:
    name: ClassVar[str] = "?"
    hparams: ClassVar[dict[str, Any]] = {}

    def __init__(self, **hparams: Any) -> None:
        unknown = set(hparams) - set(self.hparams)
        if unknown:
            raise SpecError(
                f"{self.name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                f"known: {', '.join(sorted(self.hparams))}"
            )
        self.hp = {**self.hparams, **hparams}

    @classmethod
    def code_version(cls) -> str:
        """Hash of the code that runs when the class works (``benchmark.codehash``): its module, its
        bases' modules, the detector, the augmentations, the training loop and every project module
        they import, docstrings, comments and formatting aside. A change to any of them makes old
        results stale (and gives resumed matrices a new run id, see ``Cell.canonical``)."""
        return code_hash(class_modules(cls))

    def version(self) -> str:
        payload = json.dumps({"code": self.code_version(), "hp": self.hp}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class Method(_Configurable, ABC):
    """A trainer. ``paradigm``: supervised | ssl | sfda (drives the leaderboard tracks).

    ``components``: display name -> boolean hyper-parameter of each part an ablation switches off
    (``labelbudget ablate``); ``designed_for``: the domain the method was made for (the ablation's
    default domain); ``last_stats``: the trainer's own statistics of its last ``train`` call (the
    round's record keeps its JSON scalars as ``train_stats``); ``benchmarked``: False for a
    registered method the shipped matrices leave out (the worked example of
    ``docs/adding_a_method.md``; the contract suite still runs it). Semi-supervised methods
    subclass ``baselines.teacher_student.TeacherStudentMethod``."""

    paradigm: ClassVar[str] = "supervised"
    default_strategy: ClassVar[str] = "random"
    components: ClassVar[dict[str, str]] = {}
    designed_for: ClassVar[str | None] = None
    benchmarked: ClassVar[bool] = True

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.last_stats: dict[str, Any] = {}

    @abstractmethod
    def train(self, ctx: TrainContext) -> torch.nn.Module:
        """Return a trained detector (in eval mode)."""


class Strategy(_Configurable, ABC):
    """An acquisition strategy: picks which unlabelled ids to reveal next."""

    paradigm: ClassVar[str] = "al"  # "al", or "passive" for random

    @abstractmethod
    def select(self, ctx: QueryContext, k: int) -> list[str]:
        """Return up to ``k`` distinct unlabelled ids, most wanted first."""


class ScoreStrategy(Strategy):
    """A strategy that scores each unlabelled sample; the top-k win, ties broken at random."""

    @abstractmethod
    def scores(self, ctx: QueryContext) -> np.ndarray:
        """One score per ``ctx.unlabelled`` sample (higher = more wanted)."""

    def select(self, ctx: QueryContext, k: int) -> list[str]:
        if k <= 0 or not ctx.unlabelled:
            return []
        s = np.asarray(self.scores(ctx), dtype=np.float64)
        if s.shape != (len(ctx.unlabelled),):
            raise ValueError(f"{self.name}: expected {len(ctx.unlabelled)} scores, got shape {s.shape}")
        tie = ctx.rng.random(len(s))
        order = np.lexsort((tie, -s))
        return [ctx.unlabelled[i].id for i in order[:k]]


METHODS: Registry[type[Method]] = Registry("method", "labelbudget.methods", ("baselines",))
STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", "labelbudget.strategies", ("baselines.acquisition",)
)


def register_method(name: str):
    return METHODS.register(name)


def register_strategy(name: str):
    return STRATEGIES.register(name)
