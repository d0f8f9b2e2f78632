"""``labelbudget data synth/check/export-coco`` on DOTA and sonar: a deliberately broken copy of each
synthetic dataset gets every broken file and line named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for dom in ("dota", "sonar"):
        assert main(["data", "synth", dom, str(base / dom), "--seed", "1", "--size", "tiny"]) == 0
        out[dom] = base / dom
    return out


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().out


def test_clean_data_checks_ok(synth, capsys):
    for dom, root in synth.items():
        rc, out = run(capsys, "data", "check", dom, str(root))
        assert rc == 0, out
        assert "problem:" not in out
        assert re.search(r"pool: \d+ samples, \d+ objects", out)
    assert "small-vehicle" in run(capsys, "data", "check", "dota", str(synth["dota"]))[1]


def test_broken_dota_names_every_file_and_line(synth, tmp_path, capsys):
    root = tmp_path / "dota"
    shutil.copytree(synth["dota"], root)
    labels = sorted((root / "train" / "labelTxt").glob("*.txt"))
    broken = {}
    for lf, bad in zip(
        labels[1:5],
        [
            "1 2 x 4 5 6 7 8 ship 0",
            "1 2 3 4 5 6 ship 0",
            "0 0 5 0 5 5 0 5 zeppelin 0",
            "0 0 9 9 18 18 27 27 plane 0",
        ],
        strict=True,
    ):
        lines = lf.read_text().splitlines()
        lines.insert(3, bad)
        lf.write_text("\n".join(lines) + "\n")
        broken[str(lf)] = 4
    img = next((root / "val" / "images").glob("*.png"))
    img.write_bytes(b"not an image")
    # strict: stops at the first problem, naming it (exit 2)
    assert main(["data", "check", "dota", str(root)]) == 2
    assert any(f"{p}:4" in capsys.readouterr().err for p in broken)
    # lenient: every problem, each with its file and line (exit 1)
    rc, out = run(capsys, "data", "check", "dota", str(root), "--lenient")
    assert rc == 1
    for path, line in broken.items():
        assert f"problem: {path}:{line}" in out
    assert f"problem: {img}: unreadable or corrupt image" in out
    assert out.count("problem: ") == 5


def test_broken_sonar_names_every_file_and_line(synth, tmp_path, capsys):
    root = tmp_path / "sonar"
    shutil.copytree(synth["sonar"], root)
    ids = (root / "ImageSets/Main/train.txt").read_text().split()
    expect = []
    a = root / "Annotations" / f"{ids[1]}.xml"
    a.write_text(a.read_text().replace("<xmin>", "<xmin>x", 1))
    expect.append(f"{a}:{next(i for i, t in enumerate(a.read_text().splitlines(), 1) if '<xmin>x' in t)}")
    b = root / "Annotations" / f"{ids[2]}.xml"
    b.write_text(b.read_text().replace("</object>", "</objet>", 1))
    expect.append(f"{b}:{next(i for i, t in enumerate(b.read_text().splitlines(), 1) if '</objet>' in t)}")
    c = root / "Annotations" / f"{ids[3]}.xml"
    c.write_text(c.read_text().replace("<name>", "<name>whale", 1))
    expect.append(f"{c}:{next(i for i, t in enumerate(c.read_text().splitlines(), 1) if 'whale' in t)}")
    m = root / "masks" / f"{ids[4]}.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(m), np.zeros((10, 12), np.uint8))
    expect.append(f"{m}: mask is 12x10")
    lst = root / "ImageSets/Main/test.txt"
    tids = lst.read_text().split()
    lst.write_text("\n".join([*tids, tids[2]]) + "\n")
    expect.append(f"{lst}:{len(tids) + 1}: duplicate id")
    assert main(["data", "check", "sonar", str(root)]) == 2
    rc, out = run(capsys, "data", "check", "sonar", str(root), "--lenient")
    assert rc == 1
    for e in expect:
        assert e in out, (e, out)
    assert out.count("problem: ") == 5


def test_export_coco(synth, tmp_path, capsys):
    out = tmp_path / "dota.json"
    assert run(capsys, "data", "export-coco", "dota", str(synth["dota"]), str(out))[0] == 0
    scenes = json.loads(out.read_text())
    assert all("__" not in im["file_name"] for im in scenes["images"])  # scenes, not patches
    assert run(capsys, "data", "export-coco", "dota", str(synth["dota"]), str(out), "--patches")[0] == 0
    patches = json.loads(out.read_text())
    assert len(patches["images"]) > len(scenes["images"]) and "__128__" in patches["images"][0]["file_name"]
    ann = scenes["annotations"][0]
    assert len(ann["segmentation"][0]) == 8 and ann["iscrowd"] == 0 and "difficult" in ann
    out = tmp_path / "sonar.json"
    assert (
        run(capsys, "data", "export-coco", "sonar", str(synth["sonar"]), str(out), "--split", "source")[0]
        == 0
    )
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["categories"]] == ["ship", "aircraft", "human"]
    assert data["images"] and all(im["group"].startswith("A-") for im in data["images"])
