"""The DOTA labelTxt reader: real format, header lines, edge cases and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domains.base import AnnotationError, LoadReport
from domains.dota import CLASSES, DOTA, parse_label_file


def write(tmp_path: Path, text: str, name: str = "P0001.txt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_example_with_header(tmp_path):
    p = write(
        tmp_path,
        "imagesource:GoogleEarth\ngsd:0.255589285596\n1054 1028 1063 1011 1111 1040 1112 1062 ship 1\n"
        "807 331 800 324 817 309 823 316 ship 0\n",
    )
    polys, labels, diff, meta = parse_label_file(p, CLASSES["1.0"])
    assert meta == {"imagesource": "GoogleEarth", "gsd": pytest.approx(0.255589285596)}
    np.testing.assert_array_equal(polys[0], [1054, 1028, 1063, 1011, 1111, 1040, 1112, 1062])
    assert [CLASSES["1.0"][i] for i in labels] == ["ship", "ship"]
    assert diff.tolist() == [1, 0]
    from domains.dota import polygons_to_boxes

    np.testing.assert_array_equal(polygons_to_boxes(polys)[0], [1054, 1011, 1112, 1062])


def test_nine_tokens_float_coordinates_and_no_header(tmp_path):
    p = write(tmp_path, "10.5 20.25 30 20.25 30 40.75 10.5 40.75 small-vehicle\n")
    polys, labels, diff, meta = parse_label_file(p, CLASSES["1.0"])
    assert meta == {}
    assert diff.tolist() == [0]
    assert polys.dtype == np.float32 and polys[0, 1] == pytest.approx(20.25)
    assert CLASSES["1.0"][labels[0]] == "small-vehicle"


def test_gsd_null_and_difficult_two(tmp_path):
    p = write(tmp_path, "imagesource:GF-2\ngsd:null\n0 0 4 0 4 4 0 4 plane 2\n")
    _, _, diff, meta = parse_label_file(p, CLASSES["1.0"])
    assert meta == {"imagesource": "GF-2", "gsd": None}
    assert diff.tolist() == [2]


def test_empty_file_is_an_image_without_objects(tmp_path):
    polys, labels, diff, meta = parse_label_file(write(tmp_path, ""), CLASSES["1.0"])
    assert polys.shape == (0, 8) and labels.shape == (0,) and diff.shape == (0,)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1 2 3 4 5 6 7 ship", "expected 9 or 10 tokens"),
        ("1 2 3 4 5 6 7 ship 0", "non-numeric coordinate 'ship'"),
        ("1 2 3 4 5 6 7 8 ship 0 extra", "expected 9 or 10 tokens"),
        ("1 2 x 4 5 6 7 8 ship 0", "non-numeric coordinate 'x'"),
        ("1 2 3 4 5 6 7 8 spaceship 0", "unknown class 'spaceship'"),
        ("1 2 3 4 5 6 7 8 ship 3", "difficult flag"),
        ("1 2 3 4 5 6 7 8 ship nan", "difficult flag"),
        ("1 2 1 2 1 2 1 2 ship 0", "degenerate polygon"),
        ("1 2 inf 4 5 6 7 8 ship 0", "non-finite"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, reason):
    p = write(tmp_path, f"imagesource:GoogleEarth\ngsd:0.3\n0 0 4 0 4 4 0 4 plane 0\n{line}\n")
    with pytest.raises(AnnotationError) as ei:
        parse_label_file(p, CLASSES["1.0"])
    err = ei.value
    assert err.path == str(p) and err.line == 4
    assert reason in err.reason
    assert f"{p}:4" in str(err)


def test_lenient_skips_and_reports(tmp_path):
    p = write(tmp_path, "0 0 4 0 4 4 0 4 plane 0\n1 2 x 4 5 6 7 8 ship 0\n0 0 8 0 8 8 0 8 ship 1\n")
    report = LoadReport()
    polys, labels, _, _ = parse_label_file(p, CLASSES["1.0"], report, lenient=True)
    assert len(polys) == 2
    assert report.skipped["objects"] == 1
    assert report.problems[0].line == 2


def test_version_vocabularies():
    assert len(CLASSES["1.0"]) == 15 and len(CLASSES["1.5"]) == 16 and len(CLASSES["2.0"]) == 18
    assert DOTA(version="1.5").classes[-1] == "container-crane"
    assert DOTA(version="2.0").classes[-2:] == ("airport", "helipad")


def test_container_crane_is_unknown_in_v1_0(tmp_path):
    p = write(tmp_path, "0 0 4 0 4 4 0 4 container-crane 0\n")
    with pytest.raises(AnnotationError, match="unknown class"):
        parse_label_file(p, CLASSES["1.0"])
    polys, *_ = parse_label_file(p, CLASSES["1.5"])
    assert len(polys) == 1


def test_adapter_reports_missing_image_and_orphans(tmp_path):
    from PIL import Image

    for split, sid in (("train", "P0001"), ("val", "P0003")):  # train and val must not overlap
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labelTxt").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / split / "images" / f"{sid}.png")
        (tmp_path / split / "labelTxt" / f"{sid}.txt").write_text("0 0 4 0 4 4 0 4 plane 0\n")
    (tmp_path / "train" / "labelTxt" / "P0002.txt").write_text("")
    dom = DOTA(label_unit="image")  # whole images (the default unit is the patch)
    with pytest.raises(AnnotationError, match="P0002"):
        dom.load(tmp_path, "pool")
    ds = dom.load(tmp_path, "pool", lenient=True)
    assert ds.ids == ["P0001"] and ds.report.skipped["images"] == 1


def test_adapter_missing_root_is_actionable(tmp_path):
    from domains.base import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="--data-root dota=PATH"):
        DOTA().verify(tmp_path / "nope")
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="labelTxt"):
        DOTA().verify(tmp_path)
