"""Shared fixtures: a private synthetic-data cache for the session, and no network access."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Synthetic datasets are generated once per test session into a temporary cache."""
    old = os.environ.get("LABELBUDGET_CACHE")
    cache = tmp_path_factory.mktemp("lbcache")
    os.environ["LABELBUDGET_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("LABELBUDGET_CACHE", None)
    else:
        os.environ["LABELBUDGET_CACHE"] = old


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch):
    """Any attempt to open a network connection fails loudly: tests never download."""

    def guard(self, address, *a, **k):
        if isinstance(address, tuple) and address and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"network access in a test: {address}")
        return real_connect(self, address, *a, **k)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", guard)


@pytest.fixture(scope="session")
def dota_tiny_root(_private_cache) -> Path:
    from domains.synthetic import ensure_synthetic

    return ensure_synthetic("dota", "tiny", 0, progress=False)


def _train_context(
    pool,
    new_detector,
    labelled: slice = slice(0, 8),
    unlabelled: slice = slice(8, 16),
    iterations: int = 4,
    device: str = "cpu",
):
    """A ``TrainContext`` on a few pool samples with a short schedule, seeded with 0."""
    import numpy as np
    import torch

    from baselines.base import ImageStore, TrainContext
    from benchmark.training import Schedule

    items = list(pool)
    return TrainContext(
        items[labelled],
        [s.label_free() for s in items[unlabelled]],
        ImageStore(pool.image),
        pool.classes,
        new_detector,
        Schedule(iterations=iterations, batch_size=2, warmup=1),
        torch.Generator().manual_seed(0),
        np.random.default_rng(0),
        device=device,
    )


@pytest.fixture(scope="session")
def make_train_context():
    """Factory for the tests' common training set-up (see ``_train_context``)."""
    return _train_context


@pytest.fixture
def cached_backbone_weights(tmp_path_factory, monkeypatch):
    """The ``full`` matrix's ImageNet ResNet-50 weights must be on disk before it validates (no download
    mid-run): a stand-in file in a private torch hub cache (nothing loads it in these tests)."""
    import torch

    hub = tmp_path_factory.mktemp("hub")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    from benchmark.detectors import hub_weights_file

    hub_weights_file().parent.mkdir(parents=True, exist_ok=True)
    hub_weights_file().write_bytes(b"")
    return hub_weights_file()
