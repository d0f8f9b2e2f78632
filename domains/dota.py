"""DOTA (Dataset for Object deTection in Aerial images), v1.0 / v1.5 / v2.0, cut into patches.

Features
    Aerial scenes from Google Earth and the GF-2 / JL-1 satellites, 800-20000 px wide, with
    oriented objects of 15 (v1.0), 16 (v1.5: + container-crane) or 18 (v2.0: + airport, helipad)
    classes and a long-tailed class frequency. Only train and val labels are public; here ``pool`` =
    train and ``test`` = val (``group`` = the scene, so no scene is split across pool and test).
    With the option ``source_sensor`` (an ``imagesource`` value) the scenes of that sensor form a
    ``source`` split and leave pool and test (a sensor-to-sensor shift).

Format (the official devkit layout, read as is)
    ``ROOT/{train,val}/images/<id>.png|tif`` and ``ROOT/{train,val}/labelTxt/<id>.txt``. A label file
    may start with the header lines ``imagesource:<sensor>`` and ``gsd:<metres per pixel or null>``;
    every other line is ``x1 y1 x2 y2 x3 y3 x4 y4 <class> <difficult>`` (clockwise corners, float
    or integer coordinates; a 9-token line has difficult 0, as in the devkit's parser; difficult is
    0, 1 or 2 = truncated by a split tool). An empty file is an image with no objects. The oriented
    polygon is kept in ``Sample.polygons``; the horizontal box is its axis-aligned hull (the Task2
    ground truth). ``imagesource`` and ``gsd`` go to ``Sample.meta``; a GeoTIFF's CRS and affine
    transform too (``crs``, ``transform``). Image sizes come from the raster header (rasterio).

Labelling unit (option ``label_unit``)
    ``patch`` (default): each scene is cut with the split tools' window algorithm
    (``domains.patching``: ``patch_size`` 1024 and ``gap`` 200 by default, or the geometry a dataset
    declares in ``ROOT/patching.json`` - the synthetic data uses 128 / 16), objects kept where at least
    70 % of the polygon lies in the window (IoF), truncated ones marked difficult 2, ids
    ``P0000__1024__0___824``. A patch's pixels are a rasterio window of the scene file
    (``Sample.window``): the scene is never decoded whole. ``image``: one sample per scene.
    ``Sample.meta["label_unit"]`` records the unit. ``domains.patching.merge_patch_predictions`` maps
    patch detections back to scenes for the devkit protocol on full images.

Errors
    A wrong token count, a non-numeric or non-finite coordinate, an unknown class, a difficult
    flag outside {0, 1, 2}, a zero-area box or polygon (collinear corners), an object wholly outside
    its image, a missing, corrupt or duplicate image, an image without a label file and a scene id in
    both train/ and val/ (overlap) raise
    ``AnnotationError(path, line, reason)``; with ``lenient=True`` the line (or image) is skipped and
    counted in the dataset's report. Repairs are counted too: a self-intersecting polygon (corners out
    of order) is replaced by the minimum rotated rectangle of its corners (shapely), and a box partly
    outside the image is clipped to it. A UTF-8 BOM is accepted.

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
    EmptySplitError,
    LoadReport,
    MetricSpec,
    Sample,
    SpecError,
    digest_files,
    raster_info,
    register_domain,
)
from domains.patching import assign_objects, patch_id, windows

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
    lines_out: list[int] | None = None,
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
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM is accepted
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
                if not math.isfinite(v) or abs(v) > 1e30:  # 1e39 is finite here but inf as float32
                    raise AnnotationError(path, lineno, f"non-finite or absurd coordinate {t!r}")
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
            coords, repaired = _repair_polygon(coords, path, lineno)
            if repaired:
                report.repairs[repaired] += 1
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        polys.append(coords)
        if lines_out is not None:
            lines_out.append(lineno)
        labels.append(classes.index(name))
        diffs.append(diff)
    return (
        np.asarray(polys, np.float32).reshape(-1, 8),
        np.asarray(labels, np.int64),
        np.asarray(diffs, np.int64),
        meta,
    )


def _repair_polygon(coords: list[float], path: Path, lineno: int) -> tuple[list[float], str]:
    """A valid quadrilateral for ``coords``: unchanged when it is simple with positive area; a
    self-intersecting one (corners in the wrong order, a "bow tie") is replaced by the minimum rotated
    rectangle of its corners (shapely) and reported as a repair; zero area (collinear corners) is an
    ``AnnotationError``."""
    import shapely

    pts = np.asarray(coords, np.float64).reshape(4, 2)
    hull = shapely.MultiPoint(pts).convex_hull
    if hull.geom_type != "Polygon" or hull.area <= 1e-9:
        raise AnnotationError(path, lineno, "degenerate polygon: its corners are collinear (zero area)")
    poly = shapely.Polygon(pts)
    if poly.is_valid and poly.area > 0:
        return coords, ""
    rect = shapely.minimum_rotated_rectangle(hull)
    corners = np.asarray(rect.exterior.coords, np.float64)[:4]
    # start at the corner nearest the original first corner, keep the original's orientation
    k = int(np.argmin(np.linalg.norm(corners - pts[0], axis=1)))
    corners = np.roll(corners, -k, axis=0)
    return [
        float(v) for v in corners.reshape(-1)
    ], "self-intersecting polygons replaced by their minimum rectangle"


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


def _geometry_file(root: Path) -> dict[str, int]:
    """The patch geometry a dataset declares in ``ROOT/patching.json`` (the synthetic data does)."""
    import json

    p = root / "patching.json"
    if not p.is_file():
        return {}
    try:
        d = json.loads(p.read_text())
        return {"patch_size": int(d["patch_size"]), "gap": int(d["gap"])}
    except (ValueError, KeyError, TypeError) as exc:
        raise AnnotationError(p, 0, f"expected {{'patch_size': int, 'gap': int}} ({exc})") from exc


@register_domain("dota")
class DOTA(Domain):
    """Remote sensing: DOTA v1.0/1.5/2.0 in the devkit's layout, cut into patches (module docstring).

    Options: ``version`` (1.0, 1.5, 2.0), ``label_unit`` (``patch`` or ``image``), ``patch_size`` and
    ``gap`` (default: what the dataset declares in ``patching.json``, else 1024 and 200),
    ``iof_thr`` (0.7), ``source_sensor`` (an ``imagesource`` value: its scenes form the ``source`` split
    and leave pool and test).
    """

    classes = CLASSES_V1_0
    box_type = "obb"
    label_unit = "patch"
    splits = ("pool", "test")
    metrics = (
        MetricSpec(
            "mAP50",
            True,
            "dota_task2",
            "mAP50",
            "DOTA devkit Task2 (horizontal boxes) on merged full scenes, VOC07 11-point, IoU > 0.5; "
            "the primary metric unless the detector is oriented",
        ),
        MetricSpec(
            "mAP50-task1",
            True,
            "dota_task1",
            "mAP50",
            "DOTA devkit Task1 (oriented boxes, polygon IoU > 0.5) on merged full scenes, VOC07 11-point; "
            "the primary metric of oriented detectors (a horizontal detector's boxes count as polygons)",
        ),
        MetricSpec("mAP50-95", True, "coco", "AP", "COCO AP over IoU 0.50:0.05:0.95, on patches"),
        MetricSpec("mAP50-patch", True, "coco", "AP50", "COCO AP at IoU 0.5, on patches"),
    )
    default_options = {
        "version": "1.0",
        "label_unit": "patch",
        "patch_size": None,
        "gap": None,
        "iof_thr": 0.7,
        "source_sensor": None,
    }
    synthetic_version = "4"  # 4: courts and pools near axis-aligned
    oriented_primary = "mAP50-task1"  # the primary metric when the detector emits polygons

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        version = str(self.options["version"])
        if version not in CLASSES:
            raise SpecError(f"DOTA version must be one of {', '.join(CLASSES)}, got {version!r}")
        self.options["version"] = version
        self.classes = CLASSES[version]  # type: ignore[misc]
        unit = str(self.options["label_unit"])
        if unit not in ("patch", "image"):
            raise SpecError(f"DOTA label_unit must be 'patch' or 'image', got {unit!r}")
        self.label_unit = unit  # type: ignore[misc]
        for k in ("patch_size", "gap"):
            v = self.options[k]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise SpecError(f"DOTA {k} must be a non-negative integer, got {v!r}")
        ps, gap = self.options["patch_size"], self.options["gap"]
        if ps is not None and gap is not None and not 0 <= gap < ps:
            raise SpecError(f"DOTA needs 0 <= gap < patch_size, got patch_size {ps}, gap {gap}")
        if self.options["source_sensor"] is not None:
            self.splits = ("pool", "test", "source")  # type: ignore[misc]

    def geometry(self, root: Path) -> tuple[int, int]:
        """``(patch_size, gap)`` for ``root``: the options, else the dataset's ``patching.json``,
        else the usual 1024 / 200."""
        declared = _geometry_file(root)
        ps = self.options["patch_size"] or declared.get("patch_size", 1024)
        gap = self.options["gap"] if self.options["gap"] is not None else declared.get("gap", 200)
        if not 0 <= gap < ps:
            raise SpecError(f"DOTA needs 0 <= gap < patch_size, got patch_size {ps}, gap {gap}")
        return int(ps), int(gap)

    def _split_dir(self, root: Path, split: str) -> Path:
        self.check_split(split)
        return root / SPLIT_DIRS.get(split, "train")

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"DOTA root {root} does not exist. Point --data-root dota=PATH at a folder holding "
                "train/ and val/ (each with images/ and labelTxt/), or omit it to use the synthetic data."
            )
        for split in ("pool", "test"):
            d = self._split_dir(root, split)
            for sub in ("images", "labelTxt"):
                if not (d / sub).is_dir():
                    raise DatasetNotFoundError(
                        f"DOTA: {d / sub} is missing "
                        f"(split {split!r} reads {d.name}/images and {d.name}/labelTxt)"
                    )

    def load_scenes(
        self, root: str | Path, split: str, lenient: bool = False
    ) -> tuple[list[Sample], LoadReport, list[Path]]:
        """Whole scenes of a split (one ``Sample`` per image, boxes clipped to the image), the load
        report and the label files read."""
        root = Path(root)
        d = self._split_dir(root, split)
        if not (d / "labelTxt").is_dir() or not (d / "images").is_dir():
            self.verify(root)
        report = LoadReport()
        label_files = sorted((d / "labelTxt").glob("*.txt"))
        images: dict[str, Path] = {}
        for p in sorted((d / "images").iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in images:
                    report.problem(
                        AnnotationError(p, 0, f"duplicate id: two images for id {p.stem!r}"),
                        lenient,
                        "images",
                    )
                    continue
                images[p.stem] = p
        # train / val overlap: a scene in both would be scored on data it was trained on
        other_dir = root / ("val" if d.name == "train" else "train") / "labelTxt"
        overlap = {p.stem for p in other_dir.glob("*.txt")} if other_dir.is_dir() else set()
        scenes = []
        for lf in label_files:
            sid = lf.stem
            if sid in overlap:
                report.problem(
                    AnnotationError(
                        lf, 0, f"scene {sid!r} is also in {other_dir} (train and val must not overlap)"
                    ),
                    lenient,
                    "images",
                )
                continue
            img = images.get(sid)
            if img is None:
                report.problem(
                    AnnotationError(lf, 0, f"no image {sid}.png (or .tif) in {d / 'images'}"),
                    lenient,
                    "images",
                )
                continue
            try:
                w, h, geo = raster_info(img)
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            lines: list[int] = []
            try:
                polys, labels, diff, meta = parse_label_file(lf, self.classes, report, lenient, lines)
            except AnnotationError as err:  # a file-level problem (not UTF-8 text)
                report.problem(err, lenient, "images")
                continue
            boxes = polygons_to_boxes(polys)
            outside = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | (boxes[:, 0] >= w) | (boxes[:, 1] >= h)
            if outside.any():
                for k in np.nonzero(outside)[0]:
                    report.problem(
                        AnnotationError(lf, lines[k], f"object lies wholly outside the {w}x{h} image"),
                        lenient,
                        "objects",
                    )
                keep = ~outside
                polys, labels, diff, boxes = polys[keep], labels[keep], diff[keep], boxes[keep]
            clipped = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
            n_clip = int((np.abs(clipped - boxes) > 1e-6).any(1).sum())
            if n_clip:
                report.repairs["boxes clipped to the image"] += n_clip
            src = self.options["source_sensor"]
            if src is not None:
                is_src = meta.get("imagesource") == src
                if is_src != (split == "source"):
                    continue
            scenes.append(
                Sample(
                    id=sid,
                    group=sid,
                    width=w,
                    height=h,
                    boxes=clipped,
                    labels=labels,
                    difficult=diff,
                    polygons=polys,
                    meta={**meta, **geo, "scene": sid, "label_unit": "image"},
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
        return scenes, report, label_files

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        scenes, report, label_files = self.load_scenes(root, split, lenient)
        d = self._split_dir(root, split)
        if not scenes:
            raise EmptySplitError(f"DOTA: no labelled images under {d} (split {split!r})", report.problems)
        options = dict(self.options)
        if self.label_unit == "image":
            samples = scenes
        else:
            size, gap = self.geometry(root)
            options.update(patch_size=size, gap=gap)
            samples = []
            for scene in scenes:
                samples += cut_scene(scene, size, gap, float(self.options["iof_thr"]), report)
        ds = DomainDataset(
            self.name,
            split,
            self.classes,
            samples,
            digest_files(label_files) + repr(sorted(options.items())),
            report,
            options=options,
        )
        # whole scenes: the devkit protocol evaluates merged detections against them
        ds.scenes = scenes  # type: ignore[attr-defined]
        return ds


def cut_scene(
    scene: Sample, size: int, gap: int, iof_thr: float = 0.7, report: LoadReport | None = None
) -> list[Sample]:
    """The patches of one scene ``Sample`` (see ``domains.patching``): ids ``<scene>__<size>__<x>___<y>``,
    ``group`` = the scene, ``window`` = the patch inside the scene's file. Objects that land in no patch
    (IoF below ``iof_thr`` everywhere) are counted in ``report``."""

    assert scene.polygons is not None and scene.difficult is not None
    out = []
    covered = np.zeros(len(scene.boxes), bool)
    for x, y, w, h in windows(scene.width, scene.height, size, gap):
        objs = assign_objects(scene.polygons, scene.difficult, (x, y, w, h), iof_thr)
        covered[objs.index] = True
        out.append(
            Sample(
                id=patch_id(scene.id, size, x, y),
                group=scene.id,
                width=w,
                height=h,
                boxes=objs.boxes,
                labels=scene.labels[objs.index],
                difficult=objs.difficult,
                polygons=objs.polygons,
                meta={**scene.meta, "scene": scene.id, "label_unit": "patch", "offset": (x, y)},
                image_path=scene.image_path,
                window=(x, y, w, h),
            )
        )
    if report is not None and not covered.all():
        report.skipped[f"objects in no patch (IoF < {iof_thr:g} in every window)"] += int((~covered).sum())
    return out
