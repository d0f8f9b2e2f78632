"""Side-scan sonar: the VOC adapter, the synthetic waterfall generator, the saliency protocol and bad
input (each case strict and lenient)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from domains.base import AnnotationError, get_domain
from domains.sonar import SCTD_CLASSES, Sonar, parse_voc
from domains.synthetic.sonar import PRESETS, SURVEYS, render, write_dataset


@pytest.fixture(scope="session")
def sonar_tiny_root(_private_cache) -> Path:
    from domains.synthetic import ensure_synthetic

    return ensure_synthetic("sonar", "tiny", 0, progress=False)


def test_layout_splits_and_groups(sonar_tiny_root):
    root = sonar_tiny_root
    for sub in ("JPEGImages", "Annotations", "masks", "ImageSets/Main"):
        assert (root / sub).is_dir()
    assert (root / "classes.txt").read_text().split() == list(SCTD_CLASSES)
    dom = Sonar()
    assert dom.splits == ("pool", "test", "source") and dom.primary_metric.name == "mAP50"
    pool, test, src = (dom.load(root, s) for s in ("pool", "test", "source"))
    p = PRESETS["tiny"]
    assert (len(pool), len(test), len(src)) == (p.n_train, p.n_test, p.n_source)
    assert not {s.group for s in pool} & {s.group for s in test}
    assert {s.group[0] for s in src} == {"A"} and {s.group[0] for s in pool} | {s.group[0] for s in test} == {
        "B"
    }
    assert all(s.meta["mask_path"] for s in pool)
    # one image without targets per split; classes by their SCTD names
    assert min(s.num_objects for s in pool) == 0 and pool.class_counts().min() > 0


def test_8_and_16_bit_images(sonar_tiny_root):
    dom = Sonar()
    src, pool = dom.load(sonar_tiny_root, "source"), dom.load(sonar_tiny_root, "pool")
    assert src[0].image_path.endswith(".jpg") and pool[0].image_path.endswith(".png")
    raw = cv2.imread(pool[1].image_path, cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.ndim == 2
    img = pool[1].read_image()
    assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
    np.testing.assert_array_equal(img[..., 0], (raw >> 8).astype(np.uint8))


def test_voc_box_convention(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(
        "<annotation><size><width>64</width><height>48</height></size>"
        "<object><name>human</name><difficult>1</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    voc = parse_voc(p, SCTD_CLASSES)
    np.testing.assert_array_equal(voc.boxes, [[0, 0, 10, 5]])
    assert (
        voc.labels.tolist() == [2] and voc.difficult.tolist() == [1] and (voc.width, voc.height) == (64, 48)
    )


def test_waterfall_physics():
    rng = np.random.default_rng(0)
    cv, shadow_ratio, sizes = {"A": [], "B": []}, [], {c: [] for c in SCTD_CLASSES}
    ranges, shadows = {c: [] for c in SCTD_CLASSES}, {c: [] for c in SCTD_CLASSES}
    for k in range(60):
        key = "A" if k % 2 else "B"
        img, boxes, names, mask = render(rng, SURVEYS[key], 3)
        col = img.mean(0)
        centre = slice(48, 80)
        assert col[centre].min() < 0.5 * np.median(col)  # dark water column near nadir
        bg = img[:, :40][~mask[:, :40]]
        cv[key].append(bg.std() / bg.mean())
        for b, n in zip(boxes.astype(int), names, strict=True):
            sizes[n].append((b[2] - b[0]) * (b[3] - b[1]))
            region, m = img[b[1] : b[3], b[0] : b[2]], mask[b[1] : b[3], b[0] : b[2]]
            rows = m.any(1)
            dark = region[rows][~m[rows]]
            shadow_ratio.append(dark.mean() / (region[m].mean() + 1e-9))
            if 0 < b[0] and b[2] < 128:  # shadow not cut by the image border
                hl = np.nonzero(m.any(0))[0]
                ranges[n].append(abs(b[0] + hl.mean() - 64))
                shadows[n].append((b[2] - b[0]) - len(hl))
    assert np.mean(cv["B"]) > 1.3 * np.mean(cv["A"])  # the target survey is noisier
    assert np.median(shadow_ratio) < 0.5  # highlight followed by a dark shadow
    assert np.mean(sizes["ship"]) > np.mean(sizes["aircraft"]) > 2 * np.mean(sizes["human"])
    # shadows lengthen with range (per class: the shadow also grows with the target's height)
    assert np.mean([np.corrcoef(ranges[c], shadows[c])[0, 1] for c in ("ship", "aircraft")]) > 0.4


def test_deterministic_by_seed(tmp_path):
    def digest(r):
        return {p.relative_to(r): p.read_bytes() for p in sorted(r.rglob("*")) if p.is_file()}

    a = write_dataset(tmp_path / "a", 5, "tiny", False)
    b = write_dataset(tmp_path / "b", 5, "tiny", False)
    assert digest(a) == digest(b)


def test_saliency_protocol(sonar_tiny_root):
    from benchmark.detectors.base import Prediction
    from benchmark.evaluation import evaluate_domain, needs_dense

    dom = get_domain("sonar")
    assert needs_dense(dom)
    test = dom.load(sonar_tiny_root, "test")

    def pred(s, perfect):
        m = cv2.imread(s.meta["mask_path"], cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        fg = cv2.resize(m, (16, 16), interpolation=cv2.INTER_AREA) if perfect else np.full((16, 16), 0.5)
        return Prediction(
            s.boxes,
            np.ones(len(s.boxes), np.float32),
            s.labels,
            np.zeros((len(s.boxes), 3)),
            {"foreground": fg},
        )

    good = evaluate_domain(dom, test, [pred(s, True) for s in test])
    flat = evaluate_domain(dom, test, [pred(s, False) for s in test])
    assert good["metrics"]["mAP50"] == pytest.approx(1.0)
    assert good["metrics"]["MAE"] < flat["metrics"]["MAE"] and not good["higher_is_better"]["MAE"]
    assert good["metrics"]["maxF"] > flat["metrics"]["maxF"] and good["metrics"]["S-measure"] > 0.6


# ------------------------------------------------------------------------------------- bad input


@pytest.fixture
def tree(sonar_tiny_root, tmp_path) -> Path:
    root = tmp_path / "sonar"
    shutil.copytree(sonar_tiny_root, root)
    return root


def first_pool_id(root: Path) -> str:
    return (root / "ImageSets/Main/train.txt").read_text().split()[1]


def edit_xml(root: Path, sid: str, old: str, new: str) -> Path:
    p = root / "Annotations" / f"{sid}.xml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return p


def check(root: Path, path: Path, line: int, reason: str, skipped: str) -> None:
    with pytest.raises(AnnotationError) as ei:
        Sonar().load(root, "pool")
    assert ei.value.path == str(path) and ei.value.line == line and reason in ei.value.reason
    ds = Sonar().load(root, "pool", lenient=True)
    assert ds.report.skipped[skipped] == 1 and ds.report.problems[0].path == str(path)


def line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


def test_non_numeric_coordinate(tree):
    sid = first_pool_id(tree)
    p = edit_xml(tree, sid, "<xmin>", "<xmin>abc")
    check(tree, p, line_of(p, "<xmin>abc"), "non-numeric <xmin>", "objects")


def test_unknown_class(tree):
    sid = first_pool_id(tree)
    p = edit_xml(tree, sid, "<name>", "<name>submarine-")
    check(tree, p, line_of(p, "submarine"), "unknown class", "objects")


def test_malformed_xml(tree):
    sid = first_pool_id(tree)
    p = edit_xml(tree, sid, "</size>", "</sise>")
    check(tree, p, line_of(p, "</sise>"), "malformed XML", "images")


def test_xml_without_size(tree):
    sid = first_pool_id(tree)
    p = tree / "Annotations" / f"{sid}.xml"
    text = p.read_text()
    p.write_text(text[: text.index("  <size>")] + text[text.index("</size>") + 8 :])
    check(tree, p, 1, "no <size>", "images")


def test_size_disagrees_with_image(tree):
    sid = first_pool_id(tree)
    p = edit_xml(tree, sid, "<width>128", "<width>130")
    check(tree, p, 0, "says 130x128", "images")


def test_mask_size_differs(tree):
    sid = first_pool_id(tree)
    m = tree / "masks" / f"{sid}.png"
    cv2.imwrite(str(m), np.zeros((64, 64), np.uint8))
    check(tree, m, 0, "mask is 64x64", "images")


def test_missing_and_corrupt_image(tree):
    ids = (tree / "ImageSets/Main/train.txt").read_text().split()
    (tree / "JPEGImages" / f"{ids[1]}.png").unlink()
    check(tree, tree / "Annotations" / f"{ids[1]}.xml", 0, "no image", "images")
    (tree / "JPEGImages" / f"{ids[1]}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    check(tree, tree / "JPEGImages" / f"{ids[1]}.png", 0, "unreadable or corrupt", "images")


def test_duplicate_id_in_split_file(tree):
    lst = tree / "ImageSets/Main/train.txt"
    ids = lst.read_text().split()
    lst.write_text("\n".join([*ids, ids[3]]) + "\n")
    check(tree, lst, len(ids) + 1, "duplicate id", "images")


def test_empty_annotation_is_an_image_without_objects(tree):
    sid = first_pool_id(tree)
    (tree / "Annotations" / f"{sid}.xml").write_text("")
    ds = Sonar().load(tree, "pool")
    assert ds.by_id(sid).num_objects == 0 and ds.report.summary() == "no problems"


def test_box_partly_and_wholly_outside(tree):
    sid = first_pool_id(tree)
    p = tree / "Annotations" / f"{sid}.xml"
    text = p.read_text()
    obj = (
        "  <object><name>human</name><difficult>0</difficult><bndbox>"
        "<xmin>120</xmin><ymin>5</ymin><xmax>140</xmax><ymax>12</ymax></bndbox></object>\n"
        "  <object><name>human</name><difficult>0</difficult><bndbox>"
        "<xmin>200</xmin><ymin>5</ymin><xmax>210</xmax><ymax>12</ymax></bndbox></object>\n"
    )
    p.write_text(text.replace("</annotation>", obj + "</annotation>"))
    with pytest.raises(AnnotationError, match="wholly outside") as ei:
        Sonar().load(tree, "pool")
    assert ei.value.line == line_of(p, "<xmin>200")
    ds = Sonar().load(tree, "pool", lenient=True)
    s = ds.by_id(sid)
    np.testing.assert_allclose(s.boxes[-1], [119, 4, 128, 12])
    assert ds.report.repairs["boxes clipped to the image"] == 1 and ds.report.skipped["objects"] == 1


@pytest.mark.slow
def test_sonar_runs_in_a_matrix(tmp_path, capsys):
    """``labelbudget run`` with sonar in a matrix: records carry the COCO and saliency metrics."""
    from benchmark.cli import main
    from benchmark.leaderboard import load_records
    from benchmark.spec import load_matrix

    assert "sonar" in load_matrix("smoke").domains
    m = tmp_path / "m.toml"
    m.write_text(
        'name = "sonar-test"\nmethods = ["supervised+random"]\nseeds = [0]\nbudget_unit = "images"\n'
        'budgets = [8, 16]\nthreads = 1\n[detector]\nname = "tiny_fcos_xs"\n'
        "[schedule]\niterations = 8\nbatch_size = 4\nlr = 0.01\nwarmup = 2\n"
        '[domains.sonar]\nsynthetic_size = "tiny"\n'
    )
    rc = main(["run", str(m), "--out", str(tmp_path / "runs"), "--launcher", "serial"])
    assert rc == 0, capsys.readouterr()
    recs, problems = load_records(tmp_path / "runs")
    assert not problems and len(recs) == 2
    for r in recs:
        assert r["domain"] == "sonar" and r["primary_metric"] == "mAP50"
        assert set(r["metrics"]) == {"mAP50", "mAP50-95", "MAE", "maxF", "S-measure", "PixelAcc"}
        assert 0 <= r["metrics"]["MAE"] <= 1 and r["higher_is_better"]["MAE"] is False


def test_tree_without_source_list_exports_checks_and_evaluates(tmp_path, capsys):
    """Public sonar datasets ship train/test lists only: no source.txt is needed unless a run trains
    a source checkpoint."""
    import json
    import shutil

    from benchmark.cli import main
    from domains.synthetic import ensure_synthetic

    root = tmp_path / "sonar"
    shutil.copytree(ensure_synthetic("sonar", "tiny", 0, progress=False), root)
    (root / "ImageSets" / "Main" / "source.txt").unlink()
    assert main(["data", "check", "sonar", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pool:" in out and "test:" in out and "source: not present" in out
    for split in ("pool", "test"):
        assert (
            main(
                ["data", "export-coco", "sonar", str(root), str(tmp_path / f"{split}.json"), "--split", split]
            )
            == 0
        )
    assert (
        main(
            ["evaluate", "sonar", str(root), str(tmp_path / "test.json"), "--json", str(tmp_path / "r.json")]
        )
        == 0
    )
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["mAP50"] == 1.0
    # a split that is asked for and missing is one clear error naming its list file
    assert (
        main(["data", "export-coco", "sonar", str(root), str(tmp_path / "s.json"), "--split", "source"]) == 2
    )
    assert "source.txt is missing" in capsys.readouterr().err


def test_run_that_needs_the_source_split_says_so(tmp_path, capsys):
    import shutil

    from benchmark.cli import main
    from domains.synthetic import ensure_synthetic

    root = tmp_path / "sonar"
    shutil.copytree(ensure_synthetic("sonar", "tiny", 0, progress=False), root)
    (root / "ImageSets" / "Main" / "source.txt").unlink()
    args = [
        "run",
        "tiny",
        "--domains",
        "sonar",
        "--data-root",
        f"sonar={root}",
        "--out",
        str(tmp_path / "runs"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "source.txt is missing" in err and "needs the source split" in err
