"""Bring-your-own COCO data: the adapter on a hand-written COCO file, validation (strict and lenient),
``data check`` / ``data export-coco`` for every domain with the export -> import round trip, and a
``labelbudget run`` on COCO data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from domains.base import DOMAINS, AnnotationError, DatasetNotFoundError, SpecError
from domains.coco import COCODomain

# A literal COCO detection file, written by hand from the format description (cocodataset.org
# #format-data): bbox = [x, y, w, h], iscrowd, categories with ids that need not start at 1.
COCO_JSON = """{
  "info": {"description": "hand-written example", "version": "1.0"},
  "images": [
    {"id": 397133, "file_name": "000000397133.jpg", "width": 64, "height": 48},
    {"id": 37777, "file_name": "000000037777.jpg", "width": 64, "height": 48},
    {"id": 252219, "file_name": "000000252219.jpg", "width": 64, "height": 48}
  ],
  "annotations": [
    {"id": 1, "image_id": 397133, "category_id": 18, "bbox": [10.5, 4.0, 20.0, 30.25], "area": 605.0,
     "iscrowd": 0, "segmentation": [[10.5, 4.0, 30.5, 4.0, 30.5, 34.25, 10.5, 34.25]]},
    {"id": 2, "image_id": 397133, "category_id": 1, "bbox": [40, 10, 12, 30], "area": 360, "iscrowd": 1},
    {"id": 3, "image_id": 37777, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0,
     "difficult": 1}
  ],
  "categories": [
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "person", "id": 1, "name": "person"}
  ]
}
"""


def write_images(root: Path, names, w: int = 64, h: int = 48) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "images" / n)


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "mydata"
    write_images(root, ["000000397133.jpg", "000000037777.jpg", "000000252219.jpg"])
    write_images(root, ["100000397133.jpg", "100000037777.jpg", "100000252219.jpg"])
    (root / "train.json").write_text(COCO_JSON)
    (root / "val.json").write_text(VAL_JSON)  # other images: train and val must not overlap
    return root


VAL_JSON = COCO_JSON.replace('"file_name": "0', '"file_name": "1')


def dom(**kw) -> COCODomain:
    return COCODomain(ann="train.json", test_ann="val.json", **kw)


def test_real_format(coco_root):
    d = dom()
    d.verify(coco_root)
    ds = d.load(coco_root, "pool")
    assert ds.classes == ("person", "dog")  # categories by increasing id
    assert ds.ids == ["000000397133", "000000037777", "000000252219"]
    a, b, c = ds
    np.testing.assert_allclose(a.boxes, [[10.5, 4.0, 30.5, 34.25], [40, 10, 52, 40]])
    assert a.labels.tolist() == [1, 0] and a.ignore.tolist() == [False, True]
    assert a.polygons is None  # only one of the two objects has an 8-number polygon
    assert b.difficult.tolist() == [1] and b.group == b.id
    assert c.num_objects == 0  # an image without annotations is an empty sample
    assert a.read_image().shape == (48, 64, 3)
    assert d.load(coco_root, "test").ids == ["1" + i[1:] for i in ds.ids]
    assert [m.name for m in d.metrics] == ["mAP50-95", "mAP50", "mAP75"]


def _mutate(text: str, fn) -> str:
    data = json.loads(text)
    fn(data)
    return json.dumps(data, indent=1)


BAD = [
    (lambda d: d["annotations"][0].update(category_id=99), "unknown category id 99", "annotations"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 5]), "non-positive width or height", "annotations"),
    (lambda d: d["annotations"][1].update(bbox=[1, 1, 5, -2]), "non-positive width or height", "annotations"),
    (lambda d: d["images"][1].update(file_name="missing.jpg"), "missing on disk", "images"),
    (lambda d: d["images"][2].update(id=37777), "duplicate image id", "images"),
    (lambda d: d["annotations"][2].update(id=1), "duplicate annotation id", "annotations"),
    (lambda d: d["annotations"][2].update(image_id=5), "unknown image id 5", "annotations"),
]


@pytest.mark.parametrize(("fn", "message", "what"), BAD)
def test_validation_strict_and_lenient(coco_root, fn, message, what):
    path = coco_root / "train.json"
    path.write_text(_mutate(COCO_JSON, fn))
    with pytest.raises(AnnotationError, match=re.escape(message)) as exc:
        dom().load(coco_root, "pool")
    assert exc.value.path == str(path)
    ds = dom().load(coco_root, "pool", lenient=True)
    assert ds.report.skipped[what] == 1 and len(ds.report.problems) == 1


def test_malformed_files(coco_root):
    (coco_root / "train.json").write_text(COCO_JSON[:200])
    with pytest.raises(AnnotationError, match="malformed JSON") as exc:
        dom().load(coco_root, "pool")
    assert exc.value.line > 1
    (coco_root / "train.json").write_text('{"images": []}')
    with pytest.raises(AnnotationError, match="missing or non-list 'annotations'"):
        dom().load(coco_root, "pool")
    (coco_root / "train.json").write_text(
        _mutate(COCO_JSON, lambda d: d["categories"].append({"id": 1, "name": "x"}))
    )
    with pytest.raises(AnnotationError, match="duplicate category id"):
        dom().load(coco_root, "pool")


def test_options_and_verify(coco_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="annotation file .*nope.json is missing"):
        COCODomain(ann="nope.json", test_ann="val.json").verify(coco_root)
    with pytest.raises(SpecError, match="no option"):
        COCODomain(annotations="x.json")
    # categories must agree between the two files
    (coco_root / "val.json").write_text(_mutate(VAL_JSON, lambda d: d["categories"][0].update(name="cat")))
    d = dom()
    d.load(coco_root, "pool")
    with pytest.raises(AnnotationError, match="differ from the pool split"):
        d.load(coco_root, "test")


# ------------------------------------------------------------------------------------- round trip


def _roots(tmp_path_factory) -> dict[str, Path]:
    from domains.synthetic import ensure_synthetic

    return {name: ensure_synthetic(name, "tiny", 0, progress=False) for name in DOMAINS.names()}


@pytest.fixture(scope="module")
def synthetic_roots(_private_cache, tmp_path_factory):
    return _roots(tmp_path_factory)


def assert_same_samples(a, b):
    assert [s.id for s in a] == [s.id for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.group == y.group and (x.width, x.height) == (y.width, y.height)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-6, rtol=0)
        assert x.labels.tolist() == y.labels.tolist()
        assert x.difficult.tolist() == y.difficult.tolist()
        assert x.ignore.tolist() == y.ignore.tolist()


@pytest.mark.parametrize("name", DOMAINS.names())
def test_check_and_export_roundtrip_every_domain(synthetic_roots, tmp_path, capsys, name):
    root = synthetic_roots[name]
    opts = (
        ["--set", "ann=annotations/train.json", "--set", "test_ann=annotations/val.json"]
        if name == "coco"
        else []
    )
    assert main(["data", "check", name, str(root), *opts]) == 0
    out = capsys.readouterr().out
    assert "pool:" in out and "test:" in out
    from domains.base import get_domain

    kw = {"ann": "annotations/train.json", "test_ann": "annotations/val.json"} if name == "coco" else {}
    d = get_domain(name, **kw)
    splits = [s for s in ("test", "pool", "source") if s in d.splits]
    # a domain with patches (DOTA) exports whole scenes, and patches with --patches
    variants = (
        [([], {"label_unit": "image"}), (["--patches"], {})] if "label_unit" in d.options else [([], {})]
    )
    for split in splits[:2]:
        for extra, override in variants:
            out_json = tmp_path / f"{name}-{split}{'-'.join(extra)}.json"
            cmd = ["data", "export-coco", name, str(root), str(out_json), "--split", split, *opts, *extra]
            assert main(cmd) == 0
            original = get_domain(name, **{**kw, **override}).load(root, split)
            back = COCODomain(ann=str(out_json), test_ann=str(out_json)).load(tmp_path, "pool")
            assert back.classes == original.classes
            assert_same_samples(original, back)
            assert back[-1].read_image().shape == original.image(original.ids[-1]).shape


def test_roundtrip_literal_coco(coco_root, tmp_path):
    out = tmp_path / "again.json"
    assert (
        main(
            [
                "data",
                "export-coco",
                "coco",
                str(coco_root),
                str(out),
                "--set",
                "ann=train.json",
                "--set",
                "test_ann=val.json",
            ]
        )
        == 0
    )
    a = dom().load(coco_root, "test")
    b = COCODomain(ann=str(out), test_ann=str(out)).load(tmp_path, "test")
    assert_same_samples(a, b)
    assert b.classes == ("person", "dog")


# ------------------------------------------------------------------------------------------------ run


@pytest.mark.slow
def test_labelbudget_run_on_coco_data(synthetic_roots, tmp_path, capsys):
    root = synthetic_roots["coco"]
    argv = [
        "run",
        "tiny",
        "--domains",
        "coco",
        "--data-root",
        f"coco={root}",
        "--set",
        "coco.ann=annotations/train.json",
        "--set",
        "coco.test_ann=annotations/val.json",
        "--out",
        str(tmp_path / "runs"),
        "--launcher",
        "serial",
        "--quiet",
        "--methods",
        "supervised+random",
    ]
    assert main(argv) == 0
    recs = [
        json.loads(line)
        for p in (tmp_path / "runs").rglob("results.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert len(recs) == 2 and {r["domain"] for r in recs} == {"coco"}
    assert (
        recs[0]["primary_metric"] == "mAP50-95"
        and recs[0]["domain_options"]["ann"] == "annotations/train.json"
    )
