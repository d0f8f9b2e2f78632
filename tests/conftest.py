"""Shared fixtures: a private synthetic-data cache for the session, and no network access.

Layout. The test folders mirror the packages: ``tests/domains``, ``tests/metrics``, ``tests/baselines``,
``tests/benchmark`` (the CLI, protocol pieces, detectors, leaderboards, run state) and ``tests/e2e``
(end-to-end runs through the protocol or the CLI; ``tests/e2e/conftest.py`` marks all of them ``slow``).
Shared helpers (``minimatrix``, ``contexts``) live in ``tests/``, fake-data writers in ``tests/data/``;
both are on ``sys.path`` after the repository root (``pythonpath`` in pyproject.toml: the root comes
first so that ``import benchmark`` finds the package, not the folder ``tests/benchmark``). The test
folders have no ``__init__.py``: with one, ``tests/benchmark/test_cli.py`` would be imported as
``benchmark.test_cli``, a module of the package of the same name; test file names are unique across
folders instead (pytest refuses duplicates).

``pytest -m "not slow"`` is the fast inner loop; ``pytest`` is the full suite CI runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    inits = sorted(Path(__file__).parent.glob("*/__init__.py"))
    if inits:
        raise pytest.UsageError(
            f"{inits[0]}: test folders have no __init__.py (their tests would be imported as modules of the "
            "package of the same name); give the test file a unique name instead (see tests/conftest.py)"
        )


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
