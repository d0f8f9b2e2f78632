"""A small named registry filled by decorators and by package entry points.

Domains, synthetic writers, metric protocols, methods, acquisition strategies and launchers each have
one. The registries drive the CLI choices, ``labelbudget list`` and the contract tests, so adding a
plug-in is one file and one decorator.

A registry is also how a lower layer reaches a higher one without importing it (the layers are in
``benchmark/tools/import_graph.py``): on its first lookup a registry imports, by name, every module
of its ``builtin_packages``, whose decorators then register. ``METHODS`` and ``STRATEGIES`` live here
for that reason: the protocol looks a trainer or strategy up by name (``METHODS.get("mean_teacher")``)
and the lookup imports ``baselines`` and ``baselines.acquisition``; no module of ``benchmark``
imports ``baselines``, which sits on top and imports the benchmark freely.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no plug-in registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> class. On first lookup every module of the ``builtin_packages`` is imported (so a
    contributor's new file registers itself), then the entry points of ``group`` are loaded."""

    def __init__(self, kind: str, group: str, builtin_packages: tuple[str, ...]) -> None:
        self.kind = kind
        self.group = group
        self._builtin_packages = builtin_packages
        self._items: dict[str, T] = {}
        self._loaded = False
        self._loading = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                existing = self._items[name]
                if getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None):
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
            obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True  # a module that looks a name up while it is imported sees the partial registry
        try:
            for pkg_name in self._builtin_packages:
                pkg = importlib.import_module(pkg_name)
                for info in pkgutil.iter_modules(pkg.__path__):
                    if (
                        not info.ispkg
                        and not info.name.startswith("_")
                        and info.name not in ("base", "cache")
                    ):
                        importlib.import_module(f"{pkg_name}.{info.name}")
            for ep in entry_points(group=self.group):
                obj = ep.load()
                # an entry point may name a module (whose decorators register) or an object
                if not isinstance(obj, type(importlib)) and ep.name not in self._items:
                    self.register(ep.name)(obj)
            self._loaded = True  # only after every import succeeded: a failed import is raised again
        finally:
            self._loading = False

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# The contract classes (``Method``, ``Strategy``) are in ``baselines.base``, which re-exports these.
METHODS: Registry[Any] = Registry("method", "labelbudget.methods", ("baselines",))
STRATEGIES: Registry[Any] = Registry("strategy", "labelbudget.strategies", ("baselines.acquisition",))
