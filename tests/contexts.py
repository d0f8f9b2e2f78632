"""Shared test set-ups of the method and strategy contexts."""

from __future__ import annotations

import numpy as np
import torch

from baselines.base import ImageStore, QueryContext


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
