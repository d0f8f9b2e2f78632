"""Where synthetic datasets live, and generating them once on first use."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from domains.base import DOMAINS, SpecError


def cache_dir() -> Path:
    """``$LABELBUDGET_CACHE`` if set, else ``$XDG_CACHE_HOME/labelbudget`` or ``~/.cache/labelbudget``."""
    env = os.environ.get("LABELBUDGET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "labelbudget"


def synthetic_root(domain: str, size: str, seed: int) -> Path:
    version = DOMAINS.get(domain).synthetic_version
    return cache_dir() / "synthetic" / f"{domain}-{size}-seed{seed}-v{version}"


def ensure_synthetic(domain: str, size: str = "small", seed: int = 0, progress: bool = True) -> Path:
    """Return the root of the synthetic dataset, generating it (atomically) if it is not there yet.

    Two processes that race here both generate into their own temp folder; the rename is atomic,
    so the reader always sees a complete tree.
    """
    root = synthetic_root(domain, size, seed)
    if (root / ".complete").is_file():
        return root
    DOMAINS.get(domain).synthesize(root, seed=seed, size=size, progress=progress)
    (root / ".complete").write_text("ok\n")
    return root


MARKER = ".labelbudget-synthetic"  # written into every synthetic tree: what `atomic_tree` may replace


def synth_marker(root: Path) -> str | None:
    """The domain named by the marker file of a synthetic tree this tool wrote, else None."""
    p = Path(root) / MARKER
    try:
        return str(json.loads(p.read_text())["domain"]) if p.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_synth_target(root: Path, domain: str, force: bool = False) -> None:
    """Refuse to write a synthetic ``domain`` to ``root`` unless ``root`` is absent, an empty folder, or
    a synthetic tree this tool wrote (its marker file): of the same domain, or of another one with
    ``force``. A user's files are never deleted."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SpecError(
            f"{root} is a file, not a folder; give a folder to write the synthetic {domain} data to"
        )
    if not root.is_dir() or not any(root.iterdir()):
        return
    owner = synth_marker(root)
    if owner is None:
        raise SpecError(
            f"{root} is not empty and is not a synthetic dataset written by labelbudget (no {MARKER} "
            "file); refusing to replace it: give a new or empty folder"
        )
    if owner != domain and not force:
        raise SpecError(
            f"{root} holds synthetic {owner} data; pass --force to replace it with synthetic {domain} data"
        )


@contextlib.contextmanager
def atomic_tree(root: Path, domain: str = "") -> Iterator[Path]:
    """Write a dataset tree atomically: yields a temporary folder beside ``root`` that replaces
    ``root`` when the block finishes, and is deleted if it raises (a reader never sees half a tree).

    Only an empty folder or a tree with the marker file (one this tool wrote) is ever replaced;
    anything else raises ``SpecError`` before a byte is written (``check_synth_target``)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SpecError(f"{root} is a file, not a folder")
    if root.is_dir() and any(root.iterdir()) and synth_marker(root) is None:
        raise SpecError(
            f"{root} is not empty and is not a synthetic dataset written by labelbudget (no {MARKER} "
            "file); refusing to replace it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"domain": domain}) + "\n")
        if root.is_dir():
            if synth_marker(root) is None and any(root.iterdir()):  # appeared meanwhile: keep it
                raise SpecError(f"{root} was filled by someone else meanwhile; refusing to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
            os.replace(root, old / "tree")  # move aside first: the swap leaves no half tree
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
