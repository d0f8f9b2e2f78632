"""Foggy Cityscapes: the adapter on hand-written real-format files and on the synthetic tree, bad input,
the fog protocol option, groups, the VOC07 protocol and measurable fog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.detectors.base import Prediction
from benchmark.evaluation import evaluate_domain
from benchmark.metrics.voc import evaluate_voc07
from domains.base import AnnotationError, DatasetNotFoundError, SpecError, get_domain
from domains.foggy_cityscapes import CLASSES, FoggyCityscapes, parse_polygons
from domains.synthetic.foggy_cityscapes import BETAS, PRESETS

# A literal gtFine polygons file, written by hand from the format description (cityscapesScripts
# helpers/annotation.py): a road, a car, a person partly behind the car, a person group, a caravan.
REAL_POLYGONS = """{
    "imgHeight": 64,
    "imgWidth": 128,
    "objects": [
        {"label": "road", "polygon": [[0, 40], [127, 40], [127, 63], [0, 63]], "deleted": 0,
         "verified": 0, "user": "annotator", "date": "22-Apr-2015 12:00:00"},
        {"label": "person", "polygon": [[40, 10], [50, 10], [50, 50], [40, 50]]},
        {"label": "car", "polygon": [[45, 30], [90, 30], [90, 55], [45, 55]]},
        {"label": "persongroup", "polygon": [[100, 20], [120, 20], [120, 40], [100, 40]]},
        {"label": "caravan", "polygon": [[5, 5], [20, 5], [20, 20]]},
        {"label": "bicycle", "polygon": [[0, 0], [3, 0], [3, 3], [0, 3]], "deleted": 1}
    ]
}
"""


def write_frame(
    root: Path,
    split: str,
    city: str,
    frame: str,
    polygons: str,
    betas=BETAS,
    instance=None,
    clear: bool = True,
) -> None:
    try:
        ann = json.loads(polygons)
    except json.JSONDecodeError:
        ann = None
    w, h = (
        (ann["imgWidth"], ann["imgHeight"]) if ann and "imgWidth" in ann and "imgHeight" in ann else (128, 64)
    )
    img = np.full((h, w, 3), 100, np.uint8)
    for d in ("leftImg8bit", "leftImg8bit_foggy", "gtFine"):
        (root / d / split / city).mkdir(parents=True, exist_ok=True)
    if clear:
        cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png"), img)
    for b in betas:
        cv2.imwrite(
            str(root / "leftImg8bit_foggy" / split / city / f"{frame}_leftImg8bit_foggy_beta_{b}.png"), img
        )
    (root / "gtFine" / split / city / f"{frame}_gtFine_polygons.json").write_text(polygons)
    if instance is not None:
        cv2.imwrite(str(root / "gtFine" / split / city / f"{frame}_gtFine_instanceIds.png"), instance)


@pytest.fixture()
def real_root(tmp_path: Path) -> Path:
    root = tmp_path / "cs"
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS)
    write_frame(root, "val", "frankfurt", "frankfurt_000001_000019", REAL_POLYGONS)
    return root


@pytest.fixture(scope="module")
def synth_root(_private_cache) -> Path:
    from domains.synthetic import ensure_synthetic

    return ensure_synthetic("foggy_cityscapes", "tiny", 0, progress=False)


def test_real_format_polygons_without_instance_map(real_root):
    ds = FoggyCityscapes().load(real_root, "pool")
    (s,) = list(ds)
    assert s.id == "aachen_000000_000019" and s.group == "aachen_000000"
    assert (s.width, s.height) == (128, 64)
    # person, car, persongroup (ignore); road and caravan are not detection classes; deleted is dropped
    assert [CLASSES[k] for k in s.labels] == ["person", "car", "person"]
    assert s.ignore.tolist() == [False, False, True]
    np.testing.assert_allclose(s.boxes[0], [40, 10, 51, 51])  # polygon extent, inclusive pixels
    np.testing.assert_allclose(s.boxes[1], [45, 30, 91, 56])
    np.testing.assert_allclose(s.boxes[2], [100, 20, 121, 41])
    assert ds.report.skipped["objects of non-detection label 'road'"] == 1
    assert ds.report.skipped["objects of non-detection label 'caravan'"] == 1
    assert s.image_path.endswith("aachen_000000_000019_leftImg8bit_foggy_beta_0.02.png")
    assert s.meta["beta"] == 0.02
    src = FoggyCityscapes().load(real_root, "source")
    assert src[0].image_path.endswith("aachen_000000_000019_leftImg8bit.png") and src[0].meta["beta"] is None
    test = FoggyCityscapes().load(real_root, "test")
    assert test.ids == ["frankfurt_000001_000019"]


def test_instance_map_gives_visible_boxes(tmp_path):
    # the car (drawn after the person) hides the person's lower part: the mask box is the visible part
    inst = np.zeros((64, 128), np.uint16)
    inst[40:64, :] = 7  # road (stuff: the bare label id)
    inst[10:51, 40:51] = 24000  # person 0
    inst[30:56, 38:91] = 26000  # car 0 overwrites (its mask is wider than its polygon here)
    inst[20:41, 100:121] = 24  # persongroup (a group: the bare class id)
    root = tmp_path / "cs"
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS, instance=inst)
    write_frame(root, "val", "frankfurt", "frankfurt_000001_000019", REAL_POLYGONS)
    s = FoggyCityscapes().load(root, "pool")[0]
    boxes = {CLASSES[k]: b.tolist() for k, b, ig in zip(s.labels, s.boxes, s.ignore, strict=True) if not ig}
    assert boxes["person"] == [40, 10, 51, 30]  # only rows 10-29 are visible (the polygon says 10-50)
    assert boxes["car"] == [38, 30, 91, 56]
    # fully hidden instance: count it, do not invent a box
    inst2 = inst.copy()
    inst2[10:51, 40:51] = 26000
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS, instance=inst2)
    ds = FoggyCityscapes().load(root, "pool")
    assert [CLASSES[k] for k in ds[0].labels[~ds[0].ignore]] == ["car"]
    assert ds.report.skipped["fully occluded instances (no pixels in instanceIds)"] == 1


def test_beta_all_makes_three_samples_per_frame(real_root):
    ds = FoggyCityscapes(beta="all").load(real_root, "pool")
    assert ds.ids == [f"aachen_000000_000019_beta{b}" for b in BETAS]
    assert {s.group for s in ds} == {"aachen_000000"}
    assert [s.meta["beta"] for s in ds] == [0.005, 0.01, 0.02]
    assert FoggyCityscapes(beta=0.01).load(real_root, "pool")[0].image_path.endswith("beta_0.01.png")
    assert ds.version != FoggyCityscapes().load(real_root, "pool").version
    with pytest.raises(SpecError, match="beta must be one of"):
        FoggyCityscapes(beta=0.03)


BAD = [
    ('{"imgHeight": 64, "imgWidth": 128, "objects": [', "malformed JSON"),
    ('{"imgWidth": 128, "objects": []}', "missing 'imgHeight'"),
    ('{"imgHeight": 64, "objects": []}', "missing 'imgWidth'"),
    (
        '{"imgHeight": 64, "imgWidth": 128, "objects": [{"label": "car", "polygon": [[1, 1], [5, 5]]}]}',
        "polygon has 2 point(s), needs at least 3",
    ),
    (
        '{"imgHeight": 64, "imgWidth": 128, "objects": [{"label": "car", "polygon": "abc"}]}',
        "polygon is not a list",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_annotations_strict_and_lenient(tmp_path, text, message):
    root = tmp_path / "cs"
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS)
    write_frame(root, "train", "aachen", "aachen_000001_000019", text)
    bad = root / "gtFine/train/aachen/aachen_000001_000019_gtFine_polygons.json"
    with pytest.raises(AnnotationError, match=re.escape(message)) as exc:
        FoggyCityscapes().load(root, "pool")
    assert exc.value.path == str(bad)
    if "malformed" in message:
        assert exc.value.line == 1
    ds = FoggyCityscapes().load(root, "pool", lenient=True)
    assert "aachen_000000_000019" in ds
    assert len(ds.report.problems) == 1 and str(bad) in str(ds.report.problems[0])
    assert sum(ds.report.skipped[k] for k in ("frames", "objects")) == 1


def test_unknown_label_is_counted_not_an_error(tmp_path):
    root = tmp_path / "cs"
    text = REAL_POLYGONS.replace('"caravan"', '"spaceship"')
    write_frame(root, "train", "aachen", "aachen_000000_000019", text)
    ds = FoggyCityscapes().load(root, "pool")
    assert ds.report.skipped["objects of non-detection label 'spaceship'"] == 1 and not ds.report.problems


def test_missing_foggy_image(tmp_path):
    root = tmp_path / "cs"
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS)
    write_frame(root, "train", "aachen", "aachen_000001_000019", REAL_POLYGONS, betas=("0.005", "0.01"))
    with pytest.raises(AnnotationError, match="foggy image missing for this clear one") as exc:
        FoggyCityscapes().load(root, "pool")
    assert exc.value.path.endswith("aachen_000001_000019_leftImg8bit.png")
    ds = FoggyCityscapes().load(root, "pool", lenient=True)
    assert ds.ids == ["aachen_000000_000019"] and ds.report.skipped["frames"] == 1
    # the clear source split does not need the foggy images
    assert len(FoggyCityscapes().load(root, "source")) == 2


def test_foggy_splits_do_not_need_clear_images(real_root):
    for p in (real_root / "leftImg8bit").rglob("*.png"):
        p.unlink()
    assert FoggyCityscapes().load(real_root, "test").ids == ["frankfurt_000001_000019"]
    with pytest.raises(AnnotationError, match="no clear image"):
        FoggyCityscapes().load(real_root, "source")


def test_verify_names_what_is_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        FoggyCityscapes().verify(tmp_path / "nothing")
    (tmp_path / "cs" / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit_foggy/train is missing"):
        FoggyCityscapes().verify(tmp_path / "cs")
    for d in ("leftImg8bit_foggy/train", "leftImg8bit_foggy/val", "gtFine/train"):
        (tmp_path / "cs" / d).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="gtFine/val is missing"):
        FoggyCityscapes().verify(tmp_path / "cs")


def test_parse_polygons_reports_file_order(tmp_path):
    p = tmp_path / "x_gtFine_polygons.json"
    p.write_text(REAL_POLYGONS)
    w, h, objs = parse_polygons(p)
    assert (w, h) == (128, 64)
    assert [o[0] for o in objs] == ["road", "person", "car", "persongroup", "caravan"]


# --------------------------------------------------------------------------------------- synthetic


def test_synthetic_layout_and_splits(synth_root):
    dom = get_domain("foggy_cityscapes")
    dom.verify(synth_root)
    pool, test, source = (dom.load(synth_root, s) for s in ("pool", "test", "source"))
    assert len(pool) == PRESETS["tiny"].n_train and len(test) == PRESETS["tiny"].n_val
    assert pool.ids == source.ids  # the same frames, foggy and clear
    assert not {s.group for s in pool} & {s.group for s in test}
    assert all(len(s.id.split("_")) == 3 for s in pool)
    counts = dict(zip(CLASSES, pool.class_counts(), strict=True))
    assert counts["car"] > 0 and counts["person"] > 0 and counts["rider"] > 0 and counts["bus"] > 0
    for s in list(pool)[:5]:
        img = s.read_image()
        assert img.shape == (s.height, s.width, 3)
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] <= s.height).all()
    f = next(synth_root.glob("gtFine/train/*/*_gtFine_polygons.json"))
    ann = json.loads(f.read_text())
    assert {"imgHeight", "imgWidth", "objects"} <= set(ann)
    assert {o["label"] for o in ann["objects"]} >= {"road", "sky"}
    inst = cv2.imread(str(f).replace("_polygons.json", "_instanceIds.png"), cv2.IMREAD_UNCHANGED)
    assert inst.dtype == np.uint16 and inst.max() >= 24000


def _rms_contrast(path: Path) -> float:
    g = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    return float(g.std())


def test_fog_is_measurable(synth_root):
    """RMS contrast (std of the grey level) falls from the clear image through beta 0.005, 0.01, 0.02."""
    per_image = []
    for clear in sorted(synth_root.glob("leftImg8bit/*/*/*_leftImg8bit.png")):
        frame = clear.name[: -len("_leftImg8bit.png")]
        fog_dir = Path(str(clear.parent).replace("leftImg8bit", "leftImg8bit_foggy", 1))
        c = [_rms_contrast(clear)] + [
            _rms_contrast(fog_dir / f"{frame}_leftImg8bit_foggy_beta_{b}.png") for b in BETAS
        ]
        per_image.append(c)
    a = np.array(per_image)
    mean = a.mean(0)
    assert mean[0] > mean[1] > mean[2] > mean[3], mean
    assert mean[3] < 0.9 * mean[0]  # beta 0.02 removes more than a tenth of the contrast
    # every single image loses contrast as beta grows (the lightest fog, 0.005, only on average)
    assert (a[:, 3] < a[:, 2]).all() and (a[:, 2] < a[:, 1]).all() and (a[:, 3] < a[:, 0]).all()


def test_synthetic_is_deterministic(tmp_path):
    from domains.synthetic.foggy_cityscapes import write_dataset

    a = write_dataset(tmp_path / "a", seed=5, size="tiny", progress=False)
    b = write_dataset(tmp_path / "b", seed=5, size="tiny", progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


# ------------------------------------------------------------------------------------------- metric


def _perfect(ds):
    out = []
    for s in ds:
        keep = ~s.ignore
        n = int(keep.sum())
        probs = np.zeros((n, len(CLASSES)), np.float32)
        out.append(Prediction(s.boxes[keep], np.ones(n, np.float32), s.labels[keep], probs))
    return out


def test_voc07_protocol_on_the_domain(synth_root):
    dom = FoggyCityscapes()
    test = dom.load(synth_root, "test")
    res = evaluate_domain(dom, test, _perfect(test))
    assert res["primary"] == "mAP50" and res["higher_is_better"]["mAP50"]
    assert res["metrics"]["mAP50"] == pytest.approx(1.0)
    assert res["metrics"]["COCO AP50"] == pytest.approx(1.0)
    assert "voc07" in res["impl"]["mAP50"]
    empty = [
        Prediction(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, 8), np.float32),
        )
        for _ in test
    ]
    assert evaluate_domain(dom, test, empty)["metrics"]["mAP50"] == 0.0


def test_voc07_hand_computed_and_ignore_regions():
    from domains.base import Sample

    s = Sample(
        "a",
        "a",
        100,
        100,
        [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 90, 90]],
        [0, 0, 2],
        ignore=[False, False, True],
    )
    # person: one TP (score .9), one FP (.8), one missed GT -> 11-point AP = 6/11 (recall 0.5, precision 1)
    # a detection inside the ignored car-group region is neither TP nor FP; car has no countable GT
    p = Prediction(
        np.array([[0, 0, 10, 10], [60, 0, 70, 10], [50, 50, 90, 90]], np.float32),
        np.array([0.9, 0.8, 0.7], np.float32),
        np.array([0, 0, 2]),
        np.zeros((3, 8), np.float32),
    )
    res = evaluate_voc07([s], CLASSES, [p])
    assert res["per_class"]["person"]["AP50"] == pytest.approx(6 / 11)
    assert "car" not in res["per_class"] and res["mAP50"] == pytest.approx(6 / 11)
    # IoU exactly 0.5 is not a match (VOC: ovmax > 0.5)
    half = Prediction(
        np.array([[0, 0, 10, 20]], np.float32),
        np.array([1.0], np.float32),
        np.array([0]),
        np.zeros((1, 8), np.float32),
    )
    s1 = Sample("b", "b", 100, 100, [[0, 0, 10, 10]], [0])
    assert evaluate_voc07([s1], CLASSES, [half])["mAP50"] == 0.0


def test_data_check_cli_names_the_broken_file(tmp_path, capsys):
    from benchmark.cli import main

    root = tmp_path / "cs"
    write_frame(root, "train", "aachen", "aachen_000000_000019", REAL_POLYGONS)
    write_frame(root, "val", "frankfurt", "frankfurt_000001_000019", REAL_POLYGONS)
    assert main(["data", "check", "foggy_cityscapes", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pool: 1 samples, 3 objects" in out and "source: 1 samples" in out
    write_frame(root, "train", "aachen", "aachen_000001_000019", '{"imgWidth": 128, "objects": []}')
    msg = "aachen_000001_000019_gtFine_polygons.json: missing 'imgHeight'"
    assert main(["data", "check", "foggy_cityscapes", str(root)]) != 0
    cap = capsys.readouterr()
    assert msg in cap.out + cap.err
    assert main(["data", "check", "foggy_cityscapes", str(root), "--lenient"]) in (0, 1)
    out = capsys.readouterr().out
    assert f"problem: {root}" in out and msg in out and "pool: 1 samples" in out
    main(["data", "check", "foggy_cityscapes", str(root), "--lenient", "--set", "beta=all"])
    assert "pool: 3 samples" in capsys.readouterr().out


@pytest.mark.slow
def test_labelbudget_run_records_the_fog_protocol(_private_cache, tmp_path):
    from benchmark.cli import main

    out = tmp_path / "runs"
    argv = [
        "run",
        "tiny",
        "--domains",
        "foggy_cityscapes",
        "--set",
        "foggy_cityscapes.synthetic_size=tiny",
        "--set",
        "foggy_cityscapes.beta=0.02",
        "--out",
        str(out),
        "--launcher",
        "serial",
        "--quiet",
    ]
    assert main(argv) == 0
    recs = [json.loads(line) for p in out.rglob("results.jsonl") for line in p.read_text().splitlines()]
    assert len(recs) == 4 and all(r["domain_options"]["beta"] == 0.02 for r in recs)
    assert all(r["primary_metric"] == "mAP50" and "COCO AP50" in r["metrics"] for r in recs)
