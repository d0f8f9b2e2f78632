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

from benchmark.spec import DomainSetup, canonical_hash, seed_hash
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
    """The loaded pool and test splits of one domain setup, with their images; ``val`` the labelled
    validation part held out of the pool (``split_validation``), or None."""

    domain: Domain
    root: Path
    pool: DomainDataset
    test: DomainDataset
    images: ImageStore
    val: DomainDataset | None = None

    @property
    def version(self) -> str:
        parts = {"pool": self.pool.version, "test": self.test.version}
        if self.val is not None:  # only then: the versions of data without a validation part stay
            parts["validation"] = self.val.version
        return canonical_hash(parts, 16)


def split_validation(pool: DomainDataset, share: float) -> tuple[DomainDataset, DomainDataset]:
    """Hold out ``share`` of the pool's groups (a DOTA scene's patches, a video's frames, a Foggy
    Cityscapes city frame's renderings stay together) as a labelled validation part: the groups in
    a fixed random order (``seed_hash("validation")``: the same part for every seed and method), as
    many as make ``round(share * n_groups)`` (at least one). Returns (the pool without them, the
    validation part). Defaults are chosen on it, never on the test split."""
    groups = sorted({s.group for s in pool})
    n_val = max(1, round(share * len(groups)))
    if n_val >= len(groups):
        raise SpecError(f"{pool.domain}: a validation share of {share} leaves no pool ({len(groups)} groups)")
    rng = np.random.default_rng(seed_hash("validation"))
    held = {groups[i] for i in rng.permutation(len(groups))[:n_val]}
    parts = []
    for split, keep in (("pool", False), ("validation", True)):
        samples = [s for s in pool if (s.group in held) == keep]
        digest = canonical_hash({"from": pool.version, "validation_groups": sorted(held), "part": split})
        part = DomainDataset(pool.domain, split, pool.classes, samples, digest, pool.report, pool.options)
        scenes = getattr(pool, "scenes", None)
        if scenes is not None:  # patch-based DOTA: the whole scenes its devkit protocol scores against
            part.scenes = [sc for sc in scenes if (sc.group in held) == keep]  # type: ignore[attr-defined]
        parts.append(part)
    return parts[0], parts[1]


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
        setup.validation,
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

    val = None
    if setup.validation:
        pool, val = split_validation(pool, setup.validation)

    def loader(sid: str) -> np.ndarray:
        if sid in pool:
            return pool.image(sid)
        return val.image(sid) if val is not None and sid in val else test.image(sid)

    data = DomainData(domain, root, pool, test, ImageStore(loader), val)
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
