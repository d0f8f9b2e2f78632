# ruff: noqa: E501  (the corpus is a table: one case a line)
"""The bad-input corpus: corrupted datasets in each of the seven native
formats and bad prediction files, each with its expected outcome, run through ``data check`` (strict
and ``--lenient``), ``data export-coco`` and ``evaluate``.

Expected outcome of a corrupted dataset: strict commands exit 2 with exactly one line on stderr,
``labelbudget: error: FILE[:LINE]: reason``, naming the file (and the line where the format has
lines); ``data check --lenient`` exits 1 and lists the problem with the same file. No case may end in
a traceback, take more than 10 s, or exit 0 with objects silently lost. Each case is a function that
corrupts one thing in a small valid tree (``bad_trees``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_trees import (
    BUILDERS,
    CH_IDS,
    CP_VAL,
    FOGGY_TRAIN,
    FOGGY_VAL,
    ch_line,
    coco_doc,
    cp_ann,
    cp_json,
    foggy_json,
    foggy_polygons,
    png,
    voc_xml,
    write_ct_vbb,
)

from benchmark.cli import main


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import the heavy modules once, so the 10 s limit of a case measures the case, not torch's import."""
    import benchmark.evaluation  # noqa: F401
    import benchmark.external  # noqa: F401
    import benchmark.metrics.coco  # noqa: F401
    import domains.dota  # noqa: F401
    from domains.base import DOMAINS

    DOMAINS.names()


LONG = "x" * 10_000_000  # a 10 MB bad line: the error must not echo it whole


@dataclass
class Case:
    fmt: str  # a key of bad_trees.BUILDERS
    name: str
    corrupt: Callable[[Path], None]
    file: str  # the file the error names (a path relative to the root, or a bare file name)
    line: int | None = None  # the line the error names, where the format has lines
    split: str = "test"  # the split the corruption is in (export-coco / evaluate use it)
    export_fails: bool = True  # False: export-coco does not read what is broken (image pixels)


def text(rel: str, s: str | bytes) -> Callable[[Path], None]:
    def f(root: Path) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(s if isinstance(s, bytes) else s.encode())

    return f


def append(rel: str, s: str) -> Callable[[Path], None]:
    def f(root: Path) -> None:
        p = root / rel
        p.write_text(p.read_text() + s)

    return f


def remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def jedit(path_of: Callable[[Path], Path], fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def f(root: Path) -> None:
        p = path_of(root)
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d, indent=1))

    return f


def seq(*fs: Callable[[Path], None]) -> Callable[[Path], None]:
    def f(root: Path) -> None:
        for g in fs:
            g(root)

    return f


# ------------------------------------------------------------------------------------------- DOTA
DT = "train/labelTxt/P0001.txt"
DV = "val/labelTxt/P0003.txt"
DOTA_CASES = [
    Case("dota", "8 tokens", append(DV, "1 1 5 1 5 5 1 plane\n"), DV, 2),
    Case("dota", "11 tokens", append(DV, "1 1 5 1 5 5 1 5 plane 0 extra\n"), DV, 2),
    Case("dota", "non-numeric coordinate", append(DV, "1 1 5 1 5 5 1 5O plane 0\n"), DV, 2),
    Case("dota", "inf coordinate", append(DV, "1 1 inf 1 5 5 1 5 plane 0\n"), DV, 2),
    Case("dota", "nan coordinate", append(DV, "1 1 5 1 nan 5 1 5 plane 0\n"), DV, 2),
    Case("dota", "1e39 coordinate", append(DV, "1 1 1e39 1 5 5 1 5 plane 0\n"), DV, 2),
    Case("dota", "unknown class", append(DV, "1 1 5 1 5 5 1 5 aeroplane 0\n"), DV, 2),
    Case("dota", "difficult 3", append(DV, "1 1 5 1 5 5 1 5 plane 3\n"), DV, 2),
    Case("dota", "collinear polygon", append(DV, "1 1 5 5 9 9 13 13 plane 0\n"), DV, 2),
    Case("dota", "object wholly outside", append(DV, "100 100 120 100 120 120 100 120 plane 0\n"), DV, 2),
    Case(
        "dota", "gsd not a number", text(DT, "gsd:abc\n" + "10 10 30 10 30 30 10 30 plane 0\n"), DT, 1, "pool"
    ),
    Case("dota", "not UTF-8", text(DV, b"\xff\xfe\x00garbage\x81\n"), DV),
    Case("dota", "10 MB bad line", append(DV, f"1 1 5 1 5 5 1 5 {LONG}\n"), DV, 2),
    Case("dota", "image missing", remove("val/images/P0003.png"), "val/labelTxt/P0003.txt"),
    Case("dota", "orphan image", lambda r: png(r / "val/images/P0009.png", 8, 8), "val/images/P0009.png"),
    Case("dota", "0-byte image", text("val/images/P0003.png", b""), "val/images/P0003.png"),
    Case(
        "dota",
        "truncated PNG header",
        text("val/images/P0003.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
        "P0003.png",
    ),
    Case(
        "dota",
        "duplicate image id",
        lambda r: shutil.copy(r / "val/images/P0003.png", r / "val/images/P0003.tif"),
        "val/images/P0003.tif",
    ),
    Case(
        "dota",
        "scene in train and val",
        seq(
            text("val/labelTxt/P0001.txt", "1 1 5 1 5 5 1 5 plane 0\n"),
            lambda r: png(r / "val/images/P0001.png", 64, 64),
        ),
        "train/labelTxt/P0001.txt",
        None,
        "pool",
    ),
    Case(
        "dota",
        "bad patching.json",
        text("patching.json", '{"patch_size": "big"}'),
        "patching.json",
        export_fails=False,
    ),
]

# ------------------------------------------------------------------------------------------ sonar
SB = "Annotations/B1.xml"
LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n<annotation><size><width>32</width><height>32</height></size><object><name>&lol9;</name></object>"
    "</annotation>\n"
)
XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    "<annotation><size><width>32</width><height>32</height></size><object><name>&x;</name></object></annotation>\n"
)
SONAR_CASES = [
    Case("sonar", "malformed XML", text(SB, "<annotation><size>\n<width>32</width>\n</annotation>\n"), SB, 3),
    Case("sonar", "billion laughs", text(SB, LAUGHS), SB, 3),
    Case("sonar", "external entity", text(SB, XXE), SB, 2),
    Case("sonar", "no size", text(SB, "<annotation>\n<object/>\n</annotation>\n"), SB, 1),
    Case("sonar", "root not annotation", text(SB, "<voc>\n</voc>\n"), SB, 1),
    Case("sonar", "non-numeric xmin", text(SB, voc_xml(32, 32, [("ship", 0, ("a", 4, 10, 30))])), SB, 11),
    Case("sonar", "1e39 xmax", text(SB, voc_xml(32, 32, [("ship", 0, (2, 4, "1e39", 30))])), SB, 13),
    Case("sonar", "unknown class", text(SB, voc_xml(32, 32, [("whale", 0, (2, 4, 10, 30))])), SB, 8),
    Case("sonar", "difficult 2", text(SB, voc_xml(32, 32, [("ship", 2, (2, 4, 10, 30))])), SB, 9),
    Case("sonar", "empty box", text(SB, voc_xml(32, 32, [("ship", 0, (12, 4, 10, 30))])), SB, 10),
    Case("sonar", "box wholly outside", text(SB, voc_xml(32, 32, [("ship", 0, (40, 40, 50, 50))])), SB, 7),
    Case("sonar", "size disagrees with image", text(SB, voc_xml(40, 32, [("ship", 0, (2, 4, 10, 30))])), SB),
    Case("sonar", "annotation missing", remove(SB), SB),
    Case("sonar", "image missing", remove("JPEGImages/B1.png"), SB),
    Case("sonar", "0-byte image", text("JPEGImages/B1.png", b""), "JPEGImages/B1.png"),
    Case(
        "sonar",
        "mask size differs",
        lambda r: png(r / "masks/A1.png", 16, 16, "L"),
        "masks/A1.png",
        None,
        "pool",
    ),
    Case("sonar", "corrupt mask", text("masks/A1.png", b"not a png at all"), "masks/A1.png", None, "pool"),
    Case("sonar", "duplicate id in split file", text("ImageSets/Main/test.txt", "B1\nB1\n"), "test.txt", 2),
    Case(
        "sonar", "id in two splits", text("ImageSets/Main/test.txt", "B1\nA2\n"), "train.txt:2", None, "pool"
    ),
    Case(
        "sonar",
        "id climbs out of the root",
        text("ImageSets/Main/test.txt", "B1\n../../../../x\n"),
        "test.txt",
        2,
    ),
    Case("sonar", "bad groups.csv line", append("groups.csv", "B1\n"), "groups.csv", 6),
]

# ------------------------------------------------------------------------------- Foggy Cityscapes
FJ = "gtFine/val/frankfurt/" + FOGGY_VAL + "_gtFine_polygons.json"
CAR = [[4, 4], [20, 4], [20, 14], [4, 14]]


def fobjs(objs: list) -> Callable[[Path], None]:
    return text(FJ, foggy_polygons(objs))


FOGGY_CASES = [
    Case("foggy", "malformed JSON", text(FJ, '{"imgHeight": 32,\n "imgWidth": 64,\n "objects": [\n'), FJ),
    Case("foggy", "JSON list", text(FJ, "[]"), FJ),
    Case("foggy", "missing imgHeight", jedit(foggy_json, lambda d: d.pop("imgHeight")), FJ),
    Case("foggy", "negative imgWidth", jedit(foggy_json, lambda d: d.update(imgWidth=-64)), FJ),
    Case("foggy", "objects not a list", jedit(foggy_json, lambda d: d.update(objects={})), FJ),
    Case("foggy", "object without polygon", fobjs([{"label": "car"}]), FJ),
    Case("foggy", "polygon of 2 points", fobjs([{"label": "car", "polygon": [[1, 1], [5, 5]]}]), FJ),
    Case(
        "foggy", "non-numeric polygon", fobjs([{"label": "car", "polygon": [["a", 1], [5, 5], [1, 5]]}]), FJ
    ),
    Case(
        "foggy",
        "NaN in polygon",
        text(FJ, foggy_polygons([{"label": "car", "polygon": CAR}]).replace("20", "NaN", 1)),
        FJ,
    ),
    Case(
        "foggy",
        "polygon wholly outside",
        fobjs([{"label": "car", "polygon": [[70, 40], [90, 40], [90, 50]]}]),
        FJ,
    ),
    Case("foggy", "not UTF-8", text(FJ, b"\xff\xfe{\x81}"), FJ),
    Case(
        "foggy",
        "foggy image missing",
        remove(f"leftImg8bit_foggy/val/frankfurt/{FOGGY_VAL}_leftImg8bit_foggy_beta_0.02.png"),
        FJ,
    ),
    Case(
        "foggy",
        "clear image missing",
        remove(f"leftImg8bit/train/aachen/{FOGGY_TRAIN}_leftImg8bit.png"),
        "gtFine/train/aachen/" + FOGGY_TRAIN + "_gtFine_polygons.json",
        None,
        "source",
    ),
    Case(
        "foggy",
        "foggy image without annotation",
        lambda r: png(
            r / "leftImg8bit_foggy/val/frankfurt/frankfurt_000001_000019_leftImg8bit_foggy_beta_0.02.png",
            64,
            32,
        ),
        "frankfurt_000001_000019_leftImg8bit_foggy_beta_0.02.png",
    ),
    Case(
        "foggy",
        "instance map of the wrong size",
        lambda r: png(r / FJ.replace("_polygons.json", "_instanceIds.png"), 16, 16, "L"),
        FJ.replace("_polygons.json", "_instanceIds.png"),
    ),
    Case(
        "foggy",
        "instance map corrupt",
        text(FJ.replace("_polygons.json", "_instanceIds.png"), b"garbage"),
        FJ.replace("_polygons.json", "_instanceIds.png"),
    ),
    Case(
        "foggy",
        "0-byte foggy image",
        text(f"leftImg8bit_foggy/val/frankfurt/{FOGGY_VAL}_leftImg8bit_foggy_beta_0.02.png", b""),
        f"{FOGGY_VAL}_leftImg8bit_foggy_beta_0.02.png",
        export_fails=False,
    ),
    Case(
        "foggy",
        "image size disagrees",
        lambda r: png(
            r / f"leftImg8bit_foggy/val/frankfurt/{FOGGY_VAL}_leftImg8bit_foggy_beta_0.02.png", 32, 32
        ),
        f"{FOGGY_VAL}_leftImg8bit_foggy_beta_0.02.png",
        export_fails=False,
    ),
]

# ------------------------------------------------------------------------------------ CityPersons
CJ = "gtBboxCityPersons/val/frankfurt/" + CP_VAL[1] + "_gtBboxCityPersons.json"
CI = "leftImg8bit/val/frankfurt/" + CP_VAL[1] + "_leftImg8bit.png"


def cobjs(objs: list) -> Callable[[Path], None]:
    return text(CJ, cp_ann(objs))


CP_CASES = [
    Case("citypersons", "malformed JSON", text(CJ, '{"imgHeight": 32,\n "objects": [\n'), CJ),
    Case("citypersons", "JSON list", text(CJ, "[1, 2]"), CJ),
    Case("citypersons", "missing imgWidth", jedit(cp_json, lambda d: d.pop("imgWidth")), CJ),
    Case("citypersons", "imgHeight 0", jedit(cp_json, lambda d: d.update(imgHeight=0)), CJ),
    Case("citypersons", "objects not a list", jedit(cp_json, lambda d: d.update(objects="none")), CJ),
    Case("citypersons", "object without bbox", cobjs([{"label": "pedestrian"}]), CJ),
    Case("citypersons", "bbox of 3 numbers", cobjs([{"label": "pedestrian", "bbox": [1, 2, 3]}]), CJ),
    Case("citypersons", "negative width", cobjs([{"label": "pedestrian", "bbox": [1, 2, -3, 4]}]), CJ),
    Case(
        "citypersons",
        "NaN bbox",
        text(CJ, cp_ann([{"label": "pedestrian", "bbox": [1, 2, 3, 4]}]).replace("3", "NaN")),
        CJ,
    ),
    Case(
        "citypersons", "1e39 bbox", text(CJ, cp_ann([{"label": "pedestrian", "bbox": [0, 0, 1e39, 4]}])), CJ
    ),
    Case("citypersons", "box wholly outside", cobjs([{"label": "pedestrian", "bbox": [100, 2, 5, 9]}]), CJ),
    Case(
        "citypersons",
        "bad bboxVis",
        cobjs([{"label": "pedestrian", "bbox": [1, 2, 3, 4], "bboxVis": "x"}]),
        CJ,
    ),
    Case("citypersons", "not UTF-8", text(CJ, b"\x81\xff{}"), CJ),
    Case("citypersons", "image missing", remove(CI), CJ),
    Case(
        "citypersons",
        "image without annotation",
        lambda r: png(r / "leftImg8bit/val/frankfurt/frankfurt_000000_000576_leftImg8bit.png", 64, 32),
        "frankfurt_000000_000576_leftImg8bit.png",
    ),
    Case("citypersons", "0-byte image", text(CI, b""), CI, export_fails=False),
    Case(
        "citypersons",
        "truncated image",
        lambda r: (r / CI).write_bytes((r / CI).read_bytes()[:20]),
        CI,
        export_fails=False,
    ),
    Case("citypersons", "image size disagrees", lambda r: png(r / CI, 30, 30), CI, export_fails=False),
]

# ------------------------------------------------------------------------------------- CrowdHuman
CV = "annotation_val.odgt"


def chval(*lines: str) -> Callable[[Path], None]:
    return text(CV, "".join(x + "\n" for x in lines))


GOOD = ch_line(CH_IDS[2])
CH_CASES = [
    Case("crowdhuman", "line not JSON", chval(GOOD, "{not json"), CV, 2),
    Case("crowdhuman", "line is a list", chval(GOOD, "[1, 2]"), CV, 2),
    Case("crowdhuman", "ID missing", chval(GOOD, '{"gtboxes": []}'), CV, 2),
    Case("crowdhuman", "gtboxes not a list", chval('{"ID": "x", "gtboxes": 3}'), CV, 1),
    Case(
        "crowdhuman",
        "fbox missing",
        chval(ch_line(CH_IDS[2], [{"tag": "person", "vbox": [1, 1, 5, 5]}])),
        CV,
        1,
    ),
    Case(
        "crowdhuman",
        "negative width",
        chval(ch_line(CH_IDS[2], [{"tag": "person", "fbox": [1, 1, -5, 5]}])),
        CV,
        1,
    ),
    Case(
        "crowdhuman",
        "NaN fbox",
        chval(ch_line(CH_IDS[2], [{"tag": "person", "fbox": [1, 1, float("nan"), 5]}])),
        CV,
        1,
    ),
    Case(
        "crowdhuman",
        "vbox of 3",
        chval(ch_line(CH_IDS[2], [{"tag": "person", "fbox": [1, 1, 5, 5], "vbox": [1, 1, 5]}])),
        CV,
        1,
    ),
    Case(
        "crowdhuman",
        "box wholly outside",
        chval(ch_line(CH_IDS[2], [{"tag": "person", "fbox": [100, 1, 5, 5]}])),
        CV,
        1,
    ),
    Case("crowdhuman", "duplicate ID", chval(GOOD, GOOD), CV, 2),
    Case("crowdhuman", "ID climbs out", chval(ch_line("../../../../tmp/x")), CV, 1),
    Case("crowdhuman", "absolute ID", chval(ch_line("/etc/passwd")), CV, 1),
    Case("crowdhuman", "ID also in train", chval(ch_line(CH_IDS[0])), "annotation_train.odgt", 1, "pool"),
    Case("crowdhuman", "image missing", remove(f"Images/{CH_IDS[2]}.jpg"), CV, 1),
    Case(
        "crowdhuman", "corrupt image", text(f"Images/{CH_IDS[2]}.jpg", b"\xff\xd8garbage"), f"{CH_IDS[2]}.jpg"
    ),
    Case("crowdhuman", "not UTF-8", text(CV, b"\xff\x81\n"), CV),
    Case("crowdhuman", "10 MB bad line", chval(GOOD, LONG), CV, 2),
]

# ---------------------------------------------------------------------------------------- Caltech
TSEQ, TVBB = "set06/V000.seq", "annotations/set06/V000.vbb"


def vbb(frames=None, n: int = 30, labels=None) -> Callable[[Path], None]:
    return lambda root: write_ct_vbb(root / TVBB, frames, n, labels)


def frame29(objs: list[dict]) -> list[list[dict]]:
    fr: list[list[dict]] = [[] for _ in range(30)]
    fr[29] = objs
    return fr


def seq_bytes(root: Path, edit: Callable[[bytearray], bytes]) -> None:
    p = root / TSEQ
    p.write_bytes(edit(bytearray(p.read_bytes())))


def _header_width0(b: bytearray) -> bytes:
    b[548:552] = b"\x00\x00\x00\x00"
    return bytes(b)


def corrupt_frame(root: Path, size: tuple[int, int] | None = None) -> None:
    """Frame 29 (the test frame) gets garbage JPEG bytes, or a JPEG of another size (same length)."""
    from domains.pedestrian import read_seq_index

    p = root / TSEQ
    _, _, index = read_seq_index(p)
    off, n = index[29]
    b = bytearray(p.read_bytes())
    b[off : off + n] = b"\x00" * n if size is None else _jpeg_of_length(size, n)
    p.write_bytes(bytes(b))


def _jpeg_of_length(size: tuple[int, int], n: int) -> bytes:
    from bad_trees import jpeg_bytes

    data = jpeg_bytes(*size)
    assert len(data) <= n, (len(data), n)
    return data + b"\x00" * (n - len(data))  # bytes after the JPEG end marker are ignored by decoders


CT_CASES = [
    Case("caltech", "truncated .seq", lambda r: seq_bytes(r, lambda b: bytes(b[: len(b) // 2])), TSEQ),
    Case("caltech", "bad magic", lambda r: seq_bytes(r, lambda b: b"\x00\x00" + bytes(b[2:])), TSEQ),
    Case("caltech", ".seq header width 0", lambda r: seq_bytes(r, _header_width0), TSEQ),
    Case("caltech", "0-byte .seq", text(TSEQ, b""), TSEQ),
    Case("caltech", ".vbb missing", remove(TVBB), TSEQ),
    Case("caltech", "corrupt .vbb", text(TVBB, b"MATLAB 5.0 garbage" * 10), TVBB),
    Case(
        "caltech",
        ".vbb without struct A",
        lambda r: __import__("scipy.io").io.savemat(str(r / TVBB), {"B": 1}),
        TVBB,
    ),
    Case("caltech", "nFrame differs from the video", vbb(n=29, frames=[[] for _ in range(29)]), TVBB),
    Case("caltech", "NaN pos", vbb(frame29([{"id": 1, "pos": [4, 2, float("nan"), 14]}])), TVBB),
    Case("caltech", "1e39 pos", vbb(frame29([{"id": 1, "pos": [4, 2, 1e39, 14]}])), TVBB),
    Case("caltech", "negative width", vbb(frame29([{"id": 1, "pos": [4, 2, -6, 14]}])), TVBB),
    Case("caltech", "box wholly outside", vbb(frame29([{"id": 1, "pos": [400, 2, 6, 14]}])), TVBB),
    Case("caltech", "id outside objLbl", vbb(frame29([{"id": 5, "pos": [4, 2, 6, 14]}])), TVBB),
    Case("caltech", "corrupt JPEG frame", corrupt_frame, TSEQ, export_fails=False),
    Case("caltech", "frame of another size", lambda r: corrupt_frame(r, (16, 12)), TSEQ, export_fails=False),
]

# ------------------------------------------------------------------------------------------- COCO
KT, KV = "annotations/train.json", "annotations/val.json"


def kv(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    return jedit(lambda r: r / KV, fn)


def kval(doc: dict) -> Callable[[Path], None]:
    return text(KV, json.dumps(doc))


COCO_CASES = [
    Case("coco", "malformed JSON", text(KV, '{\n"images": [\n'), KV, 3),
    Case("coco", "JSON list", text(KV, "[]"), KV, 1),
    Case("coco", "no images key", kv(lambda d: d.pop("images")), KV),
    Case("coco", "category without id", kv(lambda d: d["categories"][0].pop("id")), KV),
    Case("coco", "duplicate category id", kv(lambda d: d["categories"][1].update(id=1)), KV),
    Case("coco", "image without width", kv(lambda d: d["images"][0].pop("width")), KV),
    Case(
        "coco",
        "duplicate image id",
        kv(lambda d: d["images"].append(dict(d["images"][0], file_name="d.png"))),
        KV,
    ),
    Case("coco", "image missing on disk", kv(lambda d: d["images"][0].update(file_name="nope.png")), KV),
    Case("coco", "absolute file_name", kv(lambda d: d["images"][0].update(file_name="/etc/passwd")), KV),
    Case(
        "coco", "file_name climbs", kv(lambda d: d["images"][0].update(file_name="../../../etc/passwd")), KV
    ),
    Case(
        "coco",
        "absolute path outside",
        kv(lambda d: d["images"][0].update(file_name="", path="/etc/hostname")),
        KV,
    ),
    Case("coco", "unknown category", kv(lambda d: d["annotations"][0].update(category_id=7)), KV),
    Case("coco", "unknown image id", kv(lambda d: d["annotations"][0].update(image_id=99)), KV),
    Case("coco", "negative width", kv(lambda d: d["annotations"][0].update(bbox=[1, 1, -4, 4])), KV),
    Case("coco", "1e39 bbox", kv(lambda d: d["annotations"][0].update(bbox=[1, 1, 1e39, 4])), KV),
    Case("coco", "bbox wholly outside", kv(lambda d: d["annotations"][0].update(bbox=[60, 1, 4, 4])), KV),
    Case("coco", "size disagrees with file", kv(lambda d: d["images"][0].update(width=64)), KV),
    Case(
        "coco",
        "image also in train",
        kv(lambda d: d["images"][0].update(file_name="a.png")),
        KT,
        None,
        "pool",
    ),
    Case("coco", "duplicate annotation id", kv(lambda d: d["annotations"][1].update(id=1)), KV),
    Case("coco", "0-byte image", text("images/c.png", b""), "images/c.png"),
    Case("coco", "not UTF-8", text(KV, b"\xff\x81{}"), KV),
    Case(
        "coco",
        "categories differ",
        kval(dict(coco_doc(["c.png"], first_id=10), categories=[{"id": 1, "name": "x"}])),
        KV,
        export_fails=False,  # export-coco reads one split: nothing to compare with
    ),
]

CASES = DOTA_CASES + SONAR_CASES + FOGGY_CASES + CP_CASES + CH_CASES + CT_CASES + COCO_CASES


def test_at_least_15_cases_per_format():
    per = {f: sum(c.fmt == f for c in CASES) for f in BUILDERS}
    assert min(per.values()) >= 15, per


def _build(fmt: str, root: Path) -> tuple[str, list[str]]:
    domain, builder = BUILDERS[fmt]
    return domain, builder(root)


def _run(argv: list[str], capsys) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    rc = main(argv)
    dt = time.perf_counter() - t0
    out, err = capsys.readouterr()
    return rc, out, err, dt


def _names(case: Case, root: Path) -> list[str]:
    """What the error must contain: the file (its path under the root, or its bare name) and
    ``:LINE`` where the case has a line."""
    p = case.file if "/" not in case.file else str(root / case.file)
    return [f"{p}:{case.line}" if case.line else p]


def _assert_one_line_error(rc: int, err: str, dt: float, case: Case, root: Path) -> None:
    assert "Traceback" not in err
    assert dt < 10, f"{case.name}: {dt:.1f} s"
    assert rc == 2, (case.name, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelbudget: error: "), err
    assert len(lines[0]) < 3000, "a long bad line is cut"
    for n in _names(case, root):
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.fmt}: {c.name}" for c in CASES])
def test_corrupted_dataset(case: Case, tmp_path: Path, capsys):
    root = tmp_path / case.fmt
    domain, extra = _build(case.fmt, root)
    case.corrupt(root)
    # strict: one line naming the file (and line)
    rc, out, err, dt = _run(["data", "check", domain, str(root), *extra], capsys)
    _assert_one_line_error(rc, err, dt, case, root)
    # lenient: exit 1, the problem listed with its file, counted in the summary
    rc, out, err, dt = _run(["data", "check", domain, str(root), *extra, "--lenient"], capsys)
    assert "Traceback" not in err and dt < 10
    assert rc == 1, (case.name, out, err)
    problems = [ln for ln in out.splitlines() if ln.strip().startswith("problem:")]
    assert problems and any(n in p for p in problems for n in _names(case, root)), out
    # export-coco of the broken split: one line too (pixels are not read, so a broken image exports)
    dest = tmp_path / "out.json"
    rc, out, err, dt = _run(
        ["data", "export-coco", domain, str(root), str(dest), "--split", case.split, *extra], capsys
    )
    if case.export_fails:
        _assert_one_line_error(rc, err, dt, case, root)
        assert not dest.exists()
    else:
        assert rc == 0 and "Traceback" not in err and dt < 10
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"
    # evaluate on a broken test split: one line, like data check
    if case.split == "test" and case.export_fails:
        preds = tmp_path / "preds.json"
        preds.write_text("[]\n")
        rc, out, err, dt = _run(["evaluate", domain, str(root), str(preds), *extra], capsys)
        _assert_one_line_error(rc, err, dt, case, root)


@pytest.mark.parametrize("fmt", list(BUILDERS))
def test_valid_trees_pass(fmt: str, tmp_path: Path, capsys):
    """The uncorrupted trees check clean (so every failure above is the corruption's)."""
    domain, extra = _build(fmt, tmp_path / fmt)
    rc, out, err, _ = _run(["data", "check", domain, str(tmp_path / fmt), *extra, "--deep"], capsys)
    assert rc == 0 and err == "", err
    assert not [ln for ln in out.splitlines() if ln.strip().startswith("problem:")]


BOM = "\ufeff"


@pytest.mark.parametrize(
    "fmt, rel",
    [
        ("dota", "val/labelTxt/P0003.txt"),
        ("coco", KV),
        ("citypersons", CJ),
        ("foggy", FJ),
        ("crowdhuman", CV),
        ("sonar", "ImageSets/Main/test.txt"),
    ],
)
def test_utf8_bom_is_accepted(fmt: str, rel: str, tmp_path: Path, capsys):
    root = tmp_path / fmt
    domain, extra = _build(fmt, root)
    before = _run(["data", "check", domain, str(root), *extra], capsys)[1]
    p = root / rel
    p.write_text(BOM + p.read_text(), encoding="utf-8")
    rc, out, err, _ = _run(["data", "check", domain, str(root), *extra], capsys)
    assert rc == 0 and err == "" and out == before


def test_empty_frames_stay_in_the_test_split(tmp_path: Path, capsys):
    """An image whose annotation lists no objects is a sample with no objects (never dropped)."""
    root = tmp_path / "cp"
    domain, extra = _build("citypersons", root)
    cp_json(root).write_text(cp_ann([]))
    rc, out, _, _ = _run(["data", "check", domain, str(root), *extra], capsys)
    assert rc == 0 and "test: 1 samples, 0 objects" in out
    froot = tmp_path / "foggy"
    domain, extra = _build("foggy", froot)
    foggy_json(froot).write_text(foggy_polygons([]))
    rc, out, _, _ = _run(["data", "check", domain, str(froot), *extra], capsys)
    assert rc == 0 and "test: 1 samples, 0 objects" in out


def test_errors_survive_a_worker_process():
    """A worker's data error reaches the launcher as the same one line (errors are picklable)."""
    import pickle

    from domains.base import AnnotationError, EmptySplitError

    e = pickle.loads(pickle.dumps(AnnotationError("/d/a.txt", 3, "bad")))
    assert (type(e), str(e), e.line) == (AnnotationError, "/d/a.txt:3: bad", 3)
    e = pickle.loads(pickle.dumps(EmptySplitError("no samples", [AnnotationError("/d/b", 0, "x")])))
    assert str(e) == "no samples; 1 problem(s), the first: /d/b: x" and len(e.problems) == 1
