"""Bring your own data: any detection dataset in COCO JSON runs under the benchmark protocol.

Features
    Reads the COCO object-detection format (Lin et al., ECCV 2014): ``images``, ``annotations`` with
    ``bbox`` = ``[x, y, w, h]`` and ``iscrowd``, and ``categories``. The classes are the file's
    categories in increasing id order. ``iscrowd = 1`` (or an ``ignore`` field) makes an ignore
    region; an extra ``difficult`` field is kept; a ``segmentation`` that is one 8-number polygon
    on every object of an image is kept as oriented corners. Images with no annotation are samples
    with no objects.

Usage
    ``labelbudget run --domains coco --data-root coco=PATH --set coco.ann=train.json --set
    coco.test_ann=val.json`` (or ``ann``/``test_ann`` in the matrix's ``[domains.coco]`` table).
    Options: ``ann`` (pool split) and ``test_ann`` (test split), paths relative to the root (or
    absolute); ``images``: the image folder relative to the root (default: tried in order
    ``ROOT/<file_name>``, ``ROOT/images/<file_name>``, ``ROOT/<ann stem>/<file_name>``, then the
    ``path`` field that ``labelbudget data export-coco`` writes). ``pool`` = ``ann``, ``test`` =
    ``test_ann``; the two files must have the same categories.

Sample ids and groups
    The id is the image's ``sample_id`` field when present (this project's export writes it), else
    its ``file_name`` without the extension; the group is the image's ``group`` field when present,
    else the id (every image is its own group). Exporting any domain with ``data export-coco`` and
    loading the file here gives the same samples (ids, boxes, labels, difficult, ignore, group).

Validation
    Malformed JSON, missing ``images``/``annotations``/``categories``, duplicate image, annotation or
    category ids, duplicate sample ids, unknown category ids, annotations of unknown images, boxes
    with a non-positive width or height, non-finite boxes, boxes wholly outside their image,
    non-positive image sizes, a size that disagrees with the image file's header, images missing or
    unreadable on disk, a ``file_name`` that is absolute or climbs out of the root with ``..`` (an
    absolute ``path``, which ``data export-coco`` writes, only inside the root, the annotation file's
    folder or the synthetic cache; symlinks inside the root are followed) and a sample id that is in
    both ``ann`` and ``test_ann`` (train/test overlap; not checked when both name the same file) raise
    ``AnnotationError(path, line, reason)`` (line 0: JSON entries are named by index and id in the
    reason); with ``lenient=True`` the entry is skipped and counted in the report. A UTF-8 BOM is
    accepted.

Metrics
    COCO mAP50-95 (pycocotools protocol via faster-coco-eval), then mAP50 and mAP75.

Synthetic data
    ``synthesize`` (``domains/synthetic/coco.py``) writes a small aerial-objects dataset (the scenes
    of the synthetic DOTA generator) as ``images/*.png`` with ``annotations/train.json`` and
    ``annotations/val.json``, the default ``ann``/``test_ann``, so ``labelbudget run --domains coco``
    works without data.
"""

from __future__ import annotations

import json
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
    image_size,
    inside,
    register_domain,
)
from domains.synthetic.cache import cache_dir


def _entry(kind: str, k: int, e: Any) -> str:
    eid = e.get("id") if isinstance(e, dict) else None
    return f"{kind}[{k}]" + (f" (id {eid})" if eid is not None else "")


def _sample_id(im: dict[str, Any]) -> str:
    """An image entry's sample id: ``sample_id``, else ``file_name`` without its extension, else ``id``."""
    if im.get("sample_id"):
        return str(im["sample_id"])
    fn = str(im.get("file_name") or "")
    stem = fn.rsplit(".", 1)[0] if "." in fn.rsplit("/", 1)[-1] else fn
    return stem or str(im["id"])


def read_coco(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is accepted
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from None
    if not isinstance(data, dict):
        raise AnnotationError(path, 1, "a COCO file is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(
                path, 0, f"missing or non-list {key!r} (COCO needs images, annotations, categories)"
            )
    return data


def parse_categories(path: Path, cats: list[Any]) -> tuple[list[int], tuple[str, ...]]:
    ids, names = [], []
    for k, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise AnnotationError(path, 0, f"{_entry('categories', k, c)} needs an integer 'id' and a 'name'")
        if c["id"] in ids:
            raise AnnotationError(path, 0, f"{_entry('categories', k, c)}: duplicate category id")
        ids.append(c["id"])
        names.append(str(c["name"]))
    order = np.argsort(ids, kind="stable")
    if not ids:
        raise AnnotationError(path, 0, "no categories")
    return [ids[i] for i in order], tuple(names[i] for i in order)


@register_domain("coco")
class COCODomain(Domain):
    """A user dataset in COCO JSON (see the module docstring)."""

    classes: tuple[str, ...] = ()  # type: ignore[misc]  # set from the file's categories at load
    box_type = "hbb"
    label_unit = "image"
    splits = ("pool", "test")
    metrics = (
        MetricSpec("mAP50-95", True, "coco", "AP", "COCO AP averaged over IoU 0.50:0.05:0.95"),
        MetricSpec("mAP50", True, "coco", "AP50", "COCO AP at IoU 0.5"),
        MetricSpec("mAP75", True, "coco", "AP75", "COCO AP at IoU 0.75"),
    )
    default_options = {"ann": "annotations/train.json", "test_ann": "annotations/val.json", "images": ""}
    synthetic_version = "1"

    def _ann_path(self, root: Path, split: str) -> Path:
        self.check_split(split)
        key = "ann" if split == "pool" else "test_ann"
        value = self.options[key]
        if not value:
            raise SpecError(f"coco: option {key!r} is not set (--set coco.{key}=FILE.json)")
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else root / p

    def verify(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"COCO root {root} does not exist. Point --data-root coco=PATH at the folder of your images "
                "and annotation files and name them with --set coco.ann=train.json "
                "--set coco.test_ann=val.json."
            )
        for split in self.splits:
            p = self._ann_path(root, split)
            if not p.is_file():
                key = "ann" if split == "pool" else "test_ann"
                raise DatasetNotFoundError(
                    f"coco: annotation file {p} is missing (option {key}, split {split!r})"
                )

    def _find_image(self, root: Path, ann: Path, im: dict[str, Any], where: str) -> Path | None:
        """The image file of an entry. ``file_name`` (and a relative ``path``) must stay inside the
        dataset root (or the annotation file's folder): relative, no ``..``; symlinks inside the root
        are followed. An absolute ``path`` (``data export-coco`` writes one) is accepted only where it
        lies inside the root, the annotation file's folder or the synthetic-data cache."""
        fn = str(im.get("file_name", ""))
        if fn:
            check_relative(fn, ann, 0, f"{where}: file_name")
        cands = []
        if self.options["images"]:
            cands.append(root / str(self.options["images"]) / fn)
        if fn:
            cands += [root / fn, root / "images" / fn, ann.parent / fn, root / ann.stem / fn]
        if im.get("path"):
            p = Path(str(im["path"]))
            if p.is_absolute():
                if not any(inside(p, r) for r in (root, ann.parent, cache_dir())):
                    raise AnnotationError(
                        ann,
                        0,
                        f"{where}: path {cut(str(p), 120)!r} lies outside the dataset root {root} (point the "
                        "root at a folder that holds the images)",
                    )
                cands.append(p)
            else:
                check_relative(str(p), ann, 0, f"{where}: path")
                cands += [root / p, ann.parent / p]
        for c in cands:
            if c.is_file():
                return c
        return None

    def load(self, root: str | Path, split: str, lenient: bool = False) -> DomainDataset:
        root = Path(root)
        path = self._ann_path(root, split)
        if not path.is_file():
            self.verify(root)
        data = read_coco(path)
        cat_ids, names = parse_categories(path, data["categories"])
        other = "test" if split == "pool" else "pool"
        if self.classes and tuple(self.classes) != names:
            raise AnnotationError(
                path, 0, f"categories {list(names)} differ from the {other} split's {list(self.classes)}"
            )
        self.classes = names  # type: ignore[misc]
        self.coco_category_ids = tuple(cat_ids)  # the file's ids (exports and results use them)
        cat_index = {c: k for k, c in enumerate(cat_ids)}
        report = LoadReport()
        # train / test overlap: an image in both splits would be scored on data it was trained on
        other_path = self._ann_path(root, other)
        other_ids: set[str] = set()
        if other_path.is_file() and other_path.resolve() != path.resolve():
            other_ids = self._sample_ids(other_path)
        images: dict[int, dict[str, Any]] = {}
        sample_ids: set[str] = set()
        for k, im in enumerate(data["images"]):
            where = _entry("images", k, im)
            try:
                if not isinstance(im, dict) or not isinstance(im.get("id"), int | str):
                    raise AnnotationError(path, 0, f"{where} needs an 'id'")
                if im["id"] in images:
                    raise AnnotationError(path, 0, f"{where}: duplicate image id")
                w, h = im.get("width"), im.get("height")
                if not isinstance(w, int) or not isinstance(h, int) or w <= 0 or h <= 0:
                    raise AnnotationError(
                        path, 0, f"{where}: width and height must be positive integers, got {w!r}x{h!r}"
                    )
                sid = _sample_id(im)
                check_relative(sid, path, 0, f"{where}: sample id")
                if sid in sample_ids:
                    raise AnnotationError(path, 0, f"{where}: duplicate sample id {sid!r}")
                if sid in other_ids:
                    raise AnnotationError(
                        path,
                        0,
                        f"{where}: sample id {sid!r} is also in the {other} split ({other_path.name})",
                    )
                img = self._find_image(root, path, im, where)
                if img is None:
                    raise AnnotationError(
                        path,
                        0,
                        f"{where}: image {cut(str(im.get('file_name')), 120)!r} missing on disk under {root}",
                    )
                win = im.get("window")
                if win is None:  # the file's header must agree with the entry's size
                    fw, fh = image_size(img)
                    if (fw, fh) != (w, h):
                        raise AnnotationError(
                            path, 0, f"{where}: width x height {w}x{h}, but the image {img.name} is {fw}x{fh}"
                        )
            except AnnotationError as err:
                report.problem(err, lenient, "images")
                continue
            sample_ids.add(sid)
            win = im.get("window")
            images[im["id"]] = {
                "coco_id": im["id"],
                "sid": sid,
                "w": w,
                "h": h,
                "path": img,
                "group": str(im.get("group") or sid),
                "window": tuple(int(v) for v in win) if win else None,
                "objs": [],
            }
        ann_ids: set[Any] = set()
        for k, a in enumerate(data["annotations"]):
            where = _entry("annotations", k, a)
            try:
                if not isinstance(a, dict):
                    raise AnnotationError(path, 0, f"{where} is not an object")
                if "id" in a:
                    if a["id"] in ann_ids:
                        raise AnnotationError(path, 0, f"{where}: duplicate annotation id")
                    ann_ids.add(a["id"])
                if a.get("category_id") not in cat_index:
                    raise AnnotationError(path, 0, f"{where}: unknown category id {a.get('category_id')!r}")
                iid = a.get("image_id")
                if iid not in images:
                    if any(isinstance(im, dict) and im.get("id") == iid for im in data["images"]):
                        report.skipped["annotations of skipped images"] += 1
                        continue
                    raise AnnotationError(path, 0, f"{where}: unknown image id {iid!r}")
                try:
                    x, y, bw, bh = (float(v) for v in a["bbox"])
                except (KeyError, TypeError, ValueError):
                    raise AnnotationError(path, 0, f"{where}: bbox must be [x, y, w, h]") from None
                xyxy = np.array([x, y, x + bw, y + bh], np.float64)
                if not np.isfinite(xyxy).all() or np.abs(xyxy).max() > 1e30:  # 1e39: inf as float32
                    raise AnnotationError(path, 0, f"{where}: bbox {cut(str(a['bbox']), 120)} is not finite")
                if bw <= 0 or bh <= 0:
                    raise AnnotationError(
                        path, 0, f"{where}: bbox {a['bbox']} has a non-positive width or height"
                    )
                iw, ih = images[iid]["w"], images[iid]["h"]
                if xyxy[2] <= 0 or xyxy[3] <= 0 or xyxy[0] >= iw or xyxy[1] >= ih:
                    raise AnnotationError(
                        path, 0, f"{where}: bbox {a['bbox']} lies wholly outside the {iw}x{ih} image"
                    )
            except AnnotationError as err:
                report.problem(err, lenient, "annotations")
                continue
            seg = a.get("segmentation")
            poly = None
            if isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) == 8:
                poly = [float(v) for v in seg[0]]
            ignore = bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))
            images[iid]["objs"].append(
                (
                    xyxy,
                    cat_index[a["category_id"]],
                    int(a.get("difficult", 0)),
                    ignore,
                    poly,
                )
            )
        samples = []
        for rec in images.values():
            objs = rec["objs"]
            polys = [o[4] for o in objs]
            samples.append(
                Sample(
                    id=rec["sid"],
                    group=rec["group"],
                    width=rec["w"],
                    height=rec["h"],
                    boxes=np.array([o[0] for o in objs], np.float64).reshape(-1, 4).astype(np.float32),
                    labels=[o[1] for o in objs],
                    difficult=[o[2] for o in objs],
                    ignore=[o[3] for o in objs],
                    polygons=np.array(polys, np.float32)
                    if objs and all(p is not None for p in polys)
                    else None,
                    meta={"source_file": path.name, "coco_id": rec["coco_id"]},
                    image_path=str(rec["path"]),
                    window=rec["window"],
                )
            )
        if not samples:
            raise EmptySplitError(f"coco: no usable images in {path} (split {split!r})", report.problems)
        return DomainDataset(
            self.name, split, names, samples, digest_files([path]), report, options=dict(self.options)
        )

    @staticmethod
    def _sample_ids(path: Path) -> set[str]:
        """The sample ids of a COCO file, read the way ``load`` reads them (entries it would reject
        are left out: ``load`` of that split reports them)."""
        out = set()
        for im in read_coco(path)["images"]:
            if isinstance(im, dict) and isinstance(im.get("id"), int | str):
                out.add(_sample_id(im))
        return out
