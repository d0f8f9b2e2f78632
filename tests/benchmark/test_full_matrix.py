"""The ``full`` matrix (every method on the four real datasets), fraction budgets, per-domain
schedules, ``real_data`` and ``labelbudget run --dry-run``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.spec import DomainSetup, load_matrix, parse_budgets, resolve_budgets
from domains.base import DatasetNotFoundError, SpecError

FULL_DOMAINS = {"dota", "sonar", "foggy_cityscapes", "pedestrian"}


pytestmark = pytest.mark.usefixtures("cached_backbone_weights")


def _fake_roots(tmp_path: Path) -> dict[str, str]:
    return {d: str(tmp_path / d) for d in FULL_DOMAINS}


def test_full_names_every_trainer_and_the_four_domains(tmp_path):
    from baselines.base import METHODS

    m = load_matrix("full", data_roots=_fake_roots(tmp_path))
    assert set(m.domains) == FULL_DOMAINS
    assert m.real_data
    trainers = {c.trainer for c in m.cells if not c.reference}
    benchmarked = [n for n in METHODS.names() if METHODS.get(n).benchmarked]
    assert trainers == set(benchmarked)
    methods = {c.method for c in m.cells if not c.reference}
    for needed in ("supervised+random", "supervised+entropy", "mean_teacher+random"):
        assert needed in methods
    for name in benchmarked:  # every trainer with its default strategy
        assert f"{name}+{METHODS.get(name).default_strategy}" in methods
    for d, setup in m.domains.items():
        assert setup.reference, d  # a full-supervision reference per seed
        assert setup.dataset and setup.dataset != d
        assert len(setup.budget_fractions) == 7 and not setup.budgets  # resolved on loading the data
        assert setup.schedule is not None  # per-domain [domains.X.schedule]
    assert m.cells[0].detector == "fcos_r50"
    assert m.domains["foggy_cityscapes"].options["beta"] == 0.02
    assert m.domains["pedestrian"].options["format"] == "citypersons"
    # SOOD's 10 / 20 / 30 % partially labelled settings are rounds of the DOTA curve
    assert {0.1, 0.2, 0.3} <= set(m.domains["dota"].budget_fractions)


@pytest.mark.parametrize("name", ["default", "smoke", "tiny"])
def test_existing_matrices_keep_their_canonical_specs(name):
    """Fraction budgets and per-domain schedules add keys only where they are used: the run ids
    of existing matrices (and so their records) do not change."""
    m = load_matrix(name)
    keys = {
        "schema_version",
        "domain",
        "domain_options",
        "data",
        "dataset_version",
        "trainer",
        "strategy",
        "seed",
        "budgets",
        "budget_unit",
        "schedule",
        "detector",
        "detector_options",
        "threads",
        "warm_start",
        "versions",
    }
    for c in m.cells:
        canon = c.canonical()
        assert set(canon) == keys | ({"reference"} if c.reference else set())
        held_out = {"validation": c.domain.validation} if c.domain.validation else {}
        assert canon["data"] == {"synthetic": c.domain.synthetic_size, "synthetic_seed": 0, **held_out}
        assert all(isinstance(b, int) for b in canon["budgets"])
        assert c.domain.schedule is None and c.schedule == m.cells[0].schedule


def test_parse_budgets_counts_and_percentages():
    assert parse_budgets([25, 100], "b") == ((25, 100), ())
    assert parse_budgets("25,100", "b") == ((25, 100), ())
    assert parse_budgets(["2.5%", "10%", "100%"], "b") == ((), (0.025, 0.1, 1.0))
    assert parse_budgets("5%,10%", "b") == ((), (0.05, 0.1))
    for bad, msg in [
        (["5%", 10], "not both"),
        (["10%", "5%"], "strictly increasing"),
        (["0%", "5%"], "(0%, 100%]"),
        (["150%"], "(0%, 100%]"),
        (["x%"], "are not percentages"),
        ([10, 5], "strictly increasing"),
        ([], "non-empty"),
    ]:
        with pytest.raises(SpecError, match=re.escape(msg)):
            parse_budgets(bad, "budgets of dota")


def test_resolve_budgets_rounds_and_rejects_collapsed_rounds(tmp_path):
    m = load_matrix("full", data_roots=_fake_roots(tmp_path))
    dota = m.domains["dota"]  # 2.5 % ... 30 %
    r = resolve_budgets(dota, 1000, 9999)
    assert r.budgets == (25, 50, 100, 150, 200, 250, 300)
    assert r.budget_fractions == dota.budget_fractions
    with pytest.raises(SpecError, match="not strictly increasing"):
        resolve_budgets(dota, 8, 100)
    boxes = resolve_budgets(DomainSetup("sonar", budget_fractions=(0.1, 0.5), budget_unit="boxes"), 10, 300)
    assert boxes.budgets == (30, 150)
    counts = DomainSetup("dota", budgets=(5, 10))
    assert resolve_budgets(counts, 1, 1) is counts
    # a fraction cell's run id records the fractions next to the resolved counts
    from dataclasses import replace

    cell = replace(next(c for c in m.cells if c.domain.name == "dota"), domain=r)
    assert cell.canonical()["budgets"] == list(r.budgets)
    assert cell.canonical()["budget_fractions"] == list(dota.budget_fractions)


def test_per_domain_schedule_overrides_fields(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text(
        'methods = ["supervised+random"]\nbudgets = [4, 8]\n[schedule]\niterations = 10\nlr = 0.02\n'
        "[domains.dota]\n[domains.dota.schedule]\niterations = 3\n[domains.sonar]\n"
    )
    m = load_matrix(str(p))
    by = {c.domain.name: c.schedule for c in m.cells}
    assert by["dota"].iterations == 3 and by["dota"].lr == 0.02
    assert by["sonar"].iterations == 10
    p.write_text('methods = ["supervised"]\nbudgets = [4]\n[domains.dota.schedule]\nepochs = 3\n')
    with pytest.raises(SpecError, match=r"unknown \[domains.dota.schedule\] key\(s\) \[.epochs.\]"):
        load_matrix(str(p))


def test_real_data_matrix_without_a_root_names_the_dataset_and_the_docs(capsys, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match=r"sonar \(SCTD 1.0\).*docs/data.md#sonar"):
        load_matrix("full", data_roots={d: "/x" for d in FULL_DOMAINS - {"sonar"}})
    monkeypatch.chdir(tmp_path)
    assert main(["run", "full", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "dota (DOTA)" in err and "docs/data.md" in err and "--data-root dota=PATH" in err


@pytest.fixture(scope="module")
def tiny_roots(_private_cache) -> dict[str, str]:
    """Real-layout trees written by the synthetic generators (``tiny``: a second to write)."""
    from domains.synthetic import ensure_synthetic

    return {d: str(ensure_synthetic(d, "tiny", 0, progress=False)) for d in sorted(FULL_DOMAINS)}


def _root_args(roots: dict[str, str]) -> list[str]:
    return [x for d, r in roots.items() for x in ("--data-root", f"{d}={r}")]


def test_dry_run_full_on_real_layout_trees(tiny_roots, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the tiny pools (24-48 images) are too small for the matrix's 1 % steps: 3 rounds of quarters
    argv = ["run", "full", *_root_args(tiny_roots), "--device", "cuda:0", "--budgets", "25%,50%,75%"]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # nothing written
    blocks = out.split("\n\n")
    for d in FULL_DOMAINS:
        block = next(b for b in blocks if b.startswith(f"{d} ("))
        assert "cells: 24 runs = 7 methods x 3 seeds + 3 full-supervision references" in block
        assert "rounds: 3; cumulative budgets in labelling units:" in block
        assert "images per round:" in block
        assert "estimated GPU time:" in block and "GPU-hours" in block
    foggy = next(b for b in blocks if b.startswith("foggy_cityscapes ("))
    assert "pool 24 samples" in foggy and "source 24 images" in foggy
    assert "6 (25%), 12 (50%), 18 (75%)" in foggy and "images per round: 6, 6, 6 " in foggy
    assert "trainings: 63 + 3 source checkpoints" in foggy  # 3 x (6 round-0 + 7 x 2 + 1 reference)
    assert "total estimated GPU time:" in out and "7.4 it/s at 1024x1024 px" in out
    from benchmark.dryrun import launcher_names

    for name in launcher_names():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert line.split(None, 1)[1].startswith("labelbudget run full ")
        assert all(f"--data-root {d}={r}" in line for d, r in tiny_roots.items())
        assert f"--launcher {name}" in line and "--dry-run" not in line and "--device cuda:0" in line
        assert "--budgets 25%,50%,75%" in line


def test_dry_run_resolves_the_matrix_fractions(tiny_roots, capsys, tmp_path, monkeypatch):
    """full.toml's own DOTA budgets on the 49 patches of the tiny tree: 7 rounds."""
    monkeypatch.chdir(tmp_path)
    root = f"dota={tiny_roots['dota']}"
    assert main(["run", "full", "--domains", "dota", "--data-root", root, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rounds: 7; cumulative budgets in labelling units: 1 (2.5%), 2 (5%), 5 (10%), 7 (15%)" in out
    assert "images per round: 1, 1, 3, 2, 3, 2, 3 " in out
    assert "note: --device is cpu" in out


def test_dry_run_gpu_hours_follow_the_measured_speed(tiny_roots):
    """The estimate is arithmetic on the measured speed: check one domain by hand."""
    from benchmark.dryrun import RELATIVE_COST, plan_domain
    from benchmark.dryrun import _estimate as estimate

    m = load_matrix("full", domains=["dota"], data_roots={"dota": tiny_roots["dota"]})
    plan = plan_domain(m.domains["dota"], list(m.cells))
    estimate(plan)
    s = m.cells[0].schedule
    per_it = (plan.mean_px / 1024**2) / 7.4  # batch 8 = the measured batch
    # per seed: 2 supervised runs x 7 rounds, minus the shared round 0, plus the reference
    assert plan.trainings["supervised"] == 3 * (2 * 7 - 1 + 1)
    want = sum(n * s.iterations * RELATIVE_COST[t] * per_it for t, n in plan.trainings.items()) / 3600
    assert plan.train_h == pytest.approx(want)
    # inference: the test split every training, the unlabelled pool before each of 6 queries per run
    n_pool, n_test = plan.n_samples, plan.n_test
    assert (n_pool, n_test) == (49, 22)  # the tiny synthetic DOTA tree (v4)
    queries = sum(n_pool - b for b in plan.setup.budgets[:-1]) * 21
    assert plan.inference_images == sum(plan.trainings.values()) * n_test + queries


@pytest.mark.parametrize("kind", ["missing", "empty", "wrong-layout"])
def test_dry_run_bad_root_is_one_line_naming_dataset_and_docs(
    kind, tiny_roots, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    roots = dict(tiny_roots)
    bad = tmp_path / "sonar-data"
    if kind == "empty":
        bad.mkdir()
    elif kind == "wrong-layout":  # a DOTA tree where the sonar VOC tree should be
        bad = Path(tiny_roots["dota"])
    roots["sonar"] = str(bad)
    assert main(["run", "full", *_root_args(roots), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("labelbudget: error: sonar (SCTD 1.0)")
    assert "docs/data.md#sonar" in err


def test_dry_run_any_matrix_on_built_in_synthetic_data(capsys, tiny_roots, tmp_path, monkeypatch):
    """Any matrix: the tiny one on its built-in synthetic data, budgets as fractions."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "tiny", "--dry-run", "--budgets", "25%,50%"]) == 0
    out = capsys.readouterr().out
    assert "built-in synthetic, tiny" in out
    assert "12 (25%), 25 (50%)" in out  # 49 pool patches
    assert "39.0 it/s at 128x128 px" in out  # tiny_fcos_xs's measured speed


def test_real_data_records_name_the_dataset_and_the_leaderboard_says_so(tmp_path):
    from dataclasses import replace

    from benchmark.leaderboard import header_lines

    m = load_matrix("full", data_roots={d: f"/data/{d.upper()}" for d in FULL_DOMAINS})
    cell = next(c for c in m.cells if c.domain.name == "dota")
    assert cell.canonical()["data"] == {"root": "DOTA", "dataset": "DOTA"}  # never the absolute path
    plain = replace(cell.domain, dataset="")  # matrices that do not name the dataset keep their ids
    assert replace(cell, domain=plain).canonical()["data"] == {"root": "DOTA"}
    rec = {
        "matrix": "full",
        "domain": "dota",
        "dataset_version": "abc123",
        "data": cell.canonical()["data"],
        "domain_options": {"version": "1.5", "source_sensor": None},
        "provenance": {"git_commit": "c", "finished_at": "t", "device": "H200", "launcher": "serial"},
    }
    lines = header_lines([rec])
    assert "- real data: DOTA (version=1.5; folder DOTA; version abc123)" in lines
    synthetic = {**rec, "data": {"synthetic": "small", "synthetic_seed": 0}}
    assert not any(line.startswith("- real data") for line in header_lines([synthetic]))


def test_dry_run_rejects_a_group_in_both_pool_and_test(tiny_roots, capsys, tmp_path, monkeypatch):
    """A survey line (group) split across pool and test would leak: the dry run stops as the run does."""
    import shutil

    root = tmp_path / "sonar"
    shutil.copytree(tiny_roots["sonar"], root)
    main_dir = root / "ImageSets" / "Main"
    first = {s: (main_dir / f"{s}.txt").read_text().split()[0] for s in ("train", "test")}
    (root / "groups.csv").write_text(f"id,group\n{first['train']},line7\n{first['test']},line7\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "full", "--domains", "sonar", "--data-root", f"sonar={root}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "['line7'] appear in both pool and test" in err
    assert "docs/data.md#sonar" in err


def test_dry_run_says_whether_the_imagenet_weights_are_cached(tiny_roots, capsys, tmp_path, monkeypatch):
    """A missing weights file stops the dry run as it stops the run: one line naming the file."""
    import torch

    from benchmark.dryrun import pretrained_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path = pretrained_weights("fcos_r50", {"pretrained": True})
    assert path is not None and path.parent == tmp_path / "hub" / "checkpoints"
    assert pretrained_weights("fcos_r50", {"pretrained": False}) is None
    assert pretrained_weights("tiny_fcos_xs", {"pretrained": True}) is None
    argv = ["run", "full", "--domains", "dota", "--data-root", f"dota={tiny_roots['dota']}", "--dry-run"]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert main(argv) == 0
    assert f"ImageNet weights: cached {path}" in capsys.readouterr().out
