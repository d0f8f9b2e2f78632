"""Method and strategy versions hash the code that runs, not how it is written: an edit to
the detector or the augmentations changes every version; a docstring or comment edit changes none.

The edits go to a temporary copy of the source tree; ``benchmark.codehash`` reads the copy (``root``)
exactly as it reads the installed tree when a method computes ``code_version()``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from baselines.base import METHODS, STRATEGIES
from benchmark.codehash import class_modules, code_hash

ROOT = Path(__file__).resolve().parents[2]
CLASSES = {f"m:{n}": METHODS.get(n) for n in METHODS.names()} | {
    f"s:{n}": STRATEGIES.get(n) for n in STRATEGIES.names()
}


def versions(tree: Path | None) -> dict[str, str]:
    return {k: code_hash(class_modules(c, root=tree), root=tree) for k, c in CLASSES.items()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tree = tmp_path_factory.mktemp("code") / "tree"
    for pkg in ("benchmark", "baselines", "domains"):
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tree, versions(tree)


def edited_copy(pristine, tmp_path, edits):
    copy = tmp_path / "tree"
    shutil.copytree(pristine[0], copy)
    for rel, fn in edits.items():
        p = copy / rel
        p.write_text(fn(p.read_text()))
    return copy


def test_the_copy_hashes_like_the_installed_tree(pristine):
    assert pristine[1] == versions(None)
    assert {k: CLASSES[k]().code_version() for k in CLASSES} == pristine[1]
    assert len([k for k in CLASSES if k.startswith("m:")]) >= 6 and any(k.startswith("s:") for k in CLASSES)


@pytest.mark.parametrize("rel", ["benchmark/detectors/fcos.py", "benchmark/augment.py"])
def test_code_edit_changes_every_version(pristine, tmp_path, rel):
    copy = edited_copy(pristine, tmp_path, {rel: lambda s: s + "\n_EDITED_CONSTANT = 0.5\n"})
    after = versions(copy)
    unchanged = [k for k, v in pristine[1].items() if after[k] == v]
    assert not unchanged, f"{rel} edited, yet these versions did not change: {unchanged}"


def test_docstring_and_comment_edits_change_no_version(pristine, tmp_path):
    def docstring(s: str) -> str:
        q = s.index('"""') + 3
        return s[:q] + "An edited docstring sentence. " + s[q:]

    def comment_and_layout(s: str) -> str:
        return "# an added comment line\n" + s.replace("\n\n", "\n\n\n", 1) + "\n# a trailing comment\n"

    edits = {
        "baselines/base.py": docstring,
        "benchmark/detectors/fcos.py": docstring,
        "benchmark/training.py": comment_and_layout,
        "benchmark/augment.py": comment_and_layout,
    }
    copy = edited_copy(pristine, tmp_path, edits)
    for rel in edits:
        assert (copy / rel).read_text() != (pristine[0] / rel).read_text()
    assert versions(copy) == pristine[1]


def test_a_version_covers_what_the_class_runs_and_not_the_scoring():
    """With one-way imports a method's version hashes its own code, the contract, the detector, the
    augmentations, the loop and the geometry it uses, and nothing of the scoring (evaluation, metrics),
    the dataset formats or the synthetic generators: a metric fix leaves every method version as it is
    (the metric code is versioned by ``metrics_code_version`` in the round-0 cache key)."""
    for key, cls in CLASSES.items():
        mods = set(class_modules(cls))
        assert {cls.__module__, "baselines.base", "benchmark.training", "benchmark.detectors.fcos"} <= mods
        scoring = {m for m in mods if m.startswith(("benchmark.metrics", "benchmark.evaluation"))}
        formats = {m for m in mods if m.startswith(("domains.synthetic", "domains.dota", "domains.coco"))}
        assert not scoring and not formats, f"{key} hashes {sorted(scoring | formats)}"
