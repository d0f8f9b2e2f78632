"""DOTA (Dataset for Object deTection in Aerial images), v1.0 / v1.5 / v2.0.

Features
    Aerial scenes from Google Earth and the GF-2 / JL-1 satellites, 800-20000 px wide, with
    oriented objects of 15 (v1.0), 16 (v1.5) or 18 (v2.0) classes and a long-tailed class
    frequency. Only train and val labels are public; here ``pool`` = train and ``test`` = val.

Format (the official devkit layout, read as is)
    ``ROOT/{train,val}/images/<id>.png`` and ``ROOT/{train,val}/labelTxt/<id>.txt``. A label file
    may start with the header lines ``imagesource:<sensor>`` and ``gsd:<metres per pixel or null>``;
    every other line is ``x1 y1 x2 y2 x3 y3 x4 y4 <class> <difficult>`` (clockwise corners, float
    or integer coordinates; a 9-token line has difficult 0, as in the devkit's parser). An empty
    file is an image with no objects. The oriented polygon is kept in ``Sample.polygons``; the
    horizontal box is its axis-aligned hull (the Task2 ground truth). ``imagesource`` and ``gsd``
    go to ``Sample.meta``.

Errors
    A wrong token count, a non-numeric or non-finite coordinate, an unknown class, a difficult
    flag outside {0, 1, 2} or a zero-area box raise ``AnnotationError(path, line, reason)``;
    with ``lenient=True`` the line is skipped and counted in the dataset's report.

Licence and citation
    DOTA is for academic use only (see the DOTA website). Xia et al., "DOTA: A Large-scale
    Dataset for Object Detection in Aerial Images", CVPR 2018; Ding et al., "Object Detection in
    Aerial Images: A Large-Scale Benchmark and Challenges", TPAMI 2021.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from domains.base import (
    AnnotationError,
    DatasetNotFoundError,
    Domain,
    DomainDataset,
    LoadReport,
    MetricSpec,
    Sample,
    SpecError,
    digest_files,
    register_domain,
)

CLASSES_V1_0 = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)
CLASSES = {
    "1.0": CLASSES_V1_0,
    "1.5": CLASSES_V1_0 + ("container-crane",),
    "2.0": CLASSES_V1_0 + ("container-crane", "airport", "helipad"),
}
SPLIT_DIRS = {"pool": "train", "test": "val"}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg")


def parse_label_file(
    path: str | Path,
    classes: tuple[str, ...],
    report: LoadReport | None = None,
    lenient: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Parse one DOTA ``labelTxt`` file.

    Returns ``(polygons (N, 8) float32, labels (N,) int64, difficult (N,) int64, meta)`` where meta
    holds ``imagesource`` and ``gsd`` when the header has them. Raises ``AnnotationError`` naming
    the file and the 1-based line; with ``lenient`` bad lines are skipped and recorded in ``report``.
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    polys: list[list[float]] = []
    labels: list[int] = []
    diffs: list[int] = []
    meta: dict[str, Any] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from exc
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key in ("imagesource", "gsd") and len(line.split()) == 1:
            if key == "gsd":
                try:
                    meta["gsd"] = None if value.strip().lower() in ("", "null", "none") else float(value)
                except ValueError:
                    report.problem(
                        AnnotationError(path, lineno, f"gsd is not a number: {value!r}"), lenient, "header"
                    )
            else:
                meta["imagesource"] = value.strip()
            continue
        tokens = line.split()
        try:
            if len(tokens) not in (9, 10):
                raise AnnotationError(
                    path,
                    lineno,
                    "expected 9 or 10 tokens (x1 y1 ... x4 y4 class [difficult]), "
                    f"got {len(tokens)}: {line!r}",
                )
            coords = []
            for t in tokens[:8]:
                try:
                    v = float(t)
                except ValueError:
                    raise AnnotationError(path, lineno, f"non-numeric coordinate {t!r}") from None
                if not math.isfinite(v):
                    raise AnnotationError(path, lineno, f"non-finite coordinate {t!r}")
                coords.append(v)
            name = tokens[8]
            if name not in classes:
                raise AnnotationError(
                    path,
                    lineno,
                    f"unknown class {name!r}; this DOTA version's classes are {', '.join(classes)}",
                )
            diff = 0
            if len(tokens) == 10:
                if tokens[9] not in ("0", "1", "2"):
                    raise AnnotationError(
                        path, lineno, f"difficult flag must be 0, 1 or 2, got {tokens[9]!r}"
                    )
                diff = int(tokens[9])
            xs, ys = coords[0::2], coords[1::2]
            if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
                raise AnnotationError(path, lineno, "degenerate polygon: its horizontal box has zero area")
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        polys.append(coords)
        labels.append(classes.index(name))
        diffs.append(diff)
    return (
        np.asarray(polys, np.float32).reshape(-1, 8),
        np.asarray(labels, np.int64),
        np.asarray(diffs, np.int64),
        meta,
    )


def polygons_to_boxes(polys: np.ndarray) -> np.ndarray:
    """Axis-aligned hull (xyxy) of (N, 8) polygons."""
    if len(polys) == 0:
        return np.zeros((0, 4), np.float32)
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1).astype(np.float32)


def format_label_file(
    polygons: np.ndarray, names: list[str], difficult: list[int], imagesource: str | None, gsd: float | None
) -> str:
    """The text of a DOTA ``labelTxt`` file (used by the synthetic generator and COCO export tests)."""
    lines = []
    if imagesource is not None:
        lines.append(f"imagesource:{imagesource}")
        lines.append(f"gsd:{'null' if gsd is None else repr(float(gsd))}")
    for poly, name, d in zip(polygons, names, difficult, strict=True):
        coords = " ".join(f"{v:.1f}" for v in poly)
        lines.append(f"{coords} {name} {int(d)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError) as exc:
        raise AnnotationError(path, 0, f"unreadable or corrupt image ({exc})") from exc


@register_domain("dota")
class DOTA(Domain):
    """Remote sensing: DOTA v1.0/1.5/2.0 in the devkit's layout (see the module docstring)."""

    classes = CLASSES_V1_0
    box_type = "obb"
    label_unit = "image"
    splits = ("pool", "test")
    metrics = (
        MetricSpec("mAP50", True, "coco", "AP50", "COCO AP at IoU 0.5 over horizontal boxes (Task2 boxes)"),
        MetricSpec("mAP50-95", True, "coco", "AP", "COCO AP averaged over IoU 0.50:0.05:0.95"),
    )
    default_options = {"version": "1.0"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        version = str(self.options["version"])
        if version not in CLASSES:
            raise SpecError(f"DOTA version must be one of {', '.join(CLASSES)}, got {version!r}")
        self.options["version"] = version
        self.classes = CLASSES[version]  # type: ignore[misc]

    def _split_dir(self, root: Path, split: str) -> Path:
        self.check_split(split)
        return root / SPLIT_DIRS[split]

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"DOTA root {root} does not exist. Point --data-root dota=PATH at a folder holding "
                "train/ and val/ (each with images/ and labelTxt/), or omit it to use the synthetic data."
            )
        for split in self.splits:
            d = self._split_dir(root, split)
            for sub in ("images", "labelTxt"):
                if not (d / sub).is_dir():
                    raise DatasetNotFoundError(
                        f"DOTA: {d / sub} is missing "
                        f"(split {split!r} reads {d.name}/images and {d.name}/labelTxt)"
                    )

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        d = self._split_dir(root, split)
        if not (d / "labelTxt").is_dir() or not (d / "images").is_dir():
            self.verify(root)
        report = LoadReport()
        label_files = sorted((d / "labelTxt").glob("*.txt"))
        images = {}
        for p in (d / "images").iterdir():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in images:
                    report.problem(AnnotationError(p, 0, f"two images for id {p.stem!r}"), lenient, "images")
                    continue
                images[p.stem] = p
        samples = []
        for lf in label_files:
            sid = lf.stem
            img = images.get(sid)
            if img is None:
                report.problem(
                    AnnotationError(lf, 0, f"no image {sid}.png (or .tif) in {d / 'images'}"),
                    lenient,
                    "images",
                )
                continue
            try:
                w, h = _image_size(img)
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            polys, labels, diff, meta = parse_label_file(lf, self.classes, report, lenient)
            boxes = polygons_to_boxes(polys)
            clipped = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
            n_clip = int((np.abs(clipped - boxes) > 1e-6).any(1).sum())
            if n_clip:
                report.repairs["boxes clipped to the image"] += n_clip
            samples.append(
                Sample(
                    id=sid,
                    group=sid,
                    width=w,
                    height=h,
                    boxes=clipped,
                    labels=labels,
                    difficult=diff,
                    polygons=polys,
                    meta={**meta, "scene": sid},
                    image_path=str(img),
                )
            )
        orphans = sorted(set(images) - {lf.stem for lf in label_files})
        for sid in orphans:
            report.problem(
                AnnotationError(images[sid], 0, f"image without a label file ({d / 'labelTxt' / sid}.txt)"),
                lenient,
                "images",
            )
        if not samples:
            raise DatasetNotFoundError(f"DOTA: no labelled images under {d} (split {split!r})")
        return DomainDataset(
            self.name,
            split,
            self.classes,
            samples,
            digest_files(label_files),
            report,
            options=dict(self.options),
        )

    @classmethod
    def synthesize(cls, root: str | Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
        from domains.synthetic.dota import write_dataset

        return write_dataset(Path(root), seed=seed, size=size, progress=progress)
