"""Where synthetic datasets live, and generating them once on first use."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """``$LABELBUDGET_CACHE`` if set, else ``$XDG_CACHE_HOME/labelbudget`` or ``~/.cache/labelbudget``."""
    env = os.environ.get("LABELBUDGET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "labelbudget"


def synthetic_root(domain: str, size: str, seed: int) -> Path:
    from domains.base import DOMAINS

    version = DOMAINS.get(domain).synthetic_version
    return cache_dir() / "synthetic" / f"{domain}-{size}-seed{seed}-v{version}"


def ensure_synthetic(domain: str, size: str = "small", seed: int = 0, progress: bool = True) -> Path:
    """Return the root of the synthetic dataset, generating it (atomically) if it is not there yet.

    Two processes that race here both generate into their own temp folder; the rename is atomic,
    so the reader always sees a complete tree.
    """
    from domains.base import DOMAINS

    root = synthetic_root(domain, size, seed)
    if (root / ".complete").is_file():
        return root
    DOMAINS.get(domain).synthesize(root, seed=seed, size=size, progress=progress)
    (root / ".complete").write_text("ok\n")
    return root


@contextlib.contextmanager
def atomic_tree(root: Path) -> Iterator[Path]:
    """Write a dataset tree atomically: yields a temporary folder beside ``root`` that replaces
    ``root`` when the block finishes, and is deleted if it raises (a reader never sees half a tree)."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        yield tmp
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
