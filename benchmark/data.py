"""A domain's data as a run sees it: the loaded splits (``DomainData``), the image store, and the
per-process caches that load each of them once.

``load_domain_data(setup)`` resolves the dataset root (a user's ``--data-root``, or the synthetic
data, generated on first use by ``domains.synthetic.ensure_synthetic``), verifies it, loads the
``pool`` and ``test`` splits and checks that no group straddles them; ``source_dataset(data)`` loads
the ``source`` split of a shifted domain (the source checkpoint trains on it, ``benchmark.source``).
``ImageStore`` decodes each sample's pixels once per process. Methods never get a ``DomainData``:
the protocol hands them the labelled samples and the label-free views of the unlabelled ones
(``domains.base.LabelFreeSample``, made by ``Sample.label_free()``; they stay in the domain layer
because a ``Sample`` makes them and every layer above may use them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.spec import DomainSetup, canonical_hash
from domains.base import DatasetNotFoundError, Domain, DomainDataset, SpecError, get_domain
from domains.synthetic import ensure_synthetic


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
class DomainData:
    """The loaded pool and test splits of one domain setup, with their images."""

    domain: Domain
    root: Path
    pool: DomainDataset
    test: DomainDataset
    images: ImageStore

    @property
    def version(self) -> str:
        return canonical_hash({"pool": self.pool.version, "test": self.test.version}, 16)


_DATA_CACHE: dict[Any, DomainData] = {}
_SOURCE_DATA: dict[Any, DomainDataset | None] = {}


def resolve_root(setup: DomainSetup, progress: bool = True) -> Path:
    """The dataset root of ``setup``: its ``root``, else the synthetic data (generated once)."""
    if setup.root is not None:
        return Path(setup.root)
    return ensure_synthetic(setup.name, setup.synthetic_size, setup.synthetic_seed, progress=progress)


def load_domain_data(setup: DomainSetup, progress: bool = True) -> DomainData:
    """Load (once per process) the pool and test splits of a domain."""
    key = (
        setup.name,
        tuple(sorted(setup.options.items())),
        setup.root,
        setup.synthetic_size,
        setup.synthetic_seed,
    )
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    domain = get_domain(setup.name, **setup.options)
    root = resolve_root(setup, progress)
    domain.verify(root)
    pool = domain.load(root, "pool")
    test = domain.load(root, "test")
    overlap = {s.group for s in pool} & {s.group for s in test}
    if overlap:
        raise SpecError(f"{setup.name}: groups {sorted(overlap)[:5]} appear in both pool and test splits")

    def loader(sid: str) -> np.ndarray:
        return pool.image(sid) if sid in pool else test.image(sid)

    data = DomainData(domain, root, pool, test, ImageStore(loader))
    _DATA_CACHE[key] = data
    return data


def source_dataset(data: DomainData) -> DomainDataset | None:
    """The domain's ``source`` split (loaded once per process), or None if it has none."""
    dom = data.domain
    key = (dom.name, json.dumps(dom.options, sort_keys=True, default=str), str(data.root))
    if key not in _SOURCE_DATA:
        src = None
        if "source" in dom.splits:
            try:
                src = dom.load(data.root, "source")
            except DatasetNotFoundError as exc:
                raise DatasetNotFoundError(
                    f"{exc}; this run needs the source split: every method of {dom.name} starts from a "
                    "checkpoint trained on it"
                ) from None
        _SOURCE_DATA[key] = src if src is not None and len(src) else None
    return _SOURCE_DATA[key]
