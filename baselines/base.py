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
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.codehash import class_modules, code_hash
from benchmark.contexts import QueryContext, TrainContext
from benchmark.data import ImageStore as ImageStore  # re-exported: what a context's ``images`` is
from benchmark.registry import METHODS, STRATEGIES
from domains.base import SpecError


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


def register_method(name: str):
    return METHODS.register(name)


def register_strategy(name: str):
    return STRATEGIES.register(name)
