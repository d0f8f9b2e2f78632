"""`labelbudget evaluate coco` on a real-style COCO file (image ids not 1..N and not in file order,
non-contiguous category ids) equals pycocotools' COCOeval on the same files."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main

IMAGE_IDS = [397133, 5, 1000, 42, 77, 139]
CATS = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"},
        {"id": 1, "name": "person"}]  # fmt: skip


def write_dataset(root, rng):
    (root / "images").mkdir(parents=True)
    images, anns, aid = [], [], 1
    for iid in IMAGE_IDS:
        fn = f"{iid:012d}.jpg"
        Image.new("RGB", (160, 120)).save(root / "images" / fn)
        images.append({"id": iid, "file_name": fn, "width": 160, "height": 120})
        for _ in range(int(rng.integers(2, 7))):
            x, y = rng.uniform(0, 110), rng.uniform(0, 80)
            w, h = rng.uniform(8, 48), rng.uniform(8, 38)
            w, h = min(w, 160 - x), min(h, 120 - y)
            crowd = int(rng.random() < 0.1)
            cat = CATS[int(rng.integers(len(CATS)))]["id"]
            anns.append({"id": aid * 7 + 3, "image_id": iid, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": crowd})  # fmt: skip
            aid += 1
    doc = {"images": images, "annotations": anns, "categories": CATS}
    (root / "val.json").write_text(json.dumps(doc))
    # the pool: other images (train and val must not overlap), the same categories
    (root / "images" / "train_0.jpg").write_bytes((root / "images" / images[0]["file_name"]).read_bytes())
    train = {"images": [{"id": 9, "file_name": "train_0.jpg", "width": 160, "height": 120}],
             "annotations": [{"id": 1, "image_id": 9, "category_id": 3, "bbox": [5, 5, 20, 20], "area": 400,
                              "iscrowd": 0}], "categories": CATS}  # fmt: skip
    (root / "train.json").write_text(json.dumps(train))
    return doc


def noisy_results(doc, rng):
    out = []
    for a in doc["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            x, y, w, h = (np.array(a["bbox"]) + rng.normal(0, 3, 4)).tolist()
            if w > 1 and h > 1:
                s = round(float(rng.choice([0.5, 0.9, rng.random()])), 3)  # ties included
                out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x, y, w, h],
                            "score": s})  # fmt: skip
    for _ in range(15):  # false positives, some on another category
        iid, cat = int(rng.choice(IMAGE_IDS)), int(rng.choice([c["id"] for c in CATS]))
        box = [*rng.uniform(0, 100, 2).tolist(), 20.0, 15.0]
        out.append({"image_id": iid, "category_id": cat, "bbox": box, "score": round(float(rng.random()), 3)})
    rng.shuffle(out)
    return out


def pycocotools_stats(gt_path, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:3]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_coco_equals_pycocotools(tmp_path, seed):
    rng = np.random.default_rng(seed)
    root = tmp_path / "coco"
    doc = write_dataset(root, rng)
    dets = noisy_results(doc, rng)
    (tmp_path / "results.json").write_text(json.dumps(dets))
    ref = pycocotools_stats(root / "val.json", dets)
    out = tmp_path / "r.json"
    sets = ["--set", "ann=train.json", "--set", "test_ann=val.json"]
    assert (
        main(["evaluate", "coco", str(root), str(tmp_path / "results.json"), *sets, "--json", str(out)]) == 0
    )
    m = json.loads(out.read_text())["metrics"]
    for key, want in zip(("mAP50-95", "mAP50", "mAP75"), ref, strict=True):
        assert m[key] == pytest.approx(float(want), abs=1e-9), key
    # string ids (the file names' stems, this project's sample ids) mean the same images
    by_name = [{**d, "image_id": f"{d['image_id']:012d}"} for d in dets]
    (tmp_path / "named.json").write_text(json.dumps(by_name))
    assert main(["evaluate", "coco", str(root), str(tmp_path / "named.json"), *sets, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"] == m


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_id": 6, "category_id": 3}, "unknown image_id 6"),  # a position, not an id of the file
        ({"image_id": 1, "category_id": 3}, "unknown image_id 1"),
        ({"image_id": "nosuch", "category_id": 3}, "unknown image_id 'nosuch'"),
        ({"image_id": 5, "category_id": 2}, "unknown category_id 2"),  # 2 is not a category of the file
        ({"image_id": 5, "category_id": 4}, "unknown category_id 4"),
    ],
)
def test_unknown_ids_are_errors_naming_them(tmp_path, capsys, entry, message):
    root = tmp_path / "coco"
    write_dataset(root, np.random.default_rng(0))
    (tmp_path / "r.json").write_text(json.dumps([{**entry, "bbox": [1, 1, 5, 5], "score": 0.5}]))
    sets = ["--set", "ann=train.json", "--set", "test_ann=val.json"]
    assert main(["evaluate", "coco", str(root), str(tmp_path / "r.json"), *sets]) == 2
    err = capsys.readouterr().err
    assert message in err and "r.json" in err and "entry 0" in err
