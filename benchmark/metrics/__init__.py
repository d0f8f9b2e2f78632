"""Official metrics of every domain: COCO (``coco``), the DOTA devkit protocol (``dota``),
pedestrian MR^-2 (``pedestrian``), saliency (``saliency``), VOC07 (``voc``), label efficiency
(``efficiency``) and the head / middle / tail view (``long_tail``).

A metric module registers its protocols here with ``@register_protocol(name)``: a protocol is
``fn(domain, test, preds) -> (results dict, implementation string)``; ``dense=True`` marks one that
needs the detector's dense maps (saliency). Each ``MetricSpec`` of a domain names its protocol;
``benchmark.evaluation`` looks it up by name in ``PROTOCOLS``, whose first lookup imports every
module of this package (and the ``labelbudget.metrics`` entry points of third-party packages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.registry import Registry

ProtocolFn = Callable[[Any, Any, Sequence[Any]], tuple[dict[str, Any], str]]


@dataclass
class MetricProtocol:
    """A registered evaluator: ``fn(domain, test, preds)`` and whether it needs dense maps."""

    fn: ProtocolFn
    dense: bool = False
    name: str = "?"

    def __post_init__(self) -> None:
        # the registry tells a module imported twice (the same function) from a name clash by this
        self.__qualname__ = f"{self.fn.__module__}.{self.fn.__qualname__}"

    def __call__(self, domain: Any, test: Any, preds: Sequence[Any]) -> tuple[dict[str, Any], str]:
        return self.fn(domain, test, preds)


PROTOCOLS: Registry[MetricProtocol] = Registry(
    "metric protocol", "labelbudget.metrics", ("benchmark.metrics",)
)


def register_protocol(name: str, dense: bool = False) -> Callable[[ProtocolFn], ProtocolFn]:
    """Decorator: register ``fn`` as the metric protocol ``name`` (returns ``fn`` unchanged)."""

    def deco(fn: ProtocolFn) -> ProtocolFn:
        PROTOCOLS.register(name)(MetricProtocol(fn, dense))
        return fn

    return deco
