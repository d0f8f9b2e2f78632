"""One-way imports: ``python -m benchmark.tools.import_graph`` finds no cycle and no upward
import in the project, and it does find ones planted in a copy of the source tree, lazy
(function-level) and relative imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.tools.import_graph import LAYER_NAMES, build, layer_of, main

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_has_no_cycle_and_no_upward_import():
    r = subprocess.run(
        [sys.executable, "-m", "benchmark.tools.import_graph"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no cycle, no upward import" in r.stdout
    for name in LAYER_NAMES:  # the layer graph is printed
        assert f" {name} " in r.stdout


def test_the_layers_are_the_documented_order():
    order = [layer_of(m) for m in ("domains.geometry", "benchmark.metrics.dota", "benchmark.protocol",
                                   "benchmark.leaderboard", "baselines.mean_teacher")]  # fmt: skip
    assert order == sorted(order) and len(set(order)) == 5
    assert layer_of("benchmark.registry") < layer_of("domains.base")  # registries sit below everything
    assert layer_of("domains.synthetic.dota") > layer_of("domains.dota")  # a writer imports its format


def test_lazy_imports_are_edges():
    g = build(ROOT)
    lazy = [e for e in g.edges if e.lazy]
    assert lazy and all(e.src in g.modules and e.dst in g.modules for e in g.edges)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    copy = tmp_path_factory.mktemp("code") / "tree"
    for pkg in ("domains", "benchmark", "baselines"):
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.toml"))
    assert main(["--root", str(copy)]) == 0  # the unedited copy passes
    return copy


@pytest.fixture
def tree(pristine, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(pristine, copy)
    return copy


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n\n" + text)


def test_a_planted_upward_import_fails(tree, capsys):
    # the lowest domain layer reaching up to the protocol, inside a function
    _append(tree / "domains/geometry.py", "def _planted():\n    from benchmark.protocol import run_cell\n")
    capsys.readouterr()
    assert main(["--root", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "UPWARD IMPORT domains/geometry.py:" in out and "(lazy)" in out
    assert "domains.geometry (domains) imports benchmark.protocol (protocol)" in out


def test_a_planted_relative_upward_import_fails(tree, capsys):
    # a metric importing the orchestrator again, through a relative import
    _append(tree / "benchmark/metrics/coco.py", "from ..evaluation import evaluate_domain  # noqa\n")
    capsys.readouterr()
    assert main(["--root", str(tree)]) == 1
    assert (
        "benchmark.metrics.coco (metrics) imports benchmark.evaluation (protocol)" in capsys.readouterr().out
    )


def test_a_planted_benchmark_to_baselines_import_fails(tree, capsys):
    _append(tree / "benchmark/protocol.py", "import baselines.mean_teacher  # noqa\n")
    capsys.readouterr()
    assert main(["--root", str(tree)]) == 1
    assert "imports baselines.mean_teacher (baselines)" in capsys.readouterr().out


def test_a_planted_cycle_fails(tree, capsys):
    # data <- contexts already; a lazy import back closes a circle inside one layer
    _append(tree / "benchmark/data.py", "def _planted():\n    from benchmark.contexts import TrainContext\n")
    capsys.readouterr()
    assert main(["--root", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "CYCLE among 2 modules" in out and "benchmark.contexts" in out and "benchmark.data" in out
    assert "UPWARD" not in out
