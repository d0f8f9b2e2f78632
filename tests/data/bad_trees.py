# ruff: noqa: E501
"""Small valid dataset trees, one per native format, that the bad-input corpus corrupts one way each.

Every builder writes a complete, valid tree under ``root`` (a few tiny images) and returns the
``data check`` arguments that select its format. The trees are written by hand from the format
descriptions in the adapters' docstrings (not by the synthetic generators), so a case can name the
exact file and line it breaks.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def png(path: Path, w: int, h: int, mode: str = "RGB", value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def jpeg_bytes(w: int, h: int, value: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- DOTA

DOTA_P0001 = (
    "imagesource:GoogleEarth\ngsd:0.5\n10 10 30 10 30 30 10 30 plane 0\n40 40 60 40 60 60 40 60 ship 1\n"
)
DOTA_P0003 = "12 12 28 12 28 28 12 28 small-vehicle 0\n"


def build_dota(root: Path) -> list[str]:
    """train: P0001 (2 objects, header lines), P0002 (no objects); val: P0003."""
    for split, sid, text in (
        ("train", "P0001", DOTA_P0001),
        ("train", "P0002", ""),
        ("val", "P0003", DOTA_P0003),
    ):
        png(root / split / "images" / f"{sid}.png", 64, 64)
        (root / split / "labelTxt").mkdir(parents=True, exist_ok=True)
        (root / split / "labelTxt" / f"{sid}.txt").write_text(text)
    (root / "patching.json").write_text('{"patch_size": 64, "gap": 0}\n')
    return []


# ------------------------------------------------------------------------------------------ sonar


def voc_xml(w: int, h: int, objects: list[tuple[str, int, tuple[int, int, int, int]]]) -> str:
    objs = "".join(
        f"  <object>\n    <name>{n}</name>\n    <difficult>{d}</difficult>\n    <bndbox>\n"
        f"      <xmin>{b[0]}</xmin>\n      <ymin>{b[1]}</ymin>\n      <xmax>{b[2]}</xmax>\n"
        f"      <ymax>{b[3]}</ymax>\n    </bndbox>\n  </object>\n"
        for n, d, b in objects
    )
    return (
        f"<annotation>\n  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>1</depth>\n"
        f"  </size>\n{objs}</annotation>\n"
    )


def build_sonar(root: Path) -> list[str]:
    """train: A1 (2 objects, a mask), A2; test: B1; source: S1. 32x32 grayscale."""
    ann = {
        "A1": [("ship", 0, (3, 3, 12, 12)), ("human", 1, (20, 20, 25, 28))],
        "A2": [("aircraft", 0, (5, 5, 20, 9))],
        "B1": [("ship", 0, (2, 4, 10, 30))],
        "S1": [("human", 0, (1, 1, 6, 6))],
    }
    for sid, objs in ann.items():
        png(root / "JPEGImages" / f"{sid}.png", 32, 32, "L")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{sid}.xml").write_text(voc_xml(32, 32, objs))
    png(root / "masks" / "A1.png", 32, 32, "L", 0)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("A1\nA2\n")
    (main / "test.txt").write_text("B1\n")
    (main / "source.txt").write_text("S1\n")
    (root / "groups.csv").write_text("id,group\nA1,line1\nA2,line1\nB1,line2\nS1,line0\n")
    return []


# ------------------------------------------------------------------------------- Foggy Cityscapes

FOGGY_TRAIN = "aachen_000000_000019"
FOGGY_VAL = "frankfurt_000000_000019"


def foggy_polygons(objects: list[dict]) -> str:
    return json.dumps({"imgHeight": 32, "imgWidth": 64, "objects": objects}, indent=1) + "\n"


def build_foggy(root: Path) -> list[str]:
    """One train frame (clear + fog 0.02) and one val frame (fog 0.02), polygons only (no instance
    maps), 64x32."""
    objs = [
        {"label": "car", "polygon": [[4, 4], [20, 4], [20, 14], [4, 14]]},
        {"label": "road", "polygon": [[0, 20], [63, 20], [63, 31], [0, 31]]},
        {"label": "persongroup", "polygon": [[30, 5], [40, 5], [40, 25], [30, 25]]},
    ]
    for split, city, frame in (("train", "aachen", FOGGY_TRAIN), ("val", "frankfurt", FOGGY_VAL)):
        if split == "train":
            png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", 64, 32)
        png(root / "leftImg8bit_foggy" / split / city / f"{frame}_leftImg8bit_foggy_beta_0.02.png", 64, 32)
        g = root / "gtFine" / split / city
        g.mkdir(parents=True, exist_ok=True)
        (g / f"{frame}_gtFine_polygons.json").write_text(foggy_polygons(objs))
    return []


def foggy_json(root: Path, split: str = "val") -> Path:
    if split == "val":
        return root / "gtFine" / "val" / "frankfurt" / f"{FOGGY_VAL}_gtFine_polygons.json"
    return root / "gtFine" / "train" / "aachen" / f"{FOGGY_TRAIN}_gtFine_polygons.json"


# ------------------------------------------------------------------------------------ CityPersons

CP_TRAIN = ("aachen", "aachen_000000_000019")
CP_VAL = ("frankfurt", "frankfurt_000000_000019")


def cp_ann(objects: list[dict] | None = None) -> str:
    if objects is None:
        objects = [
            {"label": "pedestrian", "bbox": [10, 5, 8, 20], "bboxVis": [10, 5, 8, 12], "instanceId": 24000},
            {"label": "rider", "bbox": [30, 8, 6, 16], "bboxVis": [0, 0, 0, 0], "instanceId": 25000},
        ]
    return json.dumps({"imgHeight": 32, "imgWidth": 64, "objects": objects}, indent=1) + "\n"


def build_citypersons(root: Path) -> list[str]:
    for split, (city, frame) in (("train", CP_TRAIN), ("val", CP_VAL)):
        png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", 64, 32)
        g = root / "gtBboxCityPersons" / split / city
        g.mkdir(parents=True, exist_ok=True)
        (g / f"{frame}_gtBboxCityPersons.json").write_text(cp_ann())
    return ["--format", "citypersons"]


def cp_json(root: Path, split: str = "val") -> Path:
    city, frame = CP_VAL if split == "val" else CP_TRAIN
    return root / "gtBboxCityPersons" / split / city / f"{frame}_gtBboxCityPersons.json"


# ------------------------------------------------------------------------------------- CrowdHuman

CH_IDS = ("273271,c9db000d5146c15", "284193,faa9000f2678b5e", "283554,35288000868e92d4")


def ch_line(sid: str, boxes: list[dict] | None = None) -> str:
    if boxes is None:
        boxes = [
            {"tag": "person", "fbox": [10, 5, 12, 30], "vbox": [10, 5, 12, 20], "hbox": [12, 5, 6, 6]},
            {"tag": "mask", "fbox": [40, 10, 10, 10], "vbox": [40, 10, 10, 10], "extra": {"ignore": 1}},
        ]
    return json.dumps({"ID": sid, "gtboxes": boxes})


def build_crowdhuman(root: Path) -> list[str]:
    """train: two images; val: one. 64x48 JPEGs."""
    (root / "Images").mkdir(parents=True)
    for sid in CH_IDS:
        (root / "Images" / f"{sid}.jpg").write_bytes(jpeg_bytes(64, 48))
    (root / "annotation_train.odgt").write_text(ch_line(CH_IDS[0]) + "\n" + ch_line(CH_IDS[1]) + "\n")
    (root / "annotation_val.odgt").write_text(ch_line(CH_IDS[2]) + "\n")
    return ["--format", "crowdhuman"]


# ---------------------------------------------------------------------------------------- Caltech

CT_FRAMES = 30  # pool: frame 0 (train_skip 30); test: frame 29 (dbEval: skip-1:skip:nFrame-1)


def ct_objects(n: int = CT_FRAMES) -> list[list[dict]]:
    frames: list[list[dict]] = [[] for _ in range(n)]
    for i in (0, 29):
        frames[i] = [
            {"id": 1, "pos": [4, 2, 6, 14]},
            {"id": 2, "pos": [15, 3, 8, 10], "occl": 1, "posv": [15, 3, 8, 5]},
        ]
    return frames


def write_ct_vbb(path: Path, frames: list[list[dict]] | None = None, n: int = CT_FRAMES, labels=None) -> None:
    from caltech_writers import write_vbb

    path.parent.mkdir(parents=True, exist_ok=True)
    write_vbb(path, n, ct_objects(n) if frames is None else frames, labels or ["person", "people"])


def build_caltech(root: Path) -> list[str]:
    """set00/V000 (train) and set06/V000 (test): 30 JPEG frames of 32x24 each."""
    from caltech_writers import write_seq

    for set_name in ("set00", "set06"):
        (root / set_name).mkdir(parents=True)
        write_seq(root / set_name / "V000.seq", [jpeg_bytes(32, 24, 3 * i) for i in range(CT_FRAMES)], 32, 24)
        write_ct_vbb(root / "annotations" / set_name / "V000.vbb")
    return ["--format", "caltech"]


# ------------------------------------------------------------------------------------------- COCO


def coco_doc(files: list[str], boxes: dict[int, list[list[float]]] | None = None, first_id: int = 1) -> dict:
    images = [{"id": first_id + k, "file_name": f, "width": 48, "height": 32} for k, f in enumerate(files)]
    boxes = boxes if boxes is not None else {first_id: [[4, 4, 10, 12], [20, 6, 8, 8]]}
    anns = []
    for iid, bs in boxes.items():
        for b in bs:
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": 0})  # fmt: skip
    cats = [{"id": 1, "name": "boat"}, {"id": 2, "name": "buoy"}]
    return {"images": images, "annotations": anns, "categories": cats}


def build_coco(root: Path) -> list[str]:
    """images/a.png, b.png (train) and c.png (val), 48x32; annotations/train.json and val.json."""
    for f in ("a.png", "b.png", "c.png"):
        png(root / "images" / f, 48, 32)
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.json").write_text(json.dumps(coco_doc(["a.png", "b.png"]), indent=1))
    (root / "annotations" / "val.json").write_text(json.dumps(coco_doc(["c.png"], first_id=10), indent=1))
    return []


BUILDERS = {
    "dota": ("dota", build_dota),
    "sonar": ("sonar", build_sonar),
    "foggy": ("foggy_cityscapes", build_foggy),
    "citypersons": ("pedestrian", build_citypersons),
    "crowdhuman": ("pedestrian", build_crowdhuman),
    "caltech": ("pedestrian", build_caltech),
    "coco": ("coco", build_coco),
}
