"""The pedestrian domain: CityPersons, CrowdHuman and Caltech on hand-written real-format files, format
detection, bad input (strict and lenient), the synthetic CityPersons tree and the ``mr2`` protocol."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from caltech_writers import write_seq, write_vbb
from PIL import Image

from benchmark.cli import main
from benchmark.detectors.base import Prediction
from benchmark.evaluation import evaluate_domain
from domains.base import AnnotationError, DatasetNotFoundError, SpecError, get_domain
from domains.pedestrian import Pedestrian, SeqFrameSample, detect_format, read_seq_index

# --------------------------------------------------------------------------------- literal examples

# gtBboxCityPersons JSON, written by hand from the format description (cityscapesScripts
# helpers/annotation.py CsBbox2d: label, bbox / bboxVis = [x, y, w, h], instanceId)
CITYPERSONS_JSON = """{
    "imgHeight": 120,
    "imgWidth": 160,
    "objects": [
        {"instanceId": 24000, "label": "pedestrian", "bbox": [10, 20, 25, 60], "bboxVis": [10, 20, 25, 30]},
        {"instanceId": 24001, "label": "pedestrian", "bbox": [60, 30, 30, 72], "bboxVis": [60, 30, 30, 72]},
        {"instanceId": 25000, "label": "rider", "bbox": [100, 40, 20, 50], "bboxVis": [100, 40, 20, 50]},
        {"instanceId": 0, "label": "ignore", "bbox": [130, 5, 20, 40], "bboxVis": [130, 5, 20, 40]},
        {"instanceId": 0, "label": "person group", "bbox": [0, 0, 40, 15], "bboxVis": [0, 0, 40, 15]},
        {"instanceId": 0, "label": "sitting person", "bbox": [120, 80, 15, 25], "bboxVis": [120, 80, 15, 25]}
    ]
}
"""

# CrowdHuman .odgt, one JSON per line (crowdhuman.org/download.html)
CROWDHUMAN_ODGT = (
    '{"ID": "273271,c9db000d5146c15", "gtboxes": [{"tag": "person", "fbox": [72, 20, 40, 100], '
    '"vbox": [72, 20, 40, 60], "hbox": [80, 22, 12, 14], "extra": {"box_id": 0, "occ": 1}, '
    '"head_attr": {"ignore": 0, "occ": 0, "unsure": 0}}, {"tag": "mask", "fbox": [0, 0, 30, 30], '
    '"vbox": [0, 0, 30, 30], "hbox": [0, 0, 5, 5], "extra": {"ignore": 1}}, {"tag": "person", '
    '"fbox": [120, -10, 60, 150], "vbox": [120, 0, 40, 100], "hbox": [130, -5, 10, 10], '
    '"extra": {"box_id": 2, "occ": 1}}, {"tag": "person", "fbox": [10, 40, 20, 50], '
    '"vbox": [10, 40, 20, 50], "extra": {"ignore": 1}}]}\n'
    '{"ID": "284193,faa9000f2678b5e", "gtboxes": []}\n'
)


def _png(path: Path, w: int, h: int, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _jpeg(w: int, h: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_citypersons(
    root: Path,
    text: str = CITYPERSONS_JSON,
    frame: str = "ulm_000001_000019",
    split: str = "train",
    image: bool = True,
) -> Path:
    city = frame.split("_")[0]
    ann = root / "gtBboxCityPersons" / split / city / f"{frame}_gtBboxCityPersons.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(text)
    if image:
        _png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", 160, 120)
    return ann


@pytest.fixture()
def cp_root(tmp_path: Path) -> Path:
    root = tmp_path / "cp"
    write_citypersons(root)
    write_citypersons(root, frame="frankfurt_000000_000019", split="val")
    return root


@pytest.fixture()
def ch_root(tmp_path: Path) -> Path:
    root = tmp_path / "ch"
    root.mkdir()
    (root / "annotation_train.odgt").write_text(CROWDHUMAN_ODGT)
    # val holds another image: train and val must not share IDs
    (root / "annotation_val.odgt").write_text(CROWDHUMAN_ODGT.splitlines()[1].replace("b5e", "b5f") + "\n")
    for sid in ("273271,c9db000d5146c15", "284193,faa9000f2678b5e", "284193,faa9000f2678b5f"):
        (root / "Images").mkdir(exist_ok=True)
        Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(root / "Images" / f"{sid}.jpg")
    return root


def write_caltech(root: Path, n_frames: int = 60) -> None:
    """set00/V000 (train) and set06/V000 (test): 32x24 JPEG frames whose grey level is the frame index;
    the .vbb written from the struct layout (A.nFrame, A.objLists{f}(k).id/pos/occl/lock/posv, A.objLbl)."""
    labels = ["person", "people", "person?", "person"]
    for set_name in ("set00", "set06"):
        (root / set_name).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / set_name).mkdir(parents=True, exist_ok=True)
        write_seq(root / set_name / "V000.seq", [_jpeg(32, 24, 3 * i) for i in range(n_frames)], 32, 24)
        frames = []
        for i in range(n_frames):
            objs = [
                {"id": 1, "pos": [2, 2, 8, 20], "occl": 1, "posv": [2, 2, 8, 10]},
                {"id": 2, "pos": [12, 4, 10, 12], "occl": 0, "posv": [0, 0, 0, 0]},
            ]
            if i % 2:
                objs.append({"id": 3, "pos": [20, 1, 6, 14], "occl": 0})
            objs.append({"id": 4, "pos": [26, 10, 10, 20], "occl": 0})  # reaches outside: clipped
            frames.append(objs)
        write_vbb(root / "annotations" / set_name / "V000.vbb", n_frames, frames, labels)


@pytest.fixture()
def ct_root(tmp_path: Path) -> Path:
    root = tmp_path / "caltech"
    write_caltech(root)
    return root


# -------------------------------------------------------------------------------------- CityPersons


def test_citypersons_real_format(cp_root):
    dom = Pedestrian()
    assert detect_format(cp_root) == "citypersons"
    dom.verify(cp_root)
    ds = dom.load(cp_root, "pool")
    (s,) = list(ds)
    assert s.id == "ulm_000001_000019" and s.group == "ulm_000001" and (s.width, s.height) == (160, 120)
    assert s.ignore.tolist() == [False, False, True, True, True, True]
    assert (s.labels == 0).all()
    np.testing.assert_allclose(s.boxes[0], [10, 20, 35, 80])
    np.testing.assert_allclose(s.visible_boxes[0], [10, 20, 35, 50])
    np.testing.assert_allclose(s.occlusion[:2], [0.5, 0.0])
    assert ds.options["format"] == "citypersons"
    assert dom.load(cp_root, "test").ids == ["frankfurt_000000_000019"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"imgHeight": 120, "imgWidth": 160, "objects": [', "malformed JSON"),
        ('{"imgWidth": 160, "objects": []}', "missing 'imgHeight'"),
        ('{"imgHeight": 120, "objects": []}', "missing 'imgWidth'"),
        (
            '{"imgHeight": 120, "imgWidth": 160, "objects": ['
            '{"label": "pedestrian", "bbox": [5, 5, -3, 2]}]}',
            "non-positive width or height",
        ),
        (
            '{"imgHeight": 120, "imgWidth": 160, "objects": [{"label": "pedestrian", "bbox": [5, 5, 3]}]}',
            "must be [x, y, w, h]",
        ),
    ],
)
def test_citypersons_bad_input(cp_root, text, message):
    bad = write_citypersons(cp_root, text, frame="ulm_000002_000019")
    with pytest.raises(AnnotationError, match=re.escape(message)) as exc:
        Pedestrian().load(cp_root, "pool")
    assert exc.value.path == str(bad)
    ds = Pedestrian().load(cp_root, "pool", lenient=True)
    assert "ulm_000001_000019" in ds and len(ds.report.problems) == 1
    assert str(bad) in str(ds.report.problems[0])


def test_citypersons_missing_image_and_unknown_label(cp_root):
    write_citypersons(cp_root, frame="ulm_000003_000019", image=False)
    with pytest.raises(AnnotationError, match="image missing on disk"):
        Pedestrian().load(cp_root, "pool")
    assert Pedestrian().load(cp_root, "pool", lenient=True).report.skipped["images"] == 1
    write_citypersons(cp_root, CITYPERSONS_JSON.replace('"rider"', '"scooter"'), frame="ulm_000003_000019")
    ds = Pedestrian().load(cp_root, "pool")
    assert ds.report.repairs["unknown CityPersons label 'scooter' kept as an ignore region"] == 1
    assert ds.by_id("ulm_000003_000019").ignore[2]


# --------------------------------------------------------------------------------------- CrowdHuman


def test_crowdhuman_real_format(ch_root):
    dom = Pedestrian()
    assert detect_format(ch_root) == "crowdhuman"
    dom.verify(ch_root)
    ds = dom.load(ch_root, "pool")
    assert ds.ids == ["273271,c9db000d5146c15", "284193,faa9000f2678b5e"]
    s = ds[0]
    assert s.group == s.id and (s.width, s.height) == (160, 120)
    # person, mask (ignore), person reaching outside (clipped), person with extra.ignore = 1 (ignore)
    assert s.ignore.tolist() == [False, True, False, True]
    np.testing.assert_allclose(s.boxes[0], [72, 20, 112, 120])
    np.testing.assert_allclose(s.boxes[2], [120, 0, 160, 120])
    np.testing.assert_allclose(s.visible_boxes[0], [72, 20, 112, 80])
    assert ds.report.repairs["boxes clipped to the image"] == 1
    assert ds[1].num_objects == 0
    vis = Pedestrian(box="visible").load(ch_root, "pool")[0]
    np.testing.assert_allclose(vis.boxes[0], [72, 20, 112, 80])


def test_crowdhuman_bad_lines(ch_root):
    path = ch_root / "annotation_train.odgt"
    path.write_text(CROWDHUMAN_ODGT + "this is not json\n")
    with pytest.raises(AnnotationError, match="not a JSON object") as exc:
        Pedestrian().load(ch_root, "pool")
    assert (exc.value.path, exc.value.line) == (str(path), 3)
    ds = Pedestrian().load(ch_root, "pool", lenient=True)
    assert len(ds) == 2 and ds.report.skipped["images"] == 1
    path.write_text(CROWDHUMAN_ODGT.replace("[72, 20, 40, 100]", "[72, 20, 0, 100]"))
    with pytest.raises(AnnotationError, match=r"gtboxes\[0\] fbox has a non-positive") as exc:
        Pedestrian().load(ch_root, "pool")
    assert exc.value.line == 1
    assert Pedestrian().load(ch_root, "pool", lenient=True)[0].num_objects == 3
    path.write_text('{"ID": "nope", "gtboxes": []}\n')
    with pytest.raises(AnnotationError, match="image missing on disk"):
        Pedestrian().load(ch_root, "pool")


# ------------------------------------------------------------------------------------------ Caltech


def test_caltech_real_format(ct_root):
    dom = Pedestrian()
    assert detect_format(ct_root) == "caltech"
    dom.verify(ct_root)
    test = dom.load(ct_root, "test")
    assert test.ids == ["set06_V000_I00029", "set06_V000_I00059"]  # every 30th frame from frame 29
    s = test[0]
    assert isinstance(s, SeqFrameSample) and s.group == "set06_V000" and (s.width, s.height) == (32, 24)
    # person (occluded: posv), people (ignore), person? on odd frames (ignore), person clipped
    assert s.ignore.tolist() == [False, True, True, False]
    np.testing.assert_allclose(s.boxes[0], [2, 2, 10, 22])
    np.testing.assert_allclose(s.visible_boxes[0], [2, 2, 10, 12])
    np.testing.assert_allclose(s.visible_boxes[1], s.boxes[1])  # occl = 0: fully visible
    np.testing.assert_allclose(s.boxes[3], [26, 10, 32, 24])
    img = s.read_image()  # decoded lazily from the .seq file
    assert img.shape == (24, 32, 3) and abs(int(img.mean()) - 3 * 29) <= 2
    pool = dom.load(ct_root, "pool")
    assert pool.ids == ["set00_V000_I00000", "set00_V000_I00030"]
    assert Pedestrian(train_skip=3).load(ct_root, "pool").ids[:2] == [
        "set00_V000_I00000",
        "set00_V000_I00003",
    ]
    w, h, index = read_seq_index(ct_root / "set06" / "V000.seq")
    assert (w, h, len(index)) == (32, 24, 60)


def test_caltech_truncated_seq(ct_root):
    seq = ct_root / "set06" / "V000.seq"
    data = seq.read_bytes()
    seq.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotationError, match="truncated .seq file") as exc:
        Pedestrian().load(ct_root, "test")
    assert exc.value.path == str(seq)
    with pytest.raises(DatasetNotFoundError):  # lenient: the only test video is skipped
        Pedestrian().load(ct_root, "test", lenient=True)
    seq.write_bytes(b"\x00" * 2000)
    with pytest.raises(AnnotationError, match="not a Norpix .seq file"):
        Pedestrian().load(ct_root, "test")


def test_caltech_vbb_without_expected_fields(ct_root):
    from scipy.io import savemat

    vbb = ct_root / "annotations" / "set06" / "V000.vbb"
    savemat(str(vbb), {"A": {"nFrame": np.array([[60]]), "objLbl": np.array(["person"], dtype=object)}})
    with pytest.raises(AnnotationError, match=r"lacks the field\(s\) \['objLists'\]") as exc:
        Pedestrian().load(ct_root, "test")
    assert exc.value.path == str(vbb)
    savemat(str(vbb), {"B": np.zeros(3)})
    with pytest.raises(AnnotationError, match="no struct 'A'"):
        Pedestrian().load(ct_root, "test")
    write_vbb(vbb, 59, [[] for _ in range(59)], ["person"])
    with pytest.raises(AnnotationError, match="nFrame is 59 but V000.seq holds 60 frames"):
        Pedestrian().load(ct_root, "test")


# ---------------------------------------------------------------------------------------- detection


def test_format_detection_and_override(tmp_path, cp_root):
    with pytest.raises(DatasetNotFoundError, match="none of the pedestrian formats"):
        detect_format(tmp_path)
    (cp_root / "annotation_train.odgt").write_text(CROWDHUMAN_ODGT)
    with pytest.raises(SpecError, match="several pedestrian formats.*--format"):
        Pedestrian().load(cp_root, "pool")
    assert Pedestrian(format="citypersons").load(cp_root, "pool").ids == ["ulm_000001_000019"]
    with pytest.raises(SpecError, match="format must be auto or one of"):
        Pedestrian(format="inria")


def test_cli_format_option(cp_root, capsys):
    (cp_root / "annotation_train.odgt").write_text(CROWDHUMAN_ODGT)
    assert main(["data", "check", "pedestrian", str(cp_root)]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["data", "check", "pedestrian", str(cp_root), "--format", "citypersons"]) == 0
    assert "pool: 1 samples, 6 objects" in capsys.readouterr().out
    assert main(["data", "check", "pedestrian", str(cp_root), "--set", "format=citypersons"]) == 0


# ---------------------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synth_root(_private_cache) -> Path:
    from domains.synthetic import ensure_synthetic

    return ensure_synthetic("pedestrian", "tiny", 0, progress=False)


def test_synthetic_citypersons_tree(synth_root):
    from domains.synthetic.pedestrian import PRESETS

    assert detect_format(synth_root) == "citypersons"
    dom = get_domain("pedestrian")
    pool, test = dom.load(synth_root, "pool"), dom.load(synth_root, "test")
    assert len(pool) == PRESETS["tiny"].n_train and len(test) == PRESETS["tiny"].n_val
    assert not {s.group for s in pool} & {s.group for s in test}
    boxes = np.concatenate([s.boxes[~s.ignore] for s in pool])
    vis = 1 - np.concatenate([s.occlusion[~s.ignore] for s in pool])
    heights = boxes[:, 3] - boxes[:, 1]
    assert heights.min() >= 15 and heights.max() <= 110
    assert ((heights >= 50) & (vis >= 0.65)).sum() >= 30  # a Reasonable set to evaluate on
    assert (vis < 0.65).sum() >= 3  # occluded people exist
    assert sum(int(s.ignore.sum()) for s in pool) >= 5  # ignore regions exist
    labels = {
        o["label"]
        for f in synth_root.glob("gtBboxCityPersons/*/*/*.json")
        for o in json.loads(f.read_text())["objects"]
    }
    assert {"pedestrian", "ignore"} <= labels and labels <= {
        "pedestrian",
        "rider",
        "sitting person",
        "person group",
        "ignore",
    }


def test_synthetic_day_to_dusk_shift(synth_root):
    dom = get_domain("pedestrian")
    pool = np.array([s.read_image().reshape(-1, 3).mean(0) for s in dom.load(synth_root, "pool")])
    test = np.array([s.read_image().reshape(-1, 3).mean(0) for s in dom.load(synth_root, "test")])
    assert test.mean() < 0.9 * pool.mean()  # darker (train holds a few dusk frames too)
    tint = lambda a: float(np.mean(a[:, 0] / a[:, 2]))  # noqa: E731
    assert tint(test) > tint(pool) + 0.05  # warmer light


# ------------------------------------------------------------------------------------------- metric


def _preds(ds, perfect: bool):
    out = []
    for s in ds:
        keep = ~s.ignore if perfect else np.zeros(len(s.boxes), bool)
        n = int(keep.sum())
        out.append(
            Prediction(
                s.boxes[keep], np.ones(n, np.float32), np.zeros(n, np.int64), np.ones((n, 1), np.float32)
            )
        )
    return out


def test_mr2_protocol(synth_root):
    dom = Pedestrian()
    test = dom.load(synth_root, "test")
    res = evaluate_domain(dom, test, _preds(test, True))
    assert res["primary"] == "MR-2 Reasonable" and res["higher_is_better"]["MR-2 Reasonable"] is False
    assert res["metrics"]["MR-2 Reasonable"] == pytest.approx(0.0)
    assert res["metrics"]["AP50"] == pytest.approx(1.0)
    none = evaluate_domain(dom, test, _preds(test, False))
    assert none["metrics"]["MR-2 Reasonable"] == 1.0 and none["metrics"]["MR-2 All"] == 1.0
    assert "MR^-2" in res["impl"]["MR-2 Reasonable"]


@pytest.mark.slow
def test_labelbudget_run_on_pedestrians(_private_cache, tmp_path):
    out = tmp_path / "runs"
    argv = [
        "run",
        "tiny",
        "--domains",
        "pedestrian",
        "--set",
        "pedestrian.synthetic_size=tiny",
        "--set",
        "pedestrian.format=citypersons",
        "--out",
        str(out),
        "--launcher",
        "serial",
        "--quiet",
    ]
    assert main(argv) == 0
    recs = [json.loads(line) for p in out.rglob("results.jsonl") for line in p.read_text().splitlines()]
    assert len(recs) == 4 and all(r["primary_metric"] == "MR-2 Reasonable" for r in recs)
    assert all(r["higher_is_better"]["MR-2 Reasonable"] is False for r in recs)
    assert all(0.0 <= r["metrics"]["MR-2 Reasonable"] <= 1.0 for r in recs)


def test_caltech_export_coco_writes_frames_and_reimports(ct_root, tmp_path):
    """A ``.seq`` frame has no image file: export-coco writes its JPEG bytes beside the JSON, and the
    COCO adapter reads the same samples and the same pixels back."""
    from domains.coco import COCODomain

    out = tmp_path / "export" / "caltech_test.json"
    assert main(["data", "export-coco", "pedestrian", str(ct_root), str(out), "--split", "test"]) == 0
    frames = sorted((tmp_path / "export" / "caltech_test_frames").iterdir())
    assert [f.name for f in frames] == ["set06_V000_I00029.jpg", "set06_V000_I00059.jpg"]
    original = Pedestrian().load(ct_root, "test")
    assert frames[0].read_bytes() == original[0].frame_bytes()  # bytes copied, not re-encoded
    back = COCODomain(ann=str(out), test_ann=str(out)).load(tmp_path, "test")
    assert back.ids == original.ids
    for x, y in zip(original, back, strict=True):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-6, rtol=0)
        assert x.ignore.tolist() == y.ignore.tolist()
        np.testing.assert_array_equal(x.read_image(), y.read_image())
