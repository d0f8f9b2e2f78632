# ruff: noqa: E501  (the cases are a table: one a line)
"""Bad command lines and matrix files: each exits 2 with exactly one line on
stderr (``labelbudget: error: ...``) and no traceback, before any data is generated or any training
starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from minimatrix import mini_matrix

from benchmark.cli import main

GOOD_MATRIX = mini_matrix("m")

# (id, matrix text or None, argv after "labelbudget"; {m} is the matrix file, {t} the tmp folder)
MATRICES = {
    "unknown top key": GOOD_MATRIX.replace('name = "m"', 'name = "m"\nbugdets = [1]'),
    "unknown schedule key": GOOD_MATRIX.replace("iterations = 2", "iterations = 2\nlearning_rate = 3"),
    "unknown detector option": GOOD_MATRIX.replace(
        'name = "tiny_fcos_xs"', 'name = "tiny_fcos_xs"\nwidht = 3'
    ),
    "unknown detector": GOOD_MATRIX.replace("tiny_fcos_xs", "yolo"),
    "unknown domain": GOOD_MATRIX.replace("[domains.dota]", "[domains.dotta]"),
    "unknown domain option": GOOD_MATRIX.replace(
        'synthetic_size = "tiny"', 'synthetic_size = "tiny"\nversoin = "1.5"'
    ),
    "bad domain option value": GOOD_MATRIX.replace(
        'synthetic_size = "tiny"', 'synthetic_size = "tiny"\nversion = "3.0"'
    ),
    "threads -1": GOOD_MATRIX.replace("seeds = [0]", "seeds = [0]\nthreads = -1"),
    "threads 0": GOOD_MATRIX.replace("seeds = [0]", "seeds = [0]\nthreads = 0"),
    "threads string": GOOD_MATRIX.replace("seeds = [0]", 'seeds = [0]\nthreads = "many"'),
    "budgets decreasing": GOOD_MATRIX.replace("[8, 16]", "[16, 8]"),
    "budgets strings": GOOD_MATRIX.replace("[8, 16]", '["a", "b"]'),
    "seeds strings": GOOD_MATRIX.replace("seeds = [0]", 'seeds = ["x"]'),
    "unknown method": GOOD_MATRIX.replace("supervised+random", "supervized+random"),
    "unknown strategy": GOOD_MATRIX.replace("supervised+random", "supervised+randon"),
    "bad trainer option": GOOD_MATRIX.replace("supervised+random", "supervised[nope=1]+random"),
    "no methods": GOOD_MATRIX.replace('methods = ["supervised+random"]', "methods = []"),
    "invalid TOML": GOOD_MATRIX + "\n[[[\n",
    "matrix name climbs": GOOD_MATRIX.replace('name = "m"', 'name = "../../../x"'),
    "matrix name absolute": GOOD_MATRIX.replace('name = "m"', 'name = "/tmp/x"'),
    "warm_start string": GOOD_MATRIX.replace("seeds = [0]", 'seeds = [0]\nwarm_start = "yes"'),
    "fcos_r50 weights missing": GOOD_MATRIX.replace(
        'name = "tiny_fcos_xs"', 'name = "fcos_r50"\npretrained = true\nweights = "/nonexistent/resnet50.pth"'
    ),
    "weights on a tiny detector": GOOD_MATRIX.replace(
        'name = "tiny_fcos_xs"', 'name = "tiny_fcos_xs"\nweights = "x.pth"'
    ),
    "budget_unit pixels": GOOD_MATRIX.replace(
        "budgets = [8, 16]", 'budgets = [8, 16]\nbudget_unit = "pixels"'
    ),
}

ARGV = [
    ["run", "{m}", "--budgets", "a,b"],
    ["run", "{m}", "--budgets", "8,,x"],
    ["run", "{m}", "--budgets", "0,8"],
    ["run", "{m}", "--seeds", "x"],
    ["run", "{m}", "--seeds", "-1"],
    ["run", "{m}", "--device", "banana"],
    ["run", "{m}", "--device", "cuda:99"],
    ["run", "{m}", "--workers", "0"],
    ["run", "{m}", "--workers", "x"],
    ["run", "{m}", "--set", "dotta.version=1.5"],
    ["run", "{m}", "--set", "dota.versoin=1.5"],
    ["run", "{m}", "--set", "dota.version=7"],
    ["run", "{m}", "--set", "version=1.5"],
    ["run", "{m}", "--data-root", "sonar=/x"],
    ["run", "{m}", "--data-root", "dota"],
    ["run", "{m}", "--domains", "nope"],
    ["run", "{m}", "--methods", "supervised+nope"],
    ["run", "{m}", "--launcher", "kubernetes"],
    ["run", "{m}", "--methods", "supervised[x=../../a]+random"],
    ["run", "{m}", "--methods", "../x"],
    ["run", "{m}", "--set", "dota.synthetic_size=huge"],
    ["run", "{m}", "--set", "dota.synthetic_seed=x"],
    ["run", "no_such_matrix"],
    ["run", "{t}/missing.toml"],
    ["status", "--runs", "/nonexistent/typo"],
    ["data", "synth", "dota", "{t}/afile"],
    ["data", "synth", "nodomain", "{t}/x"],
    ["data", "synth", "dota", "{t}/x", "--size", "huge"],
    ["data", "check", "dota", "{t}/nodata"],
    ["data", "check", "dota", "{t}", "--set", "version"],
    ["data", "check", "pedestrian", "{t}", "--format", "inria"],
    ["data", "export-coco", "dota", "{t}/nodata", "{t}/o.json"],
    ["evaluate", "dota", "{t}/nodata", "{t}/p.json"],
    ["leaderboard", "--runs", "{t}/noruns", "--out", "{t}/lb"],
    ["ablate", "supervised", "--seeds", "a"],
    ["ablate", "supervised", "--device", "banana"],
    ["frobnicate"],
    [],
]


def _one_line_error(argv: list[str], capsys) -> str:
    with_exit = None
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors exit through SystemExit(2)
        rc, with_exit = exc.code, True
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 2, (argv, rc, err, with_exit)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelbudget: error: "), err
    return lines[0]


def test_at_least_30_cases():
    assert len(MATRICES) + len(ARGV) >= 30


@pytest.mark.parametrize("name", list(MATRICES))
def test_bad_matrix_file(name: str, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached ImageNet weights
    m = tmp_path / "m.toml"
    m.write_text(MATRICES[name])
    line = _one_line_error(["run", str(m), "--out", str(tmp_path / "runs"), "--quiet"], capsys)
    assert not (tmp_path / "runs").exists(), "nothing is written before the matrix is valid"
    if "unknown" in name and "method" not in name and "strategy" not in name:
        assert "known" in line or "registered" in line or "presets" in line  # the valid ones are listed


@pytest.mark.parametrize("argv", ARGV, ids=[" ".join(a) or "(none)" for a in ARGV])
def test_bad_command_line(argv: list[str], tmp_path: Path, capsys):
    m = tmp_path / "m.toml"
    m.write_text(GOOD_MATRIX)
    (tmp_path / "afile").write_text("a user's file\n")
    (tmp_path / "p.json").write_text("[]")
    args = [a.format(m=m, t=tmp_path) for a in argv]
    if args and args[0] == "run":
        args += ["--out", str(tmp_path / "runs"), "--quiet"]
    _one_line_error(args, capsys)
    assert (tmp_path / "afile").read_text() == "a user's file\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(tmp_path: Path, capsys):
    m = tmp_path / "m.toml"
    m.write_text(GOOD_MATRIX)
    line = _one_line_error(["run", str(m), "--device", "cuda:0", "--out", str(tmp_path / "r")], capsys)
    assert "no CUDA GPU" in line and not (tmp_path / "r").exists()


def test_unknown_set_key_lists_the_valid_ones(tmp_path: Path, capsys):
    m = tmp_path / "m.toml"
    m.write_text(GOOD_MATRIX)
    line = _one_line_error(["run", str(m), "--set", "dota.versoin=1.5", "--out", str(tmp_path / "r")], capsys)
    assert "versoin" in line and "version" in line and "label_unit" in line
    line = _one_line_error(
        ["run", str(m), "--set", "dotta.version=1.5", "--out", str(tmp_path / "r")], capsys
    )
    assert "dotta" in line and "dota" in line
