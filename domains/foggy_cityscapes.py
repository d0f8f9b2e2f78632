"""Foggy Cityscapes: street scenes under synthetic fog, the clear -> foggy domain-adaptation benchmark.

Features
    Cityscapes (Cordts et al., CVPR 2016): 2048x1024 frames from 50 German cities, 2975 train and 500
    val frames with fine polygons. Foggy Cityscapes (Sakaridis et al., IJCV 2018) renders each frame
    with fog of three densities (attenuation ``beta`` = 0.005, 0.01, 0.02 per metre) from a depth map
    with the standard optical model ``I = J * t + A * (1 - t)``, ``t = exp(-beta * d)``. The
    annotations are Cityscapes' own. Detection uses the 8 classes with instances that are not
    ``ignoreInEval``: person, rider, car, truck, bus, train, motorcycle, bicycle.

Splits (the CCTV-style domain shift)
    ``source`` = clear train (``leftImg8bit/train``), ``pool`` = foggy train, ``test`` = foggy val.
    ``group`` = city + sequence (``aachen_000042``), so frames of one sequence never straddle two splits
    (Cityscapes' train and val cities are disjoint anyway).

Fog protocol (option ``beta``, recorded in every record through the domain options)
    ``beta = 0.02`` (default): only the densest fog, the "official" DA protocol of DA-Faster R-CNN
    (``prepare_data.m`` reads ``*_beta_0.02.png``); ``0.01``/``0.005`` pick another single density;
    ``beta = "all"``: all three densities, as Adaptive Teacher, MTTrans and ALDI do (3 x 2975 train,
    3 x 500 val). With ``all`` each rendering is its own sample (``<frame>_beta0.005`` ...), the three
    share the frame's annotation and its group. The two protocols give numbers that are not
    comparable; say which one you report. With ``all`` a frame is one labelling unit: its renderings
    carry ``meta["unit"] = frame``, budgets count frames (and a frame's boxes once), and the protocol
    reveals the three renderings together.

Format (the official layout, read as is)
    ``leftImg8bit/{train,val}/{city}/{city}_{seq}_{frame}_leftImg8bit.png``,
    ``leftImg8bit_foggy/{train,val}/{city}/…_leftImg8bit_foggy_beta_{0.005,0.01,0.02}.png``,
    ``gtFine/{train,val}/{city}/…_gtFine_polygons.json`` (``imgHeight``, ``imgWidth``,
    ``objects[{label, polygon, deleted?}]``) and ``…_gtFine_instanceIds.png`` where present.

How boxes are made (published repos differ here, which is one reason their numbers differ)
    * With ``…_gtFine_instanceIds.png`` (as DA-Faster's ``prepare_data.m`` and detectron2's
      ``load_cityscapes_instances(from_json=False)``): one box per instance id ``labelId * 1000 + k``
      of the 8 classes, the extent of its *visible* pixels (``x2 = last column + 1``: continuous
      coordinates). An instance that is fully occluded has no pixels and no box (counted in the
      report).
    * Without it: one box per polygon, ``(min x, min y, max x + 1, max y + 1)`` clipped to the image
      (the polygon's full extent, occluded parts included).
    * ``*group`` objects of the 8 classes (``persongroup``, ``cargroup`` …) become *ignore regions*
      from their polygons, in both cases, as detectron2 does (``iscrowd``). DA-Faster instead turns
      group regions into ordinary boxes and the COCO-json converters of several DETR-DA repos drop
      them; we chose ignore regions because a group box is not one object.
    * Every other label (road, sky, caravan, trailer, …, or a misspelled one) is not a detection
      class: skipped and counted per label in the dataset's ``LoadReport``, never an error.

Errors
    Malformed JSON, missing or non-positive ``imgHeight``/``imgWidth``, an ``objects`` entry without
    ``label``/``polygon``, a polygon with fewer than 3 points or non-numeric points, an instance map
    of the wrong size, an instance map missing for one frame while the split's others have one, a
    missing clear or foggy image and an image without its polygons file raise ``AnnotationError(path,
    line, reason)``; with ``lenient=True`` the object or frame is skipped and counted.

Metrics
    mAP50 over the 8 classes with VOC07 11-point AP (the DA-Faster protocol; ``voc07`` in
    ``benchmark.metrics.voc``; ignore regions are neither TP nor FP), then COCO AP50 (detectron2-based
    repos report this), with per-class AP.

Licence and citation
    Cityscapes licence (non-commercial research; registration needed). Cordts et al., "The Cityscapes
    Dataset for Semantic Urban Scene Understanding", CVPR 2016; Sakaridis, Dai, Van Gool, "Semantic
    Foggy Scene Understanding with Synthetic Data", IJCV 2018; Chen et al., "Domain Adaptive Faster
    R-CNN for Object Detection in the Wild", CVPR 2018.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
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
    register_domain,
)

CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# Cityscapes labelIds of the 8 classes (helpers/labels.py)
CLASS_LABEL_IDS = {
    "person": 24,
    "rider": 25,
    "car": 26,
    "truck": 27,
    "bus": 28,
    "train": 31,
    "motorcycle": 32,
    "bicycle": 33,
}
LABEL_ID_TO_CLASS = {v: CLASSES.index(k) for k, v in CLASS_LABEL_IDS.items()}
BETAS = ("0.005", "0.01", "0.02")
SPLITS = {"source": ("train", False), "pool": ("train", True), "test": ("val", True)}
CLEAR_SUFFIX = "_leftImg8bit.png"
POLY_SUFFIX = "_gtFine_polygons.json"
INST_SUFFIX = "_gtFine_instanceIds.png"


def foggy_name(frame: str, beta: str) -> str:
    return f"{frame}_leftImg8bit_foggy_beta_{beta}.png"


def _normalise_beta(v: Any) -> str:
    if isinstance(v, str) and v.strip().lower() == "all":
        return "all"
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    for b in BETAS:
        if math.isclose(f, float(b)):
            return b
    raise SpecError(f"foggy_cityscapes beta must be one of {', '.join(BETAS)} or 'all', got {v!r}")


# ---------------------------------------------------------------------------------------- parsing


def parse_polygons(
    path: str | Path, report: LoadReport | None = None, lenient: bool = False
) -> tuple[int, int, list[tuple[str, np.ndarray]]]:
    """Read a ``*_gtFine_polygons.json``: ``(width, height, [(label, (K, 2) polygon), ...])`` in file
    order (deleted objects left out). Raises ``AnnotationError``; with ``lenient`` a bad object is
    skipped and recorded in ``report`` (a bad file header still raises)."""
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
            raise AnnotationError(
                path, 0, f"missing {key!r} (a gtFine polygons file has imgHeight and imgWidth)"
            )
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise AnnotationError(path, 0, f"{key} must be a positive integer, got {v!r}")
        size.append(v)
    objects = ann.get("objects", [])
    if not isinstance(objects, list):
        raise AnnotationError(path, 0, "'objects' must be a list")
    out: list[tuple[str, np.ndarray]] = []
    for k, obj in enumerate(objects):
        try:
            if not isinstance(obj, dict) or "label" not in obj or "polygon" not in obj:
                raise AnnotationError(path, 0, f"objects[{k}] needs 'label' and 'polygon'")
            if obj.get("deleted"):
                continue
            try:
                poly = np.asarray(obj["polygon"], dtype=np.float64)
            except (TypeError, ValueError):
                raise AnnotationError(
                    path, 0, f"objects[{k}] ({obj['label']!r}): polygon is not a list of [x, y]"
                ) from None
            if poly.ndim != 2 or poly.shape[1] != 2 or not np.isfinite(poly).all():
                raise AnnotationError(
                    path, 0, f"objects[{k}] ({obj['label']!r}): polygon is not a list of [x, y]"
                )
            if len(poly) < 3:
                raise AnnotationError(
                    path,
                    0,
                    f"objects[{k}] ({obj['label']!r}): polygon has {len(poly)} point(s), needs at least 3",
                )
        except AnnotationError as err:
            report.problem(err, lenient, "objects")
            continue
        out.append((str(obj["label"]), poly))
    return size[0], size[1], out


def polygon_box(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box of a Cityscapes polygon (integer pixel vertices, filled inclusively): max + 1, clipped."""
    x1, y1 = poly.min(0)
    x2, y2 = poly.max(0) + 1.0
    return np.clip(np.array([x1, y1, x2, y2], np.float64), 0, [width, height, width, height])


def boxes_from_instances(inst: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """``(instance id, class index, xyxy box)`` of every instance of the 8 classes in an instance map."""
    out = []
    ids = np.unique(inst)
    for iid in ids[ids >= 1000]:
        cls = LABEL_ID_TO_CLASS.get(int(iid) // 1000)
        if cls is None:
            continue
        ys, xs = np.nonzero(inst == iid)
        out.append((int(iid), cls, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)))
    return out


def read_instance_map(path: Path) -> np.ndarray:
    import cv2

    inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if inst is None:
        raise AnnotationError(path, 0, "unreadable instance map (expected a 16- or 32-bit PNG)")
    if inst.ndim != 2:
        raise AnnotationError(path, 0, f"instance map must have one channel, got shape {inst.shape}")
    return inst.astype(np.int64)


def frame_objects(
    poly_path: Path, report: LoadReport, lenient: bool, need_mask: bool = False
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """``(width, height, boxes, labels, ignore)`` of one frame (see the module docstring).
    ``need_mask``: the split has instance maps, so this frame's must be there too (boxes of one split
    never mix the two methods)."""
    w, h, objects = parse_polygons(poly_path, report, lenient)
    boxes, labels, ignore = [], [], []
    inst_path = poly_path.with_name(poly_path.name[: -len(POLY_SUFFIX)] + INST_SUFFIX)
    use_mask = inst_path.is_file()
    if need_mask and not use_mask:
        raise AnnotationError(
            inst_path, 0, "instance map missing (the other frames of this split have one; boxes come from it)"
        )
    n_instances_json = 0
    for label, poly in objects:
        base = label[: -len("group")] if label.endswith("group") else label
        if base not in CLASS_LABEL_IDS:
            report.skipped[f"objects of non-detection label {label!r}"] += 1
            continue
        if base != label:
            boxes.append(polygon_box(poly, w, h))
            labels.append(CLASSES.index(base))
            ignore.append(True)
            continue
        n_instances_json += 1
        if not use_mask:
            b = polygon_box(poly, w, h)
            if b[2] <= b[0] or b[3] <= b[1]:
                report.problem(
                    AnnotationError(poly_path, 0, f"{label!r} polygon lies outside the image"),
                    lenient,
                    "objects",
                )
                continue
            boxes.append(b)
            labels.append(CLASSES.index(base))
            ignore.append(False)
    if use_mask:
        inst = read_instance_map(inst_path)
        if inst.shape != (h, w):
            raise AnnotationError(
                inst_path, 0, f"instance map is {inst.shape[1]}x{inst.shape[0]}, the polygons say {w}x{h}"
            )
        found = boxes_from_instances(inst)
        for _, cls, b in found:
            boxes.append(b)
            labels.append(cls)
            ignore.append(False)
        hidden = n_instances_json - len(found)
        if hidden > 0:
            report.skipped["fully occluded instances (no pixels in instanceIds)"] += hidden
    return (
        w,
        h,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(ignore, bool),
    )


# ----------------------------------------------------------------------------------------- domain


@register_domain("foggy_cityscapes")
class FoggyCityscapes(Domain):
    """Street scenes, clear (source) -> foggy (pool/test); see the module docstring."""

    classes = CLASSES
    box_type = "hbb"
    label_unit = "image"
    splits = ("pool", "test", "source")
    metrics = (
        MetricSpec(
            "mAP50", True, "voc07", "mAP50", "VOC07 11-point AP at IoU > 0.5 over the 8 classes (DA-Faster)"
        ),
        MetricSpec(
            "COCO AP50", True, "coco", "AP50", "COCO AP at IoU 0.5 (101-point; detectron2-based repos)"
        ),
    )
    default_options = {"beta": "0.02"}
    synthetic_version = "1"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options["beta"] = _normalise_beta(self.options["beta"])

    @property
    def betas(self) -> tuple[str, ...]:
        b = self.options["beta"]
        return BETAS if b == "all" else (b,)

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"Foggy Cityscapes root {root} does not exist. Point --data-root foggy_cityscapes=PATH at a "
                "folder holding leftImg8bit/, leftImg8bit_foggy/ and gtFine/ (each with train/ and val/), "
                "or omit it to use the synthetic data."
            )
        # the clear val images are not needed (the test split is foggy val)
        needed = [("leftImg8bit", "train")]
        needed += [(top, split) for top in ("leftImg8bit_foggy", "gtFine") for split in ("train", "val")]
        for top, split in needed:
            if not (root / top / split).is_dir():
                hint = (
                    " (leftImg8bit_trainvaltest_foggy.zip from cityscapes-dataset.com)"
                    if "foggy" in top
                    else ""
                )
                raise DatasetNotFoundError(f"Foggy Cityscapes: {root / top / split} is missing{hint}")

    def _frames(self, root: Path, split_dir: str) -> Iterator[tuple[str, str, Path]]:
        """(city, frame id, polygons file) of every annotated frame, sorted."""
        for p in sorted((root / "gtFine" / split_dir).glob(f"*/*{POLY_SUFFIX}")):
            yield p.parent.name, p.name[: -len(POLY_SUFFIX)], p

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        self.check_split(split)
        split_dir, foggy = SPLITS[split]
        if not (root / "gtFine" / split_dir).is_dir():
            self.verify(root)
        report = LoadReport()
        samples: list[Sample] = []
        ann_files: list[Path] = []
        need_mask = any((root / "gtFine" / split_dir).glob(f"*/*{INST_SUFFIX}"))
        for city, frame, poly_path in self._frames(root, split_dir):
            clear = root / "leftImg8bit" / split_dir / city / f"{frame}{CLEAR_SUFFIX}"
            if not foggy and not clear.is_file():
                report.problem(AnnotationError(poly_path, 0, f"no clear image {clear}"), lenient, "frames")
                continue
            images: list[tuple[str, str | None, Path]] = []
            if foggy:
                missing = False
                for beta in self.betas:
                    fp = root / "leftImg8bit_foggy" / split_dir / city / foggy_name(frame, beta)
                    if not fp.is_file():
                        anchor, what = (clear, "clear one") if clear.is_file() else (poly_path, "frame")
                        err = AnnotationError(anchor, 0, f"foggy image missing for this {what}: {fp}")
                        report.problem(err, lenient, "frames")
                        missing = True
                        break
                    sid = frame if len(self.betas) == 1 else f"{frame}_beta{beta}"
                    images.append((sid, beta, fp))
                if missing:
                    continue
            else:
                images.append((frame, None, clear))
            try:
                w, h, boxes, labels, ignore = frame_objects(poly_path, report, lenient, need_mask)
            except AnnotationError as err:
                report.problem(err, lenient, "frames")
                continue
            ann_files.append(poly_path)
            inst = poly_path.with_name(frame + INST_SUFFIX)
            if inst.is_file():
                ann_files.append(inst)
            parts = frame.split("_")
            group = "_".join(parts[:2]) if len(parts) >= 3 else frame
            for sid, beta, img in images:
                samples.append(
                    Sample(
                        id=sid,
                        group=group,
                        width=w,
                        height=h,
                        boxes=boxes,
                        labels=labels,
                        ignore=ignore,
                        meta={
                            "city": city,
                            "frame": frame,
                            "beta": None if beta is None else float(beta),
                            "fog": beta is not None,
                            # beta = "all": the three renderings share one annotation, one labelling unit
                            **({"unit": frame} if len(images) > 1 else {}),
                        },
                        image_path=str(img),
                    )
                )
        # an image without its polygons file would silently leave the split
        annotated = {f"{city}/{frame}" for city, frame, _ in self._frames(root, split_dir)}
        top = "leftImg8bit_foggy" if foggy else "leftImg8bit"
        suffixes = [foggy_name("", b) for b in self.betas] if foggy else [CLEAR_SUFFIX]
        for img in sorted((root / top / split_dir).glob("*/*.png")):
            suf = next((x for x in suffixes if img.name.endswith(x)), None)
            if suf is not None and f"{img.parent.name}/{img.name[: -len(suf)]}" not in annotated:
                report.problem(
                    AnnotationError(
                        img,
                        0,
                        f"image without an annotation file (gtFine/{split_dir}/{img.parent.name}/"
                        f"{img.name[: -len(suf)]}{POLY_SUFFIX}; a frame with no objects needs one too)",
                    ),
                    lenient,
                    "frames",
                )
        if not samples:
            raise EmptySplitError(
                f"Foggy Cityscapes: no usable frames under {root / 'gtFine' / split_dir} (split {split!r})",
                report.problems,
            )
        digest = digest_files(ann_files) + f"|beta={self.options['beta']}|split={split}"
        return DomainDataset(
            self.name, split, self.classes, samples, digest, report, options=dict(self.options)
        )
