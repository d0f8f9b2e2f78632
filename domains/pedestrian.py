"""Pedestrian detection: CityPersons, CrowdHuman and Caltech Pedestrian behind one ``pedestrian`` domain.

Features
    Street-level and CCTV-like views with many small, tall, often occluded people. One class,
    ``pedestrian``: only CityPersons ``pedestrian``, CrowdHuman ``person`` and Caltech ``person`` are
    positives; riders, sitting persons, persons of unusual posture, person groups, CrowdHuman
    ``mask`` boxes (crowds, reflections, posters) and boxes with ``extra.ignore = 1``, Caltech
    ``person?``, ``people`` and ``ignore`` boxes are *ignore regions* (never positives, never false
    positives once a detection falls inside them).

Formats (detected from the tree; ``format`` option / ``--format`` overrides; a tree that matches
several is an error naming ``--format``)
    * ``citypersons``: ``leftImg8bit/{train,val}/{city}/<frame>_leftImg8bit.png`` and
      ``gtBboxCityPersons/{train,val}/{city}/<frame>_gtBboxCityPersons.json`` with ``imgHeight``,
      ``imgWidth``, ``objects[{label, bbox [x, y, w, h], bboxVis [x, y, w, h], instanceId}]``; labels
      ``ignore``, ``pedestrian``, ``rider``, ``sitting person``, ``person (other)``, ``person group``.
      pool = train, test = val, group = city + sequence.
    * ``crowdhuman``: ``Images/<ID>.jpg``, ``annotation_train.odgt`` / ``annotation_val.odgt`` with one
      JSON per line: ``ID``, ``gtboxes[{tag, fbox, vbox, hbox, extra{ignore}}]`` (``[x, y, w, h]``).
      Full-body boxes by default (the CrowdHuman / mmdet default ``eval_mode = 0``); option
      ``box = "visible"`` uses ``vbox``. Boxes reaching outside the image are clipped (counted as
      repairs). pool = train, test = val, group = the image.
    * ``caltech``: ``setXX/VYYY.seq`` videos (Norpix StreamPix, read as Piotr Dollar's ``seqIo.m`` does:
      a 1024-byte header with width/height at byte 548 and the frame count at byte 572, then per frame
      a uint32 size that counts itself, the JPEG bytes, and an 8-byte timestamp) and
      ``annotations/setXX/VYYY.vbb`` (a MATLAB struct ``A`` read with ``scipy.io.loadmat``: ``nFrame``,
      ``objLists`` with ``id``, ``pos`` = [l t w h], ``occl``, ``posv`` = visible [l t w h], and
      ``objLbl``). Frames are decoded lazily from the ``.seq`` file, only when their pixels are needed.
      pool = set00-05 every ``train_skip``-th frame (default 30, the "1x" training set; 3 gives "10x"),
      test = set06-10 every 30th frame starting at frame 29 (``dbEval.m``: ``skip-1:skip:nFrame-1``),
      group = set + video.

Visibility
    ``visible_boxes`` holds the visible box (CityPersons ``bboxVis``, CrowdHuman ``vbox``, Caltech
    ``posv`` when ``occl = 1``; otherwise the full box) and ``occlusion`` = 1 - visible area / full area,
    from which the MR^-2 setups (Reasonable, Small, Heavy, All) filter ground truth.

Errors
    Malformed JSON (a JSON file, or an ``.odgt`` line that is not JSON), missing ``imgHeight`` /
    ``imgWidth``, a box with a non-positive width or height, a non-finite box, a box wholly outside its
    image (CityPersons, CrowdHuman, Caltech alike; partly outside is kept, clipped for CrowdHuman and
    Caltech as before), an image missing on disk, a CityPersons image without its annotation file, a
    CrowdHuman ``ID`` that is not a plain file stem or that is in both ``.odgt`` files, a ``.vbb``
    without the expected fields, a truncated or corrupt ``.seq`` file (or a header frame size of 0), and
    a ``.vbb`` whose frame count differs from its video raise ``AnnotationError(path, line, reason)``
    (line = the ``.odgt`` line, the JSON error line, else 0 and the object's index in the reason); with
    ``lenient=True`` the object, image or video is skipped and counted in the dataset's report. Unknown
    labels/tags are kept as ignore regions and counted.

Metrics
    MR^-2 Reasonable (lower is better; the Caltech / CityPersons protocol, ``mr2`` in
    ``benchmark.metrics.pedestrian``), then MR^-2 Small / Heavy / All, the miss rate at FPPI 0.1 and
    AP50.

Licence and citation
    CityPersons: Cityscapes licence. Zhang, Benenson, Schiele, "CityPersons: A Diverse Dataset for
    Pedestrian Detection", CVPR 2017. CrowdHuman: non-commercial research licence. Shao et al.,
    "CrowdHuman: A Benchmark for Detecting Human in a Crowd", arXiv 2018. Caltech: Dollar et al.,
    "Pedestrian Detection: An Evaluation of the State of the Art", TPAMI 2012.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domains.base import (
    AnnotationError,
    DatasetNotFoundError,
    Domain,
    DomainDataset,
    EmptySplitError,
    LoadReport,
    MetricSpec,
    Sample,
    SpecError,
    check_relative,
    cut,
    digest_files,
    register_domain,
)

CLASSES = ("pedestrian",)
FORMATS = ("citypersons", "crowdhuman", "caltech")
CITYPERSONS_LABELS = ("ignore", "pedestrian", "rider", "sitting person", "person (other)", "person group")
CITYPERSONS_SPLITS = {"pool": "train", "test": "val"}
CROWDHUMAN_FILES = {"pool": "annotation_train.odgt", "test": "annotation_val.odgt"}
CALTECH_SETS = {
    "pool": tuple(f"set{i:02d}" for i in range(6)),
    "test": tuple(f"set{i:02d}" for i in range(6, 11)),
}
CALTECH_TEST_SKIP = 30
SEQ_HEADER_BYTES = 1024
SEQ_MAGIC = 0xFEED
SEQ_TIMESTAMP_BYTES = 8


def _box_xywh(v: Any, path: Path, line: int, what: str) -> np.ndarray:
    """A ``[x, y, w, h]`` list as an xyxy float64 array; raises on a wrong shape or a non-positive size."""
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AnnotationError(path, line, f"{what} is not a list of 4 numbers: {v!r}") from None
    if a.shape != (4,) or not np.isfinite(a).all() or np.abs(a).max() > 1e30:  # 1e39: inf as float32
        raise AnnotationError(path, line, f"{what} must be [x, y, w, h] (4 finite numbers), got {v!r}")
    if a[2] <= 0 or a[3] <= 0:
        raise AnnotationError(path, line, f"{what} has a non-positive width or height: {v!r}")
    return np.array([a[0], a[1], a[0] + a[2], a[1] + a[3]])


def _visibility(full: np.ndarray, vis: np.ndarray) -> np.ndarray:
    fa = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
    va = np.clip(vis[:, 2] - vis[:, 0], 0, None) * np.clip(vis[:, 3] - vis[:, 1], 0, None)
    return np.where(fa > 0, np.clip(va / np.maximum(fa, 1e-9), 0, 1), 1.0)


def _make_sample(
    sid: str,
    group: str,
    w: int,
    h: int,
    boxes: list[np.ndarray],
    vis: list[np.ndarray],
    ignore: list[bool],
    meta: dict[str, Any],
    image_path: str,
    cls: type[Sample] = Sample,
    **extra: Any,
) -> Sample:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    v = np.asarray(vis, np.float64).reshape(-1, 4)
    return cls(
        id=sid,
        group=group,
        width=w,
        height=h,
        boxes=b.astype(np.float32),
        labels=np.zeros(len(b), np.int64),
        ignore=np.asarray(ignore, bool),
        visible_boxes=v.astype(np.float32),
        occlusion=(1.0 - _visibility(b, v)).astype(np.float32),
        meta=meta,
        image_path=image_path,
        **extra,
    )


# ------------------------------------------------------------------------------------ CityPersons


def parse_citypersons(
    path: str | Path, report: LoadReport | None = None, lenient: bool = False
) -> tuple[int, int, list[np.ndarray], list[np.ndarray], list[bool]]:
    """One ``*_gtBboxCityPersons.json``: ``(width, height, boxes, visible boxes, ignore flags)``."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    try:
        ann = json.loads(path.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is accepted
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from None
    if not isinstance(ann, dict):
        raise AnnotationError(path, 1, "expected a JSON object with imgHeight, imgWidth and objects")
    size = []
    for key in ("imgWidth", "imgHeight"):
        v = ann.get(key)
        if v is None:
            raise AnnotationError(path, 0, f"missing {key!r}")
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise AnnotationError(path, 0, f"{key} must be a positive integer, got {v!r}")
        size.append(v)
    w, h = size
    objects = ann.get("objects", [])
    if not isinstance(objects, list):
        raise AnnotationError(path, 0, "'objects' must be a list")
    boxes, vis, ignore = [], [], []
    for k, obj in enumerate(objects):
        try:
            if not isinstance(obj, dict) or "label" not in obj or "bbox" not in obj:
                raise AnnotationError(path, 0, f"objects[{k}] needs 'label' and 'bbox'")
            label = str(obj["label"])
            full = _box_xywh(obj["bbox"], path, 0, f"objects[{k}] ({label!r}) bbox")
            vb = obj.get("bboxVis")
            if vb is None or (isinstance(vb, list) and len(vb) == 4 and vb[2] == 0 and vb[3] == 0):
                visible = full.copy()
            else:
                visible = _box_xywh(vb, path, 0, f"objects[{k}] ({label!r}) bboxVis")
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        if label not in CITYPERSONS_LABELS:
            report.repairs[f"unknown CityPersons label {label!r} kept as an ignore region"] += 1
        boxes.append(full)
        vis.append(visible)
        ignore.append(label != "pedestrian")
    return w, h, boxes, vis, ignore


# ------------------------------------------------------------------------------------- CrowdHuman


def parse_odgt_line(
    path: Path, lineno: int, line: str, box: str, report: LoadReport, lenient: bool
) -> tuple[str, list[np.ndarray], list[np.ndarray], list[bool]]:
    """One ``.odgt`` line: ``(ID, boxes, visible boxes, ignore flags)`` (unclipped)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, lineno, f"not a JSON object ({exc.msg})") from None
    if (
        not isinstance(rec, dict)
        or not isinstance(rec.get("ID"), str)
        or not isinstance(rec.get("gtboxes"), list)
    ):
        raise AnnotationError(path, lineno, "each line needs 'ID' (a string) and 'gtboxes' (a list)")
    boxes, vis, ignore = [], [], []
    for k, g in enumerate(rec["gtboxes"]):
        try:
            if not isinstance(g, dict):
                raise AnnotationError(path, lineno, f"gtboxes[{k}] is not an object")
            tag = str(g.get("tag", ""))
            key = "fbox" if box == "full" else "vbox"
            if key not in g:
                raise AnnotationError(path, lineno, f"gtboxes[{k}] has no {key!r}")
            b = _box_xywh(g[key], path, lineno, f"gtboxes[{k}] {key}")
            v = _box_xywh(g["vbox"], path, lineno, f"gtboxes[{k}] vbox") if "vbox" in g else b.copy()
            extra = g.get("extra") or {}
            flagged = bool(extra.get("ignore", 0)) if isinstance(extra, dict) else False
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        if tag not in ("person", "mask"):
            report.repairs[f"unknown CrowdHuman tag {tag!r} kept as an ignore region"] += 1
        boxes.append(b)
        vis.append(v)
        ignore.append(tag != "person" or flagged)
    return rec["ID"], boxes, vis, ignore


def _odgt_ids(path: Path) -> set[str]:
    """The IDs of an ``.odgt`` file (lines that do not parse are left out: that split's load reports them)."""
    out = set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("ID"), str):
            out.add(rec["ID"])
    return out


def _clip(b: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.clip(b, 0, [w, h, w, h])


# ----------------------------------------------------------------------------------------- Caltech


@dataclass
class SeqFrameSample(Sample):
    """A Caltech frame: its pixels are the JPEG at ``seq_offset`` (``seq_size`` bytes) of ``image_path``."""

    seq_offset: int = 0
    seq_size: int = 0

    def frame_bytes(self) -> bytes:
        """The frame's JPEG bytes, as stored in the video (what ``data export-coco`` writes out)."""
        path = Path(str(self.image_path))
        if not path.is_file():
            raise DatasetNotFoundError(f"video of sample {self.id} is missing: {path}")
        with open(path, "rb") as f:
            f.seek(self.seq_offset)
            data = f.read(self.seq_size)
        if len(data) != self.seq_size:
            raise AnnotationError(path, 0, f"truncated .seq file: frame of {self.id} is cut short")
        return data

    def read_image(self) -> np.ndarray:
        from PIL import Image

        from domains.base import _to_uint8_rgb

        path = Path(str(self.image_path))
        data = self.frame_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                arr = _to_uint8_rgb(np.asarray(im))
        except (OSError, SyntaxError) as exc:
            raise AnnotationError(path, 0, f"frame of {self.id} is not a readable JPEG ({exc})") from None
        if arr.shape[:2] != (self.height, self.width):
            raise AnnotationError(
                path, 0, f"frame is {arr.shape[1]}x{arr.shape[0]}, the header says {self.width}x{self.height}"
            )
        return arr


def read_seq_index(path: str | Path) -> tuple[int, int, list[tuple[int, int]]]:
    """``(width, height, [(offset, size) of each frame's JPEG])`` of a Norpix ``.seq`` file, reading
    only the header and the per-frame size fields. Raises ``AnnotationError`` when it is truncated."""
    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(SEQ_HEADER_BYTES)
        if len(header) < SEQ_HEADER_BYTES:
            raise AnnotationError(
                path, 0, f"truncated .seq file: header is {len(header)} of {SEQ_HEADER_BYTES} bytes"
            )
        (magic,) = struct.unpack_from("<I", header, 0)
        if magic != SEQ_MAGIC:
            raise AnnotationError(
                path, 0, f"not a Norpix .seq file (magic {magic:#x}, expected {SEQ_MAGIC:#x})"
            )
        width, height = struct.unpack_from("<II", header, 548)
        if not (0 < width <= 65535 and 0 < height <= 65535):
            raise AnnotationError(path, 0, f".seq header gives a frame size of {width}x{height}")
        (n_frames,) = struct.unpack_from("<I", header, 572)
        frames = []
        pos = SEQ_HEADER_BYTES
        for k in range(n_frames):
            f.seek(pos)
            raw = f.read(4)
            if len(raw) < 4:
                raise AnnotationError(path, 0, f"truncated .seq file: frame {k} of {n_frames} is missing")
            (n_bytes,) = struct.unpack("<I", raw)
            if n_bytes <= 4 or pos + n_bytes > total:
                raise AnnotationError(
                    path,
                    0,
                    f"truncated .seq file: frame {k} of {n_frames} needs {n_bytes} bytes at offset {pos}",
                )
            frames.append((pos + 4, n_bytes - 4))
            pos += n_bytes + SEQ_TIMESTAMP_BYTES
    return int(width), int(height), frames


def parse_vbb(path: str | Path) -> tuple[int, list[list[tuple[int, np.ndarray, int, np.ndarray]]], list[str]]:
    """Read a ``.vbb``: ``(nFrame, per frame [(id, pos xywh, occl, posv xywh)], objLbl)``."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise AnnotationError(path, 0, f"not a readable MATLAB .vbb file ({exc})") from None
    if "A" not in mat:
        raise AnnotationError(path, 0, "no struct 'A' (a .vbb file holds one MATLAB struct named A)")
    a = mat["A"]
    names = a.dtype.names or ()
    missing = [k for k in ("nFrame", "objLists", "objLbl") if k not in names]
    if missing:
        raise AnnotationError(
            path, 0, f"struct A lacks the field(s) {missing} (expected nFrame, objLists, objLbl, ...)"
        )
    a = a[0, 0]
    try:
        n_frame = int(np.asarray(a["nFrame"]).reshape(-1)[0])
        labels = [
            str(np.asarray(x).reshape(-1)[0]) if np.asarray(x).size else ""
            for x in np.asarray(a["objLbl"]).reshape(-1)
        ]
        lists = np.asarray(a["objLists"]).reshape(-1)
    except (IndexError, TypeError, ValueError) as exc:
        raise AnnotationError(path, 0, f"malformed nFrame / objLbl / objLists ({exc})") from None
    if len(lists) != n_frame:
        raise AnnotationError(path, 0, f"objLists has {len(lists)} frames, nFrame says {n_frame}")
    frames: list[list[tuple[int, np.ndarray, int, np.ndarray]]] = []
    for i, lst in enumerate(lists):
        objs = []
        lst = np.asarray(lst)
        if lst.size:
            fields = lst.dtype.names or ()
            need = [k for k in ("id", "pos") if k not in fields]
            if need:
                raise AnnotationError(path, 0, f"objLists{{{i + 1}}} lacks the field(s) {need}")
            for o in lst.reshape(-1):
                oid = int(np.asarray(o["id"]).reshape(-1)[0])
                pos = np.asarray(o["pos"], np.float64).reshape(-1)
                occl = int(np.asarray(o["occl"]).reshape(-1)[0]) if "occl" in fields else 0
                posv = np.asarray(o["posv"], np.float64).reshape(-1) if "posv" in fields else np.zeros(4)
                if pos.shape != (4,) or not 1 <= oid <= len(labels):
                    raise AnnotationError(
                        path, 0, f"frame {i}: object {oid} has pos {pos.tolist()} or an id outside objLbl"
                    )
                objs.append((oid, pos, occl, posv if posv.shape == (4,) else np.zeros(4)))
        frames.append(objs)
    return n_frame, frames, labels


# ------------------------------------------------------------------------------------------ domain


def detect_format(root: str | Path) -> str:
    """The dataset format of ``root`` (``docs/protocol.md#dataset-layouts``): raises when none or
    several match."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"pedestrian root {root} does not exist")
    found = []
    if (root / "gtBboxCityPersons").is_dir():
        found.append("citypersons")
    if any((root / f).is_file() for f in CROWDHUMAN_FILES.values()):
        found.append("crowdhuman")
    if (root / "annotations").is_dir() and any(root.glob("set*/*.seq")):
        found.append("caltech")
    if not found:
        raise DatasetNotFoundError(
            f"{root} holds none of the pedestrian formats: CityPersons (gtBboxCityPersons/), CrowdHuman "
            "(annotation_train.odgt / annotation_val.odgt) or Caltech (setXX/*.seq + annotations/)"
        )
    if len(found) > 1:
        raise SpecError(
            f"{root} looks like several pedestrian formats ({', '.join(found)}); choose one with --format "
            f"(data commands) or --set pedestrian.format=... (labelbudget run)"
        )
    return found[0]


@register_domain("pedestrian")
class Pedestrian(Domain):
    """Pedestrians: CityPersons / CrowdHuman / Caltech (see the module docstring)."""

    classes = CLASSES
    box_type = "hbb"
    label_unit = "image"
    splits = ("pool", "test")
    metrics = (
        MetricSpec(
            "MR-2 Reasonable", False, "mr2", "MR-2 Reasonable", "log-average miss rate, h >= 50, vis >= 0.65"
        ),
        MetricSpec("MR-2 Small", False, "mr2", "MR-2 Small", "h in [50, 75], vis >= 0.65"),
        MetricSpec("MR-2 Heavy", False, "mr2", "MR-2 Heavy", "h >= 50, vis in [0.2, 0.65]"),
        MetricSpec("MR-2 All", False, "mr2", "MR-2 All", "h >= 20, vis >= 0.2"),
        MetricSpec("MR@FPPI0.1", False, "mr2", "MR@FPPI0.1 Reasonable", "miss rate at 0.1 FPPI, Reasonable"),
        MetricSpec("AP50", True, "mr2", "AP50", "VOC all-point AP at IoU 0.5, Reasonable"),
    )
    default_options = {"format": "auto", "box": "full", "train_skip": 30}
    synthetic_version = "1"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        fmt = str(self.options["format"]).lower()
        if fmt not in ("auto", *FORMATS):
            raise SpecError(f"pedestrian format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
        self.options["format"] = fmt
        if self.options["box"] not in ("full", "visible"):
            raise SpecError(f"pedestrian box must be 'full' or 'visible', got {self.options['box']!r}")
        skip = self.options["train_skip"]
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 1:
            raise SpecError(f"pedestrian train_skip must be a positive integer, got {skip!r}")

    def resolve_format(self, root: str | Path) -> str:
        fmt = self.options["format"]
        return detect_format(root) if fmt == "auto" else fmt

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"pedestrian root {root} does not exist. Point --data-root pedestrian=PATH at a CityPersons, "
                "CrowdHuman or Caltech tree, or omit it to use the synthetic data."
            )
        fmt = self.resolve_format(root)
        if fmt == "citypersons":
            need = [root / top / s for top in ("leftImg8bit", "gtBboxCityPersons") for s in ("train", "val")]
        elif fmt == "crowdhuman":
            need = [root / "Images", *(root / f for f in CROWDHUMAN_FILES.values())]
        else:
            need = [root / "annotations"]
            for split, sets in CALTECH_SETS.items():
                if not any(p for s in sets for p in (root / s).glob("V*.seq")):
                    raise DatasetNotFoundError(
                        f"Caltech: no .seq videos in {sets[0]}-{sets[-1]} under {root} (split {split!r})"
                    )
        for p in need:
            if not p.exists():
                raise DatasetNotFoundError(f"pedestrian ({fmt}): {p} is missing")

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        self.check_split(split)
        fmt = self.resolve_format(root)
        report = LoadReport()
        loader = {
            "citypersons": self._load_citypersons,
            "crowdhuman": self._load_crowdhuman,
            "caltech": self._load_caltech,
        }
        samples, files = loader[fmt](root, split, report, lenient)
        if not samples:
            raise EmptySplitError(
                f"pedestrian ({fmt}): no usable images for split {split!r} under {root}", report.problems
            )
        opts = {**self.options, "format": fmt}
        digest = digest_files(files) + f"|{fmt}|box={self.options['box']}|skip={self.options['train_skip']}"
        return DomainDataset(self.name, split, self.classes, samples, digest, report, options=opts)

    # --- CityPersons ------------------------------------------------------------------------------
    def _load_citypersons(self, root: Path, split: str, report: LoadReport, lenient: bool):
        d = CITYPERSONS_SPLITS[split]
        suffix = "_gtBboxCityPersons.json"
        files = sorted((root / "gtBboxCityPersons" / d).glob(f"*/*{suffix}"))
        samples, used = [], []
        for p in files:
            frame, city = p.name[: -len(suffix)], p.parent.name
            img = root / "leftImg8bit" / d / city / f"{frame}_leftImg8bit.png"
            try:
                if not img.is_file():
                    raise AnnotationError(p, 0, f"image missing on disk: {img}")
                w, h, boxes, vis, ignore = parse_citypersons(p, report, lenient)
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            parts = frame.split("_")
            group = "_".join(parts[:2]) if len(parts) >= 3 else frame
            meta = {"format": "citypersons", "city": city}
            keep = []
            for k, b in enumerate(boxes):
                if b[2] <= 0 or b[3] <= 0 or b[0] >= w or b[1] >= h:  # partly outside is kept (as published)
                    report.problem(
                        AnnotationError(
                            p, 0, f"object {k}: box {b.tolist()} lies wholly outside the {w}x{h} image"
                        ),
                        lenient,
                        "objects",
                    )
                    continue
                keep.append(k)
            boxes, vis, ignore = [boxes[k] for k in keep], [vis[k] for k in keep], [ignore[k] for k in keep]
            samples.append(_make_sample(frame, group, w, h, boxes, vis, ignore, meta, str(img)))
            used.append(p)
        # an image without its annotation file would silently leave the split
        annotated = {f"{p.parent.name}/{p.name[: -len(suffix)]}" for p in files}
        for img in sorted((root / "leftImg8bit" / d).glob("*/*_leftImg8bit.png")):
            if f"{img.parent.name}/{img.name[: -len('_leftImg8bit.png')]}" not in annotated:
                report.problem(
                    AnnotationError(
                        img,
                        0,
                        "image without an annotation file (a frame with no people needs a "
                        "_gtBboxCityPersons.json with an empty objects list)",
                    ),
                    lenient,
                    "images",
                )
        return samples, used

    # --- CrowdHuman -------------------------------------------------------------------------------
    def _load_crowdhuman(self, root: Path, split: str, report: LoadReport, lenient: bool):
        from PIL import Image

        path = root / CROWDHUMAN_FILES[split]
        if not path.is_file():
            raise DatasetNotFoundError(f"CrowdHuman: {path} is missing (split {split!r})")
        samples = []
        seen: set[str] = set()
        try:
            text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM is accepted
        except UnicodeDecodeError as exc:
            raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from None
        other = root / CROWDHUMAN_FILES["test" if split == "pool" else "pool"]
        other_ids = _odgt_ids(other) if other.is_file() else set()
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                sid, boxes, vis, ignore = parse_odgt_line(
                    path, lineno, line, self.options["box"], report, lenient
                )
                check_relative(sid, path, lineno, "ID")
                if "/" in sid or "\\" in sid:
                    raise AnnotationError(
                        path, lineno, f"ID {cut(sid, 120)!r} must be a file stem (no folder)"
                    )
                if sid in other_ids:
                    raise AnnotationError(
                        path, lineno, f"ID {sid!r} is also in {other.name} (splits must not overlap)"
                    )
                if sid in seen:
                    raise AnnotationError(path, lineno, f"duplicate ID {sid!r}")
                img = root / "Images" / f"{sid}.jpg"
                if not img.is_file():
                    raise AnnotationError(path, lineno, f"image missing on disk: {img}")
                try:
                    with Image.open(img) as im:
                        w, h = im.size
                except (OSError, SyntaxError) as exc:
                    raise AnnotationError(img, 0, f"unreadable or corrupt image ({exc})") from None
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            seen.add(sid)
            cb = [_clip(b, w, h) for b in boxes]
            cv = [_clip(v, w, h) for v in vis]
            n_rep = sum(bool(np.any(np.abs(a - b) > 1e-9)) for a, b in zip(cb, boxes, strict=True))
            if n_rep:
                report.repairs["boxes clipped to the image"] += n_rep
            keep = [i for i, b in enumerate(cb) if b[2] > b[0] and b[3] > b[1]]
            for i in sorted(set(range(len(cb))) - set(keep)):
                report.problem(
                    AnnotationError(path, lineno, f"ID {sid}: box {i} lies wholly outside the {w}x{h} image"),
                    lenient,
                    "objects",
                )
            samples.append(
                _make_sample(
                    sid,
                    sid,
                    w,
                    h,
                    [cb[i] for i in keep],
                    [cv[i] for i in keep],
                    [ignore[i] for i in keep],
                    {"format": "crowdhuman"},
                    str(img),
                )
            )
        return samples, [path]

    # --- Caltech ----------------------------------------------------------------------------------
    def _load_caltech(self, root: Path, split: str, report: LoadReport, lenient: bool):
        skip = CALTECH_TEST_SKIP if split == "test" else int(self.options["train_skip"])
        start = skip - 1 if split == "test" else 0
        samples, used = [], []
        for set_name in CALTECH_SETS[split]:
            for seq in sorted((root / set_name).glob("V*.seq")):
                vbb = root / "annotations" / set_name / f"{seq.stem}.vbb"
                try:
                    if not vbb.is_file():
                        raise AnnotationError(seq, 0, f"no annotation file {vbb}")
                    w, h, index = read_seq_index(seq)
                    n_frame, frames, labels = parse_vbb(vbb)
                    if n_frame != len(index):
                        raise AnnotationError(
                            vbb, 0, f"nFrame is {n_frame} but {seq.name} holds {len(index)} frames"
                        )
                except AnnotationError as err:
                    report.problem(err, lenient, "videos")
                    continue
                used.append(vbb)
                group = f"{set_name}_{seq.stem}"
                for i in range(start, n_frame, skip):
                    boxes, vis, ignore = [], [], []
                    for oid, pos, occl, posv in frames[i]:
                        if not np.isfinite(pos).all() or np.abs(pos).max() > 1e30:
                            report.problem(
                                AnnotationError(
                                    vbb, 0, f"frame {i}: object {oid} has a non-finite pos {pos.tolist()}"
                                ),
                                lenient,
                                "objects",
                            )
                            continue
                        if pos[2] <= 0 or pos[3] <= 0:
                            report.problem(
                                AnnotationError(
                                    vbb, 0, f"frame {i}: object {oid} has a non-positive size {pos.tolist()}"
                                ),
                                lenient,
                                "objects",
                            )
                            continue
                        if pos[0] + pos[2] <= 0 or pos[1] + pos[3] <= 0 or pos[0] >= w or pos[1] >= h:
                            report.problem(
                                AnnotationError(
                                    vbb,
                                    0,
                                    f"frame {i}: object {oid} at {pos.tolist()} lies wholly outside "
                                    f"the {w}x{h} frame",
                                ),
                                lenient,
                                "objects",
                            )
                            continue
                        if not np.isfinite(posv).all():
                            posv = np.zeros(4)
                            report.repairs["non-finite posv replaced by the full box"] += 1
                        full = np.array([pos[0], pos[1], pos[0] + pos[2], pos[1] + pos[3]])
                        has_v = occl == 1 and posv[2] > 0 and posv[3] > 0
                        v = (
                            np.array([posv[0], posv[1], posv[0] + posv[2], posv[1] + posv[3]])
                            if has_v
                            else full
                        )
                        label = labels[oid - 1]
                        if label not in ("person", "person?", "people", "ignore"):
                            report.repairs[f"unknown Caltech label {label!r} kept as an ignore region"] += 1
                        boxes.append(_clip(full, w, h))
                        vis.append(_clip(v, w, h))
                        ignore.append(label != "person")
                    keep = [k for k, b in enumerate(boxes) if b[2] > b[0] and b[3] > b[1]]
                    off, size = index[i]
                    samples.append(
                        _make_sample(
                            f"{group}_I{i:05d}",
                            group,
                            w,
                            h,
                            [boxes[k] for k in keep],
                            [vis[k] for k in keep],
                            [ignore[k] for k in keep],
                            {"format": "caltech", "frame": i},
                            str(seq),
                            cls=SeqFrameSample,
                            seq_offset=off,
                            seq_size=size,
                        )
                    )
        return samples, used
