"""Shared test set-ups of the method and strategy contexts."""

from __future__ import annotations

import numpy as np
import torch

from baselines.base import ImageStore, QueryContext, TrainContext
from benchmark.training import Schedule


def query_context(
    pool, model, seed: int = 0, device: str = "cpu", n_labelled: int = 8, n_unlabelled: int | None = None
) -> QueryContext:
    """A ``QueryContext`` seeded with ``seed``: the first ``n_labelled`` pool samples labelled, the next
    ``n_unlabelled`` (default: all the rest) as label-free views (what the protocol hands a strategy)."""
    items = list(pool)
    stop = None if n_unlabelled is None else n_labelled + n_unlabelled
    return QueryContext(
        model,
        items[:n_labelled],
        [s.label_free() for s in items[n_labelled:stop]],
        ImageStore(pool.image),
        pool.classes,
        torch.Generator().manual_seed(seed),
        np.random.default_rng(seed),
        device=device,
    )


def loop_context(
    schedule: Schedule | None = None,
    classes: tuple[str, ...] = ("a", "b", "c"),
    seed: int = 0,
    labelled: list | tuple = (),
    new_detector=None,
) -> TrainContext:
    """A bare ``TrainContext`` for driving a teacher-student method's hooks by hand
    (``method.loop(ctx)``): the schedule (default ``Schedule()``), the classes, a generator seeded
    with ``seed``, and optionally labelled samples and a ``new_detector``; no images."""
    return TrainContext(
        list(labelled),
        [],
        ImageStore(lambda sid: np.zeros((1, 1, 3), np.uint8)),
        tuple(classes),
        new_detector if new_detector is not None else (lambda: None),
        schedule or Schedule(),
        torch.Generator().manual_seed(seed),
        np.random.default_rng(seed),
    )
