# ruff: noqa: E501  (the corpus is a table: one case a line)
"""Bad prediction files for ``labelbudget evaluate``: COCO results JSON and
DOTA Task1/Task2 submission files. Each must end in exit 2 and one line on stderr naming the file and
the line (Task files) or the entry (JSON)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from bad_trees import build_coco, build_dota

from benchmark.cli import main


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import the heavy modules once, so the 10 s limit of a case measures the case, not torch's import."""
    import benchmark.evaluation  # noqa: F401
    import benchmark.external  # noqa: F401
    import benchmark.metrics.coco  # noqa: F401
    import domains.dota  # noqa: F401
    from domains.base import DOMAINS

    DOMAINS.names()


def det(**kw) -> dict:
    return {"image_id": "c", "category_id": 1, "bbox": [4, 4, 10, 12], "score": 0.9} | kw


# (name, file name, content, what the error names besides the file: "entry K" or ":LINE")
COCO_PREDS = [
    pytest.param("not JSON", "p.json", '[{"image_id": "c",\n', ":2", id="coco: not JSON"),
    pytest.param("an object, not a list", "p.json", '{"image_id": "c"}', "", id="coco: object"),
    pytest.param(
        "entry not an object", "p.json", json.dumps([det(), 7]), "entry 1", id="coco: entry not an object"
    ),
    pytest.param(
        "score missing",
        "p.json",
        json.dumps([{k: v for k, v in det().items() if k != "score"}]),
        "entry 0",
        id="coco: score missing",
    ),
    pytest.param("bbox of 3", "p.json", json.dumps([det(bbox=[1, 2, 3])]), "entry 0", id="coco: bbox of 3"),
    pytest.param(
        "unknown image id",
        "p.json",
        json.dumps([det(), det(image_id="zz")]),
        "entry 1",
        id="coco: unknown image",
    ),
    pytest.param(
        "image id out of range", "p.json", json.dumps([det(image_id=5)]), "entry 0", id="coco: image id 5"
    ),
    pytest.param("category 0", "p.json", json.dumps([det(category_id=0)]), "entry 0", id="coco: category 0"),
    pytest.param(
        "negative width",
        "p.json",
        json.dumps([det(bbox=[1, 1, -4, 4])]),
        "entry 0",
        id="coco: negative width",
    ),
    pytest.param(
        "NaN score", "p.json", json.dumps([det(score=float("nan"))]), "entry 0", id="coco: NaN score"
    ),
    pytest.param("not UTF-8", "p.json", b"\xff\x81[]", "", id="coco: not UTF-8"),
]

DOTA_PREDS = [
    pytest.param("too few tokens", "Task2_plane.txt", "P0003 0.9 1 2 3\n", ":1", id="dota: too few tokens"),
    pytest.param(
        "non-numeric",
        "Task2_plane.txt",
        "P0003 0.9 1 2 3 4\nP0003 high 1 2 3 4\n",
        ":2",
        id="dota: non-numeric score",
    ),
    pytest.param(
        "unknown image",
        "Task2_plane.txt",
        "P0003 0.9 1 2 9 9\nP9999 0.9 1 2 9 9\n",
        ":2",
        id="dota: unknown image",
    ),
    pytest.param("degenerate box", "Task2_plane.txt", "P0003 0.9 5 5 5 9\n", ":1", id="dota: degenerate box"),
    pytest.param(
        "Task1 with 4 coordinates", "Task1_plane.txt", "P0003 0.9 1 2 9 9\n", ":1", id="dota: Task1 short"
    ),
    pytest.param(
        "unknown class in the file name",
        "Task2_aeroplane.txt",
        "P0003 0.9 1 2 9 9\n",
        "",
        id="dota: unknown class",
    ),
    pytest.param(
        "10 MB line",
        "Task2_plane.txt",
        "P0003 0.9 1 2 9 9 " + "x" * 10_000_000 + "\n",
        ":1",
        id="dota: 10 MB line",
    ),
    pytest.param("NaN score", "Task2_plane.txt", "P0003 nan 1 2 9 9\n", ":1", id="dota: NaN score"),
    pytest.param(
        "inf coordinate",
        "Task2_plane.txt",
        "P0003 0.9 1 2 inf 9\n",
        ":1",
        id="dota: inf coordinate",
    ),
    pytest.param("not UTF-8", "Task2_plane.txt", b"\xff\x81 0.9\n", "", id="dota: not UTF-8"),
]


def _evaluate(argv: list[str], capsys) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    rc = main(argv)
    dt = time.perf_counter() - t0
    return rc, capsys.readouterr().err, dt


def _check(rc: int, err: str, dt: float, path: Path, where: str) -> None:
    assert "Traceback" not in err and dt < 10
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelbudget: error: "), err
    assert len(lines[0]) < 3000, "a long bad line is cut"
    assert str(path) in lines[0], lines[0]
    if where.startswith(":"):
        assert f"{path}{where}" in lines[0], lines[0]
    elif where:
        assert where in lines[0], lines[0]


def test_at_least_15_bad_prediction_files():
    assert len(COCO_PREDS) + len(DOTA_PREDS) >= 15


@pytest.mark.parametrize("name, fname, content, where", COCO_PREDS)
def test_bad_coco_results(name, fname, content, where, tmp_path: Path, capsys):
    build_coco(tmp_path / "coco")
    p = tmp_path / fname
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    rc, err, dt = _evaluate(["evaluate", "coco", str(tmp_path / "coco"), str(p)], capsys)
    _check(rc, err, dt, p, where)


@pytest.mark.parametrize("name, fname, content, where", DOTA_PREDS)
def test_bad_dota_task_files(name, fname, content, where, tmp_path: Path, capsys):
    build_dota(tmp_path / "dota")
    sub = tmp_path / "sub"
    sub.mkdir()
    p = sub / fname
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    rc, err, dt = _evaluate(["evaluate", "dota", str(tmp_path / "dota"), str(sub)], capsys)
    _check(rc, err, dt, p, where)


def test_good_files_score(tmp_path: Path, capsys):
    """The valid counterparts score (exit 0), so every failure above is the corruption's."""
    build_coco(tmp_path / "coco")
    p = tmp_path / "p.json"
    p.write_text(json.dumps([det()]))
    assert main(["evaluate", "coco", str(tmp_path / "coco"), str(p)]) == 0
    build_dota(tmp_path / "dota")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "Task2_small-vehicle.txt").write_text("P0003 0.9 12 12 28 28\n")
    assert main(["evaluate", "dota", str(tmp_path / "dota"), str(sub)]) == 0
    assert "mAP50" in capsys.readouterr().out
