"""Code versions: hashes of the code that runs, not of how it is written.

A method's (or strategy's) version hashes every project module that can run when it trains: its own
module and its base classes' modules, the detector package, the augmentations and the training loop
(``ALWAYS``), and every project module those import, at any depth, lazy (function-level) imports
included. Imports are read from each module's syntax tree, so nothing is imported to find them.

Each module enters the hash normalised: parsed, its docstrings removed, and printed back by
``ast.unparse``. Comments, docstrings, blank lines and formatting therefore change no version; any
change to a statement, a default or a constant does. Bookkeeping modules that decide where records go
but not what a method computes (``NOT_BEHAVIOUR``) are left out.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

PROJECT_PACKAGES = ("benchmark", "baselines", "domains")
# bookkeeping: where records, caches and synthetic data go and how they are named, not what a method
# computes (a dataset's content is versioned by the records' ``dataset_version``, not by code)
NOT_BEHAVIOUR = frozenset(
    {
        "benchmark.registry",
        "benchmark.spec",
        "benchmark.results",
        "benchmark.atomic",
        "benchmark.runstate",
        "benchmark.codehash",
        "benchmark",
        "domains.synthetic",
        "domains.synthetic.cache",
    }
)
# what every trainer runs, whether or not its module names it: the detector, the augmentations, the loop
ALWAYS = ("benchmark.detectors", "benchmark.augment", "benchmark.training")


def _is_project(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES


def module_path(name: str, root: Path | None = None) -> Path | None:
    """The source file of module ``name`` (a package's ``__init__.py``), or None; under ``root`` (a
    source tree holding the project's packages) instead of where Python imports it from."""
    if root is None:
        return _installed_path(name)
    base = Path(root, *name.split("."))
    for p in (base / "__init__.py", base.with_suffix(".py")):
        if p.is_file():
            return p
    return None


@functools.cache
def _installed_path(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_package(name: str, root: Path | None = None) -> bool:
    p = module_path(name, root)
    return p is not None and p.name == "__init__.py"


def _read(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=1024)
def _imports_in(key: tuple[str, int, int]) -> tuple[tuple[int, str | None, tuple[str, ...]], ...]:
    """``(level, module, names)`` of every import statement of the file (cached per file version)."""
    out = []
    for node in ast.walk(_read(Path(key[0]))):
        if isinstance(node, ast.Import):
            out += [(0, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module, tuple(a.name for a in node.names)))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _normalised(key: tuple[str, int, int]) -> str:
    return ast.unparse(_strip_docstrings(_read(Path(key[0]))))


def direct_imports(name: str, root: Path | None = None) -> set[str]:
    """Project modules that module ``name`` imports anywhere in its body (top level, functions,
    methods, conditional blocks), with the project packages above each of them."""
    path = module_path(name, root)
    if path is None:
        return set()
    package = name if _is_package(name, root) else name.rpartition(".")[0]
    found: set[str] = set()
    for level, module, names in _imports_in(_key(path)):
        if level:
            base = package.split(".")
            base = base[: len(base) - (level - 1)] if level > 1 else base
            mod = ".".join([*base, module] if module else base)
        else:
            mod = module or ""
        found.add(mod)
        for a in names:  # `from pkg import submodule`
            if module_path(f"{mod}.{a}", root) is not None:
                found.add(f"{mod}.{a}")
    out = set()
    for mod in found:
        parts = mod.split(".")
        for k in range(1, len(parts) + 1):
            sub = ".".join(parts[:k])
            if _is_project(sub) and module_path(sub, root) is not None:
                out.add(sub)
    return out


def closure(seeds: Iterable[str], root: Path | None = None) -> list[str]:
    """``seeds`` (a package brings all its modules) and every project module they import,
    transitively, minus ``NOT_BEHAVIOUR``; sorted."""
    todo = []
    for s in seeds:
        todo.append(s)
        p = module_path(s, root)
        if p is not None and p.name == "__init__.py":
            todo += [f"{s}.{f.stem}" for f in sorted(p.parent.glob("*.py")) if f.stem != "__init__"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not _is_project(name) or module_path(name, root) is None:
            continue
        seen.add(name)
        todo.extend(direct_imports(name, root) - seen)
    return sorted(seen - NOT_BEHAVIOUR)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def normalised_source(name: str, root: Path | None = None) -> str:
    """Module ``name`` as ``ast.unparse`` prints it without docstrings (comments and formatting gone)."""
    path = module_path(name, root)
    return "" if path is None else _normalised(_key(path))


def code_hash(modules: Iterable[str], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\n" + normalised_source(name, root).encode() + b"\n")
    return h.hexdigest()[:12]


def class_modules(cls: type, always: Iterable[str] = ALWAYS, root: Path | None = None) -> list[str]:
    """The modules a trainer or strategy class runs: its MRO's project modules, ``always``, and what
    they import (``closure``)."""
    seeds = [k.__module__ for k in cls.__mro__ if _is_project(k.__module__)]
    return closure([*seeds, *always], root)
