"""Side-scan sonar target detection (SCTD-like), with saliency masks and a survey-to-survey shift.

Features
    Grayscale side-scan sonar images (8- or 16-bit) with boxes of underwater targets and, optionally,
    binary saliency masks of the targets. The default vocabulary is SCTD 1.0's three classes (Zhou et
    al., "SCTD 1.0: Sonar Common Target Detection Dataset", Computer Science 48(11A), 2021): shipwrecks
    ``ship``, crashed ``aircraft`` and drowning victims ``human``. The domain shift is survey to survey
    (another sonar frequency, noise level, seabed): ``source`` is one survey, ``pool`` and ``test`` the
    other. What is confirmed of SCTD is its size (596 images) and its three classes; its annotation
    format (VOC XML) and any official split are not (``docs/sources.md#dataset-formats``), so this
    adapter reads the common VOC layout and the split files that come with the data.

Format (``docs/protocol.md#dataset-layouts``)
    ``ROOT/JPEGImages/<id>.{jpg,png,tif,bmp}``, ``ROOT/Annotations/<id>.xml`` (Pascal VOC: ``size/width``,
    ``size/height``, ``object/name``, ``object/difficult``, ``object/bndbox/{xmin,ymin,xmax,ymax}``),
    ``ROOT/ImageSets/Main/{train,test,source}.txt`` (one id a line; ``pool`` = train, ``test`` = test,
    ``source`` = source; a list is needed only when its split is read: ``source.txt`` only by runs
    that train a source checkpoint), optional ``ROOT/masks/<id>.png`` (0/255, same size as the image),
    optional ``ROOT/classes.txt`` (one class a line; default ship, aircraft, human) and optional
    ``ROOT/groups.csv`` (``id,group`` with the survey line of each image; default: the id).

    VOC boxes are 1-based, inclusive pixel indices: ``xmin = 1`` is the first column and ``xmax`` the last
    column the box covers. Samples use continuous pixel coordinates, so ``x1 = xmin - 1``, ``y1 = ymin - 1``,
    ``x2 = xmax``, ``y2 = ymax`` (a box of pixel columns 1..10 is x1 = 0, x2 = 10, width 10).

Errors
    Malformed XML (with the parser's line), a missing ``size``, a non-numeric coordinate, an unknown
    class, a difficult flag other than 0/1, an empty box (xmax < xmin), a box wholly outside the image,
    a missing or corrupt image, a duplicate id in a split file, an id listed in two split files, an id
    that is not a plain file stem (``../x``: ids name files under the root), an XML entity declaration
    (refused up front, as defusedxml does: no "billion laughs", no external entities) and a mask whose
    size differs from the image's raise ``AnnotationError(path, line, reason)``; with ``lenient=True``
    the object or image is skipped and counted in the dataset's report. A box partly outside the image
    is clipped and counted as a repair. An empty (0-byte) annotation file is an image without objects
    (size from the image).

Licence and citation
    SCTD is distributed by its authors for research; cite Zhou et al. 2021 above. The built-in data is
    synthetic (``domains.synthetic.sonar``).
"""

from __future__ import annotations

import xml.parsers.expat
from dataclasses import dataclass, field
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
    check_relative,
    cut,
    digest_files,
    raster_info,
    register_domain,
)

SCTD_CLASSES = ("ship", "aircraft", "human")
SPLIT_FILES = {"pool": "train", "test": "test", "source": "source"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


# ------------------------------------------------------------------------------------------ XML


@dataclass
class XmlNode:
    """An XML element with the 1-based line it starts on (ElementTree does not keep lines)."""

    tag: str
    line: int
    parts: list[str] = field(default_factory=list)  # character data, joined once (not `+=`: quadratic)
    children: list[XmlNode] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def find(self, tag: str) -> XmlNode | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[XmlNode]:
        return [c for c in self.children if c.tag == tag]


def parse_xml(path: str | Path) -> XmlNode:
    """Parse an XML file into ``XmlNode``s (expat, no external entities); malformed XML raises
    ``AnnotationError`` with the line of the error."""
    path = Path(path)
    parser = xml.parsers.expat.ParserCreate()
    stack: list[XmlNode] = []
    roots: list[XmlNode] = []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = XmlNode(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].parts.append(data)

    def entity_decl(name: str, *_args: Any) -> None:
        # entity declarations ("billion laughs" expansion, external entities) are refused up front,
        # as defusedxml does: a VOC annotation never needs one
        raise AnnotationError(
            path,
            parser.CurrentLineNumber,
            f"XML entity declaration {name!r} refused (DTD entities are not allowed)",
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.EntityDeclHandler = entity_decl
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(path.read_bytes(), True)
    except xml.parsers.expat.ExpatError as exc:
        raise AnnotationError(
            path, exc.lineno, f"malformed XML: {xml.parsers.expat.ErrorString(exc.code)}"
        ) from None
    if not roots:
        raise AnnotationError(path, 1, "no XML element")
    return roots[0]


def _number(node: XmlNode | None, parent: XmlNode, what: str, path: Path) -> float:
    if node is None:
        raise AnnotationError(path, parent.line, f"<{parent.tag}> has no <{what}>")
    try:
        v = float(node.text.strip())
    except ValueError:
        raise AnnotationError(path, node.line, f"non-numeric <{what}> {node.text.strip()!r}") from None
    if not np.isfinite(v) or abs(v) > 1e30:  # 1e39 is finite here but inf as float32
        raise AnnotationError(path, node.line, f"non-finite or absurd <{what}> {node.text.strip()!r}")
    return v


@dataclass
class VocAnnotation:
    width: int | None
    height: int | None
    boxes: np.ndarray  # (N, 4) continuous xyxy (not yet clipped)
    labels: np.ndarray
    difficult: np.ndarray
    lines: list[int]


def parse_voc(
    path: str | Path, classes: tuple[str, ...], report: LoadReport | None = None, lenient: bool = False
) -> VocAnnotation:
    """Read one VOC annotation (see the module docstring for the box convention). A bad object is an
    ``AnnotationError`` (skipped and counted with ``lenient``); a file-level problem always raises."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    if path.stat().st_size == 0:
        return VocAnnotation(None, None, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                             np.zeros(0, np.int64), [])  # fmt: skip
    root = parse_xml(path)
    if root.tag != "annotation":
        raise AnnotationError(path, root.line, f"root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None:
        raise AnnotationError(path, root.line, "no <size> element (width and height of the image)")
    width = _number(size.find("width"), size, "width", path)
    height = _number(size.find("height"), size, "height", path)
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise AnnotationError(path, size.line, f"invalid image size {width}x{height}")
    boxes, labels, diffs, lines = [], [], [], []
    for obj in root.findall("object"):
        try:
            name_node = obj.find("name")
            if name_node is None:
                raise AnnotationError(path, obj.line, "<object> has no <name>")
            name = name_node.text.strip()
            if name not in classes:
                raise AnnotationError(
                    path, name_node.line, f"unknown class {name!r}; classes are {', '.join(classes)}"
                )
            d_node = obj.find("difficult")
            diff = 0
            if d_node is not None:
                if d_node.text.strip() not in ("0", "1"):
                    raise AnnotationError(path, d_node.line, f"difficult must be 0 or 1, got {d_node.text!r}")
                diff = int(d_node.text.strip())
            bb = obj.find("bndbox")
            if bb is None:
                raise AnnotationError(path, obj.line, "<object> has no <bndbox>")
            xmin, ymin, xmax, ymax = (
                _number(bb.find(k), bb, k, path) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            if xmax < xmin or ymax < ymin:
                raise AnnotationError(
                    path, bb.line, f"empty box: xmin {xmin:g} ymin {ymin:g} xmax {xmax:g} ymax {ymax:g}"
                )
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(classes.index(name))
        diffs.append(diff)
        lines.append(obj.line)
    return VocAnnotation(
        int(width),
        int(height),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(diffs, np.int64),
        lines,
    )


# -------------------------------------------------------------------------------------- adapter


def _read_text(path: Path) -> str:
    """A small text file as UTF-8 (a BOM is accepted); anything else is an ``AnnotationError``."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from None


def _read_list(
    path: Path, report: LoadReport, lenient: bool, line_of: dict[str, int] | None = None
) -> list[str]:
    ids, seen = [], {}
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        sid = raw.strip()
        if not sid:
            continue
        try:
            check_relative(sid, path, lineno, "id")
            if "/" in sid or "\\" in sid:
                raise AnnotationError(path, lineno, f"id {cut(sid, 120)!r} must be a file stem (no folder)")
        except AnnotationError as err:
            report.problem(err, lenient, "images")
            continue
        if sid in seen:
            report.problem(
                AnnotationError(path, lineno, f"duplicate id {sid!r} (first on line {seen[sid]})"),
                lenient,
                "images",
            )
            continue
        seen[sid] = lineno
        if line_of is not None:
            line_of[sid] = lineno
        ids.append(sid)
    return ids


@register_domain("sonar")
class Sonar(Domain):
    """Side-scan sonar in the Pascal VOC layout with masks and a source survey (module docstring)."""

    classes = SCTD_CLASSES
    box_type = "hbb"
    label_unit = "image"
    splits = ("pool", "test", "source")
    metrics = (
        MetricSpec("mAP50", True, "coco", "AP50", "COCO AP at IoU 0.5"),
        MetricSpec("mAP50-95", True, "coco", "AP", "COCO AP averaged over IoU 0.50:0.05:0.95"),
        MetricSpec("MAE", False, "saliency", "MAE", "saliency: mean absolute error of the foreground map"),
        MetricSpec("maxF", True, "saliency", "maxF", "saliency: max F-measure (beta^2 = 0.3)"),
        MetricSpec("S-measure", True, "saliency", "S", "saliency: structure measure (alpha = 0.5)"),
        MetricSpec("PixelAcc", True, "saliency", "PixelAcc", "saliency: pixel accuracy at 0.5"),
    )
    default_options: dict[str, Any] = {}
    synthetic_version = "1"

    def read_classes(self, root: Path) -> tuple[str, ...]:
        p = root / "classes.txt"
        if not p.is_file():
            return SCTD_CLASSES
        names = [ln.strip() for ln in _read_text(p).splitlines() if ln.strip()]
        if not names or len(set(names)) != len(names):
            raise AnnotationError(p, 0, "classes.txt must list distinct class names, one a line")
        return tuple(names)

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"sonar root {root} does not exist. Point --data-root sonar=PATH at a VOC tree "
                "(JPEGImages/, Annotations/, ImageSets/Main/{train,test,source}.txt), or omit it to use "
                "the synthetic data."
            )
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            if not (root / sub).is_dir():
                raise DatasetNotFoundError(f"sonar: {root / sub} is missing (the VOC layout needs it)")
        if not self.available_splits(root):
            raise DatasetNotFoundError(
                f"sonar: {root / 'ImageSets' / 'Main'} lists no split: it needs train.txt and test.txt "
                "(and source.txt for a run that trains a source checkpoint)"
            )
        self.classes = self.read_classes(root)  # type: ignore[misc]

    def available_splits(self, root: str | Path) -> tuple[str, ...]:
        """The splits whose list file exists (public sonar datasets ship train/val/test lists only:
        a split that is not asked for is not required)."""
        main = Path(root) / "ImageSets" / "Main"
        return tuple(s for s, stem in SPLIT_FILES.items() if (main / f"{stem}.txt").is_file())

    def _list_file(self, root: Path, split: str) -> Path:
        p = root / "ImageSets" / "Main" / f"{SPLIT_FILES[split]}.txt"
        if not p.is_file():
            raise DatasetNotFoundError(f"sonar: {p} is missing (it lists split {split!r})")
        return p

    def _groups(self, root: Path, report: LoadReport, lenient: bool) -> dict[str, str]:
        p = root / "groups.csv"
        if not p.is_file():
            return {}
        out = {}
        for lineno, raw in enumerate(_read_text(p).splitlines(), start=1):
            parts = [t.strip() for t in raw.split(",")]
            if lineno == 1 and parts[:2] == ["id", "group"]:
                continue
            if not raw.strip():
                continue
            if len(parts) != 2 or not all(parts):
                report.problem(
                    AnnotationError(p, lineno, f"expected 'id,group', got {raw!r}"), lenient, "groups"
                )
                continue
            out[parts[0]] = parts[1]
        return out

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        self.check_split(split)
        self.verify(root)
        classes = self.read_classes(root)
        report = LoadReport()
        list_file = self._list_file(root, split)
        line_of: dict[str, int] = {}
        ids = _read_list(list_file, report, lenient, line_of)
        others: dict[str, str] = {}
        for other in self.available_splits(root):
            if other != split:
                for sid in _read_list(self._list_file(root, other), LoadReport(), True):
                    others.setdefault(sid, f"{SPLIT_FILES[other]}.txt")
        groups = self._groups(root, report, lenient)
        images: dict[str, Path] = {}
        for p in sorted((root / "JPEGImages").iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in images:
                    report.problem(
                        AnnotationError(p, 0, f"duplicate id: two images for {p.stem!r}"), lenient, "images"
                    )
                    continue
                images[p.stem] = p
        samples, ann_files = [], []
        for sid in ids:
            if sid in others:
                report.problem(
                    AnnotationError(list_file, line_of[sid], f"id {sid!r} is also listed in {others[sid]}"),
                    lenient,
                    "images",
                )
                continue
            ann = root / "Annotations" / f"{sid}.xml"
            img = images.get(sid)
            try:
                if not ann.is_file():
                    raise AnnotationError(ann, 0, f"annotation file missing (listed in {list_file})")
                if img is None:
                    raise AnnotationError(ann, 0, f"no image {sid}.jpg/.png in {root / 'JPEGImages'}")
                w, h, _ = raster_info(img)
                voc = parse_voc(ann, classes, report, lenient)
                if voc.width is not None and (voc.width, voc.height) != (w, h):
                    raise AnnotationError(
                        ann, 0, f"<size> says {voc.width}x{voc.height} but the image {img.name} is {w}x{h}"
                    )
                mask = root / "masks" / f"{sid}.png"
                mask_path = None
                if mask.is_file():
                    mw, mh, _ = raster_info(mask)
                    if (mw, mh) != (w, h):
                        raise AnnotationError(
                            mask, 0, f"mask is {mw}x{mh} but the image {img.name} is {w}x{h}"
                        )
                    mask_path = str(mask)
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            boxes, labels, diff = voc.boxes, voc.labels, voc.difficult
            b = boxes
            outside = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= w) | (b[:, 1] >= h)
            if outside.any():
                for k in np.nonzero(outside)[0]:
                    report.problem(
                        AnnotationError(ann, voc.lines[k], f"box lies wholly outside the {w}x{h} image"),
                        lenient,
                        "objects",
                    )
                keep = ~outside
                boxes, labels, diff = boxes[keep], labels[keep], diff[keep]
            clipped = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
            n_clip = int((np.abs(clipped - boxes) > 1e-6).any(1).sum())
            if n_clip:
                report.repairs["boxes clipped to the image"] += n_clip
            ann_files.append(ann)
            samples.append(
                Sample(
                    id=sid,
                    group=groups.get(sid, sid),
                    width=w,
                    height=h,
                    boxes=clipped,
                    labels=labels,
                    difficult=diff,
                    meta={"mask_path": mask_path, "label_unit": "image", "survey": groups.get(sid, sid)},
                    image_path=str(img),
                )
            )
        if not samples:
            raise EmptySplitError(
                f"sonar: no usable images in split {split!r} ({list_file})", report.problems
            )
        return DomainDataset(
            self.name, split, classes, samples, digest_files(ann_files), report, options=dict(self.options)
        )
