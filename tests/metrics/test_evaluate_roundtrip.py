"""Export -> evaluate is a round trip: the test split written by `data export-coco`,
submitted unchanged as predictions, gets the perfect score; an empty submission the worst."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main
from domains.synthetic import ensure_synthetic

# domain -> (metric, perfect value, worst value)
EXPECT = {
    "dota": ("mAP50", 1.0, 0.0),
    "sonar": ("mAP50", 1.0, 0.0),
    "foggy_cityscapes": ("mAP50", 1.0, 0.0),
    "pedestrian": ("MR-2 Reasonable", 0.0, 1.0),
    "coco": ("mAP50-95", 1.0, 0.0),
}
CASES = [(d, False) for d in sorted(EXPECT)] + [("dota", True)]


@pytest.mark.parametrize(
    ("domain", "patches"), CASES, ids=[f"{d}{'-patches' if p else ''}" for d, p in CASES]
)
def test_exported_ground_truth_scores_perfect(domain, patches, tmp_path, capsys):
    root = ensure_synthetic(domain, "tiny", 0, progress=False)
    gt = tmp_path / "test.json"
    extra = ["--patches"] if patches else []
    assert main(["data", "export-coco", domain, str(root), str(gt), "--split", "test", *extra]) == 0
    doc = json.loads(gt.read_text())
    assert doc["annotations"], "the tiny test split has objects"
    metric, best, worst = EXPECT[domain]
    out = tmp_path / "r.json"
    # the export itself, unchanged (a COCO dataset: its annotations are the detections, score 1)
    assert main(["evaluate", domain, str(root), str(gt), *extra, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["metrics"][metric] == pytest.approx(best, abs=1e-9)
    if domain == "dota":
        # the export carries the polygons: DOTA's Task1 (polygon IoU) is scored too, and is perfect
        assert res["primary"] == "mAP50-task1"
        assert res["metrics"]["mAP50-task1"] == pytest.approx(1.0, abs=1e-9)
    # the same detections as a plain COCO results list (ids as exported, a score each)
    results = [
        {k: a[k] for k in ("image_id", "category_id", "bbox")} | {"score": 0.9}
        for a in doc["annotations"]
        if not a.get("iscrowd")
    ]
    (tmp_path / "list.json").write_text(json.dumps(results))
    assert main(["evaluate", domain, str(root), str(tmp_path / "list.json"), *extra, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"][metric] == pytest.approx(best, abs=1e-9)
    (tmp_path / "empty.json").write_text("[]")
    assert (
        main(["evaluate", domain, str(root), str(tmp_path / "empty.json"), *extra, "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["metrics"][metric] == pytest.approx(worst, abs=1e-9)


def test_patch_ids_are_not_scene_ids(tmp_path, capsys):
    """Patch-level results evaluated as scenes (no --patches) are refused, naming the id that has no
    scene, instead of being scored against the wrong images."""
    root = ensure_synthetic("dota", "tiny", 0, progress=False)
    for name, extra in (("patches.json", ["--patches"]), ("scenes.json", [])):
        assert main(["data", "export-coco", "dota", str(root), str(tmp_path / name), *extra]) == 0
    patches = json.loads((tmp_path / "patches.json").read_text())
    n_scenes = len(json.loads((tmp_path / "scenes.json").read_text())["images"])
    beyond = [a for a in patches["annotations"] if a["image_id"] > n_scenes]
    assert beyond, "the tiny test split has more patches than scenes"
    results = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0} for a in beyond]
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert main(["evaluate", "dota", str(root), str(tmp_path / "r.json")]) == 2
    assert f"unknown image_id {beyond[0]['image_id']}" in capsys.readouterr().err
