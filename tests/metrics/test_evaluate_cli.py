"""`labelbudget evaluate`: external predictions scored with the domain's official metrics."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main
from domains.dota import DOTA


def perfect_coco(ds, by_sample_id=True):
    out = []
    for i, s in enumerate(ds, start=1):
        for b, lab in zip(s.boxes.tolist(), s.labels.tolist(), strict=True):
            out.append(
                {
                    "image_id": s.id if by_sample_id else i,
                    "category_id": lab + 1,
                    "score": 1.0,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
            )
    return out


@pytest.mark.parametrize("by_sample_id", [True, False])
def test_perfect_predictions_score_one(dota_tiny_root, tmp_path, capsys, by_sample_id):
    ds = DOTA().load(dota_tiny_root, "test")
    p = tmp_path / "preds.json"
    p.write_text(json.dumps(perfect_coco(ds, by_sample_id)))
    args = ["evaluate", "dota", str(dota_tiny_root), str(p), "--patches", "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["metrics"]["mAP50"] == pytest.approx(1.0) and res["metrics"]["mAP50-95"] == pytest.approx(1.0)
    assert "mAP50" in capsys.readouterr().out


def test_empty_predictions_score_zero(dota_tiny_root, tmp_path):
    p = tmp_path / "empty.json"
    p.write_text("[]")
    assert main(["evaluate", "dota", str(dota_tiny_root), str(p), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["mAP50"] == 0.0


def test_dota_task2_files(dota_tiny_root, tmp_path):
    """Submission files name whole scenes, as on the DOTA server."""
    ds = DOTA(label_unit="image").load(dota_tiny_root, "test")
    sub = tmp_path / "task2"
    sub.mkdir()
    lines: dict[str, list[str]] = {}
    for s in ds:
        for b, lab in zip(s.boxes.tolist(), s.labels.tolist(), strict=True):
            lines.setdefault(ds.classes[lab], []).append(f"{s.id} 0.9 {b[0]} {b[1]} {b[2]} {b[3]}")
    for cls, ls in lines.items():
        (sub / f"Task2_{cls}.txt").write_text("\n".join(ls) + "\n")
    assert main(["evaluate", "dota", str(dota_tiny_root), str(sub), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["mAP50"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("[{", "p.json", "not valid JSON"),
        ('{"a": 1}', "p.json", "JSON list"),
        (
            '[{"image_id": "P9999", "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1}]',
            "p.json",
            "unknown image_id",
        ),
        (
            '[{"image_id": 1, "category_id": 99, "bbox": [0, 0, 4, 4], "score": 1}]',
            "p.json",
            "category_id 99",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -4, 4], "score": 1}]',
            "p.json",
            "positive width",
        ),
        ('[{"image_id": 1, "bbox": [0, 0, 4, 4], "score": 1}]', "p.json", "needs image_id"),
        ("SCENE 0.9 1 2 3\n", "Task2_plane.txt", "Task2_plane.txt:1: expected imgname score and 4"),
        ("SCENE high 1 2 3 4\n", "Task2_plane.txt", "non-numeric"),
        ("SCENE 0.9 1 2 3 4\n", "Task2_spaceship.txt", "file name must be"),
        ("NOSUCH 0.9 1 2 3 4\n", "Task2_plane.txt", "unknown image 'NOSUCH'"),
    ],
)
def test_malformed_predictions(dota_tiny_root, tmp_path, capsys, content, name, message):
    scene = DOTA(label_unit="image").load(dota_tiny_root, "test").ids[0]
    p = tmp_path / name
    p.write_text(content.replace("SCENE", scene))
    assert main(["evaluate", "dota", str(dota_tiny_root), str(p)]) == 2
    assert message in capsys.readouterr().err


PERFECT = {
    "dota": ("mAP50", 1.0),
    "sonar": ("mAP50", 1.0),
    "foggy_cityscapes": ("mAP50", 1.0),
    "pedestrian": ("MR-2 Reasonable", 0.0),
}


@pytest.mark.parametrize("domain", sorted(PERFECT))
def test_every_domain_perfect_and_worst(domain, tmp_path):
    """Ground truth as predictions gives the perfect score (mAP 1, MR-2 0, MAE 0 from the masks as
    saliency maps); an empty predictions file gives the worst one."""
    import shutil

    from benchmark.external import evaluate_external
    from domains.base import get_domain
    from domains.synthetic import ensure_synthetic

    root = ensure_synthetic(domain, "tiny", 0, progress=False)
    dom = get_domain(domain)
    ds = dom.load(root, "test")
    dets = [
        {
            "image_id": s.id,
            "category_id": int(lab) + 1,
            "score": 1.0,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
        }
        for s in ds
        for b, lab, ig in zip(s.boxes.tolist(), s.labels.tolist(), s.ignore.tolist(), strict=True)
        if not ig
    ]
    p = tmp_path / "p.json"
    p.write_text(json.dumps(dets))
    maps = None
    if domain == "sonar":
        maps = tmp_path / "maps"
        maps.mkdir()
        for s in ds:
            shutil.copy(s.meta["mask_path"], maps / f"{s.id}.png")
    key, best = PERFECT[domain]
    res = evaluate_external(dom, ds, p, saliency_maps=maps)
    assert res["metrics"][key] == pytest.approx(best)
    if domain == "sonar":
        assert res["metrics"]["MAE"] == pytest.approx(0.0)
    p.write_text("[]")
    worst = evaluate_external(dom, ds, p, saliency_maps=maps)["metrics"][key]
    assert worst == pytest.approx(1.0 - best)
