"""Registries: built-in discovery, third-party entry points, clear errors for unknown names."""

from __future__ import annotations

import sys
import types

import pytest

import benchmark.registry as registry_mod
from benchmark.registry import Registry, UnknownNameError


class FakeEntryPoint:
    def __init__(self, name, obj):
        self.name = name
        self._obj = obj

    def load(self):
        return self._obj


def test_entry_point_registers_a_third_party_class(monkeypatch):
    class ThirdParty:
        pass

    monkeypatch.setattr(
        registry_mod, "entry_points", lambda group: [FakeEntryPoint("thirdparty", ThirdParty)]
    )
    reg: Registry = Registry("strategy", "labelbudget.strategies", ())
    assert reg.get("thirdparty") is ThirdParty and "thirdparty" in reg.names()


def test_entry_point_naming_a_module_registers_through_its_decorator(monkeypatch):
    reg: Registry = Registry("method", "labelbudget.methods", ())
    mod = types.ModuleType("thirdparty_mod")

    @reg.register("tp_method")
    class TP:
        pass

    monkeypatch.setitem(sys.modules, "thirdparty_mod", mod)
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [FakeEntryPoint("tp", mod)])
    assert reg.names() == ["tp_method"]


def test_unknown_name_lists_the_registered_ones():
    from baselines.base import METHODS

    with pytest.raises(UnknownNameError, match="registered: .*supervised"):
        METHODS.get("nope")


def test_builtins_are_discovered():
    from baselines.base import METHODS, STRATEGIES
    from domains.base import DOMAINS

    assert "dota" in DOMAINS.names() and "supervised" in METHODS.names()
    assert {"random", "entropy"} <= set(STRATEGIES.names())


def test_default_matrix_runs_every_registered_method_on_every_domain():
    from baselines.base import METHODS
    from benchmark.spec import load_matrix, parse_trainer

    m = load_matrix("default")
    trainers = {parse_trainer(c.trainer)[0] for c in m.cells}
    assert trainers == {n for n in METHODS.names() if METHODS.get(n).benchmarked}
    assert set(m.domains) == {"dota", "sonar", "foggy_cityscapes", "pedestrian"}
    per_domain = {(c.domain.name, parse_trainer(c.trainer)[0]) for c in m.cells}
    assert len(per_domain) == 4 * len(trainers)


def test_code_version_covers_shared_code_and_changes_the_run_id(monkeypatch):
    """A method's version covers the shared loop, the detector and the augmentations it runs (not just
    its own module), and a changed version gives the cell a new run id, so resuming a matrix never
    keeps rounds of old code."""
    from baselines.base import METHODS
    from benchmark.codehash import class_modules
    from benchmark.spec import load_matrix

    names = class_modules(METHODS.get("mean_teacher"))
    want = {"baselines.mean_teacher", "benchmark.training", "baselines.base", "benchmark.detectors.fcos",
            "benchmark.augment"}  # fmt: skip
    assert want <= set(names)
    assert "benchmark.registry" not in names and "benchmark.spec" not in names

    cell = load_matrix("tiny").cells[0]
    before_v, before_id = cell.code_versions(), cell.run_id
    monkeypatch.setattr("baselines.base.code_hash", lambda mods: "changed-code")
    assert cell.code_versions()["trainer"] != before_v["trainer"]
    assert cell.run_id != before_id
