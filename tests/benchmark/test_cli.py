"""The labelbudget command line: list, help, errors, data tools."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from benchmark.cli import main


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in (
        "domains:",
        "dota",
        "methods (trainers):",
        "supervised",
        "acquisition strategies:",
        "random",
        "entropy",
        "tiny_fcos_xs",
        "smoke",
    ):
        assert word in out


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--data-root DOMAIN=PATH" in out.stdout and "examples:" in out.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nosuchmatrix"], "no matrix named 'nosuchmatrix'"),
        (["run", "tiny", "--methods", "nosuch"], "unknown method 'nosuch'"),
        (["run", "tiny", "--methods", "supervised+nosuch"], "unknown strategy 'nosuch'"),
        (["run", "tiny", "--domains", "atlantis"], "unknown domain 'atlantis'"),
        (["run", "tiny", "--set", "dota.colour=red"], "no option(s) ['colour']"),
        (["run", "tiny", "--set", "dota.version=3.0"], "DOTA version must be one of"),
        (["run", "tiny", "--budgets", "16,8"], "strictly increasing"),
        (["run", "tiny", "--data-root", "sonar=/x"], "not in this run's domains"),
        (["run", "tiny", "--leaderboards", "leaderboards"], "the committed leaderboards/ change only"),
    ],
)
def test_clear_errors(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_data_synth_check_export(tmp_path, capsys):
    root = tmp_path / "dota"
    assert main(["data", "synth", "dota", str(root), "--size", "tiny", "--seed", "1"]) == 0
    assert main(["data", "check", "dota", str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pool: \d+ samples", out) and "small-vehicle" in out  # DOTA pool: patches of 8 scenes
    assert main(["data", "export-coco", "dota", str(root), str(tmp_path / "val.json")]) == 0
    coco = json.loads((tmp_path / "val.json").read_text())
    assert len(coco["images"]) == 4 and len(coco["categories"]) == 15  # the 4 val scenes (not patches)
    # break one line: check names the file and the line and exits non-zero
    lab = sorted((root / "train" / "labelTxt").glob("*.txt"))[3]
    lines = lab.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split()[8], "spaceship")
    lab.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "dota", str(root)]) == 2
    assert f"{lab}:3: unknown class 'spaceship'" in capsys.readouterr().err
    assert main(["data", "check", "dota", str(root), "--lenient"]) == 1
    out = capsys.readouterr().out
    assert f"problem: {lab}:3" in out and "objects: 1 skipped" in out
