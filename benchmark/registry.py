"""A small named registry filled by decorators and by package entry points.

Domains, methods and acquisition strategies each have one. The registries drive the CLI choices,
``labelbudget list`` and the contract tests, so adding a plug-in is one file and one decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no plug-in registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> class. ``builtin_modules`` are imported lazily on first lookup; ``group`` names the
    entry-point group from which third-party packages add their own entries."""

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...]) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._loaded = False

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
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            importlib.import_module(mod)
        for ep in entry_points(group=self.group):
            obj = ep.load()
            # an entry point may name a module (whose decorators register) or an object
            if not isinstance(obj, type(importlib)) and ep.name not in self._items:
                self.register(ep.name)(obj)

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
