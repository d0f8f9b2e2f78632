"""DOTA in full: versions, patch-based samples read as raster windows, GeoTIFF metadata, sensors,
label unit, and bad input (each case strict and lenient)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from domains.base import AnnotationError, DatasetNotFoundError, SpecError, read_raster
from domains.dota import CLASSES, DOTA, parse_label_file, polygons_to_boxes
from domains.patching import parse_patch_id
from domains.synthetic.dota import GAP, PATCH_SIZE, SENSORS


def test_real_line_format_example(tmp_path):
    p = tmp_path / "P0706.txt"
    p.write_text(
        "imagesource:GoogleEarth\ngsd:0.255589285596\n1054 1028 1063 1011 1111 1040 1112 1062 ship 1\n"
    )
    polys, labels, diff, meta = parse_label_file(p, CLASSES["1.0"])
    np.testing.assert_array_equal(polys, [[1054, 1028, 1063, 1011, 1111, 1040, 1112, 1062]])
    np.testing.assert_array_equal(polygons_to_boxes(polys), [[1054, 1011, 1112, 1062]])
    assert CLASSES["1.0"][labels[0]] == "ship" and diff.tolist() == [1]
    assert meta == {"imagesource": "GoogleEarth", "gsd": pytest.approx(0.255589285596)}


def test_versions_and_options():
    assert [len(DOTA(version=v).classes) for v in ("1.0", "1.5", "2.0")] == [15, 16, 18]
    with pytest.raises(SpecError, match="version"):
        DOTA(version="3.0")
    with pytest.raises(SpecError, match="label_unit"):
        DOTA(label_unit="pixel")
    with pytest.raises(SpecError, match="gap"):
        DOTA(patch_size=128, gap=128)
    assert DOTA().label_unit == "patch" and DOTA(label_unit="image").label_unit == "image"


def test_patches_of_the_synthetic_scenes(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "pool")
    scenes = DOTA(label_unit="image").load(dota_tiny_root, "pool")
    assert ds.options["patch_size"] == PATCH_SIZE and ds.options["gap"] == GAP
    assert len(ds) > 2 * len(scenes)
    by_scene = {s.id: s for s in scenes}
    for s in ds:
        scene, size, x, y = parse_patch_id(s.id)
        assert size == PATCH_SIZE and s.group == scene == s.meta["scene"]
        assert s.window == (x, y, s.width, s.height) and s.meta["label_unit"] == "patch"
        parent = by_scene[scene]
        assert x + s.width <= parent.width and y + s.height <= parent.height
        assert s.meta["imagesource"] == parent.meta["imagesource"]
        if len(s.boxes):
            assert (
                (s.boxes >= 0).all()
                and (s.boxes[:, 2] <= s.width).all()
                and (s.boxes[:, 3] <= s.height).all()
            )
    # scenes are several patches wide, and windows overlap by the gap: some objects are cut (difficult 2)
    assert max(sc.width for sc in scenes) >= 2 * PATCH_SIZE
    assert Counter(int(d) for s in ds for d in s.difficult)[2] > 0
    assert all(s.meta["label_unit"] == "image" for s in scenes)


def test_patch_pixels_are_windows_of_the_scene(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "test")
    kinds = set()
    for s in ds[:: max(1, len(ds) // 12)]:
        full = read_raster(s.image_path)
        x, y, w, h = s.window
        np.testing.assert_array_equal(s.read_image(), full[y : y + h, x : x + w])
        kinds.add(Path(s.image_path).suffix)
    assert kinds == {".png", ".tif"}


def test_geotiff_keeps_crs_and_transform(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "pool")
    tif = [s for s in ds if s.image_path.endswith(".tif")]
    png = [s for s in ds if s.image_path.endswith(".png")]
    assert tif and png
    assert tif[0].meta["crs"] == "EPSG:32633" and len(tif[0].meta["transform"]) == 6
    assert tif[0].meta["transform"][0] == pytest.approx(tif[0].meta["gsd"])
    assert "crs" not in png[0].meta


def test_two_sensors_differ_in_colour_and_resolution(dota_tiny_root):
    scenes = DOTA(label_unit="image").load(dota_tiny_root, "pool")
    scenes = list(scenes) + list(DOTA(label_unit="image").load(dota_tiny_root, "test"))
    by = {k: [s for s in scenes if s.meta["imagesource"] == k] for k in SENSORS}
    assert all(by.values())
    # red minus blue: GF-2 renders warmer
    warm = {
        k: np.mean([(lambda a: a[..., 0].mean() - a[..., 2].mean())(s.read_image()) for s in v])
        for k, v in by.items()
    }
    assert warm["GF-2"] > warm["GoogleEarth"] + 5

    assert min(s.meta["gsd"] for s in by["GF-2"]) > max(s.meta["gsd"] for s in by["GoogleEarth"])


def test_source_sensor_split(dota_tiny_root):
    dom = DOTA(source_sensor="GF-2")
    assert dom.splits == ("pool", "test", "source")
    src, pool = dom.load(dota_tiny_root, "source"), dom.load(dota_tiny_root, "pool")
    assert {s.meta["imagesource"] for s in src} == {"GF-2"}
    assert {s.meta["imagesource"] for s in pool} == {"GoogleEarth"}
    assert not {s.group for s in src} & {s.group for s in pool}


# ------------------------------------------------------------------------------------- bad input


def make_tree(tmp_path: Path, label: str, size=(300, 260), name="P0001") -> Path:
    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / split / "labelTxt").mkdir(parents=True, exist_ok=True)
    for split, other in (("train", "P0009"), ("val", "P0010")):  # train and val must not overlap
        cv2.imwrite(str(tmp_path / split / "images" / f"{other}.png"), np.zeros((200, 200, 3), np.uint8))
        (tmp_path / split / "labelTxt" / f"{other}.txt").write_text("0 0 10 0 10 10 0 10 plane 0\n")
    cv2.imwrite(
        str(tmp_path / "train" / "images" / f"{name}.png"), np.full((size[1], size[0], 3), 90, np.uint8)
    )
    (tmp_path / "train" / "labelTxt" / f"{name}.txt").write_text(label)
    return tmp_path


HEAD = "imagesource:GoogleEarth\ngsd:0.3\n"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1 2 x 4 5 6 7 8 ship 0", "non-numeric coordinate"),
        ("1 2 3 4 5 6 7 ship 0", "non-numeric coordinate 'ship'"),
        ("1 2 3 4 5 6 ship 0", "expected 9 or 10 tokens"),
        ("1 2 30 4 5 60 7 80 boat 0", "unknown class 'boat'"),
        ("0 0 10 10 20 20 30 30 ship 0", "collinear"),
        ("400 400 420 400 420 420 400 420 ship 0", "wholly outside"),
    ],
)
def test_bad_lines_strict_and_lenient(tmp_path, line, reason):
    root = make_tree(tmp_path, HEAD + "10 10 30 10 30 30 10 30 plane 0\n" + line + "\n")
    label = root / "train" / "labelTxt" / "P0001.txt"
    with pytest.raises(AnnotationError) as ei:
        DOTA().load(root, "pool")
    assert ei.value.path == str(label) and ei.value.line == 4 and reason in ei.value.reason
    ds = DOTA(label_unit="image").load(root, "pool", lenient=True)
    assert ds.by_id("P0001").num_objects == 1
    assert sum(ds.report.skipped.values()) == 1 and ds.report.problems[0].line == 4


def test_self_intersecting_polygon_is_repaired_and_counted(tmp_path):
    # corners 3 and 4 swapped: a bow tie
    root = make_tree(tmp_path, HEAD + "10 10 50 10 10 30 50 30 ship 0\n")
    ds = DOTA(label_unit="image").load(root, "pool")
    poly = ds.by_id("P0001").polygons[0].reshape(4, 2)
    import shapely

    assert shapely.Polygon(poly).is_valid and shapely.Polygon(poly).area == pytest.approx(800)
    assert sum(ds.report.repairs.values()) == 1 and "self-intersecting" in ds.report.summary()


def test_box_partly_outside_is_clipped_and_counted(tmp_path):
    root = make_tree(tmp_path, HEAD + "280 10 320 10 320 30 280 30 ship 0\n")
    ds = DOTA(label_unit="image").load(root, "pool")
    np.testing.assert_allclose(ds.by_id("P0001").boxes, [[280, 10, 300, 30]])
    assert ds.report.repairs["boxes clipped to the image"] == 1


def test_empty_label_file_is_valid(tmp_path):
    root = make_tree(tmp_path, "")
    ds = DOTA().load(root, "pool")
    scene = [s for s in ds if s.group == "P0001"]
    assert scene and all(s.num_objects == 0 for s in scene)  # the scene is kept, with no objects
    assert ds.report.summary() == "no problems"


def test_missing_corrupt_and_duplicate_images(tmp_path):
    root = make_tree(tmp_path, HEAD)
    (root / "train" / "labelTxt" / "P0002.txt").write_text(HEAD)  # no image
    (root / "train" / "images" / "P0003.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "train" / "labelTxt" / "P0003.txt").write_text(HEAD)
    cv2.imwrite(str(root / "train" / "images" / "P0001.tif"), np.zeros((8, 8, 3), np.uint8))  # duplicate id
    with pytest.raises(AnnotationError):
        DOTA().load(root, "pool")
    ds = DOTA().load(root, "pool", lenient=True)
    text = "\n".join(str(p) for p in ds.report.problems)
    assert "P0002.txt" in text and "P0003.png" in text and "unreadable or corrupt" in text
    assert "duplicate id" in text
    assert ds.report.skipped["images"] == 3
    assert {s.group for s in ds} == {"P0001", "P0009"}


def test_missing_split_is_actionable(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="labelTxt"):
        (tmp_path / "train" / "images").mkdir(parents=True)
        DOTA().load(tmp_path, "pool")


def test_read_raster_modes(tmp_path):
    from PIL import Image

    grad = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grad).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    want = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    np.testing.assert_array_equal(read_raster(tmp_path / "p.png"), want)
    Image.fromarray(grad).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(
        read_raster(tmp_path / "la.png", (2, 1, 3, 4)), np.repeat(grad[1:5, 2:5, None], 3, 2)
    )
    cv2.imwrite(str(tmp_path / "g16.png"), grad.astype(np.uint16) * 1024)
    np.testing.assert_array_equal(
        read_raster(tmp_path / "g16.png")[..., 1], (grad.astype(np.uint16) * 1024) >> 8
    )
    with pytest.raises(AnnotationError, match="unreadable or corrupt"):
        (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
        read_raster(tmp_path / "bad.png")
