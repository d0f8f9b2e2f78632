"""Score anyone's predictions with a domain's official metrics (``labelbudget evaluate``).

Accepted formats:

* ``coco``: a COCO results JSON list, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
  (optionally ``"segmentation": [[x1, y1, ..., x4, y4]]``, an oriented box for DOTA's Task1). Ids
  mean what they mean in the ground truth: ``image_id`` is the image's id in the split's COCO file (a
  ``coco`` dataset's own ids; for the other domains the ids ``labelbudget data export-coco`` writes,
  1..N), or a sample id string; ``category_id`` is the ground truth's category id. A COCO *dataset*
  (a dict with ``annotations``, such as an ``export-coco`` file) is accepted too: its non-crowd
  annotations are the detections, with ``score`` 1 where they carry none.
* ``dota``: the official DOTA submission files, a folder (or the files themselves) with
  ``Task1_<class>.txt`` (``imgname score x1 y1 x2 y2 x3 y3 x4 y4``) or ``Task2_<class>.txt``
  (``imgname score xmin ymin xmax ymax``), one task per submission. They name whole scenes and are
  scored on the scenes as they are (the devkit's evaluation; patch merging is for patch detections
  only). Task1 polygons are scored with polygon IoU (``mAP50-task1``, the primary metric then).

Files may start with a UTF-8 byte-order mark. A malformed file raises ``AnnotationError`` naming the
file and the line (or the JSON entry). Detections are held as arrays, so memory grows linearly with
the submission (about 100 bytes a detection).
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.detectors.base import Prediction
from domains.base import AnnotationError, Domain, DomainDataset, SpecError


def _cut(text: str, n: int = 120) -> str:
    """A bad line as it may appear in an error message (long lines are cut)."""
    text = text.rstrip("\n")
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


class _Acc:
    """Detections collected as flat arrays: image index, score, label, box (4) and polygon (8)."""

    def __init__(self, with_polygons: bool = False) -> None:
        self.img, self.lab = array("q"), array("q")
        self.score, self.box = array("d"), array("d")
        self.poly: array | None = array("d") if with_polygons else None

    def add(self, i: int, score: float, label: int, box: Any, poly: Any = None) -> None:
        self.img.append(i)
        self.score.append(score)
        self.lab.append(label)
        self.box.extend(box)
        if poly is not None and self.poly is None:  # the first polygon: earlier rows get their boxes'
            self.poly = array("d")
            b = np.frombuffer(self.box, np.float64).reshape(-1, 4)[:-1]
            self.poly.extend(_rects(b).ravel().tolist())
        if self.poly is not None:
            self.poly.extend(poly if poly is not None else _rects(np.asarray([box], np.float64))[0])

    def predictions(self, n_images: int, n_classes: int) -> list[Prediction]:
        img = np.frombuffer(self.img, np.int64) if len(self.img) else np.zeros(0, np.int64)
        order = np.argsort(img, kind="stable")  # per image, in the file's order
        bounds = np.searchsorted(img[order], np.arange(n_images + 1))
        boxes = np.frombuffer(self.box, np.float64).reshape(-1, 4).astype(np.float32) if len(img) else None
        polys = None
        if self.poly is not None and len(img):
            polys = np.frombuffer(self.poly, np.float64).reshape(-1, 8).astype(np.float32)
        scores = np.frombuffer(self.score, np.float64).astype(np.float32) if len(img) else None
        labels = np.frombuffer(self.lab, np.int64) if len(img) else None
        out = []
        for i in range(n_images):
            sel = order[bounds[i] : bounds[i + 1]]
            if boxes is None or not len(sel):
                b, s, lab = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
                poly = np.zeros((0, 8), np.float32) if self.poly is not None else None
            else:
                b, s, lab = boxes[sel], scores[sel], labels[sel]
                poly = polys[sel] if polys is not None else None
            probs = np.zeros((len(lab), n_classes), np.float32)
            probs[np.arange(len(lab)), lab] = s
            out.append(Prediction(b, s, lab, probs, polygons=poly))
        return out


def _rects(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1)


def _image_index(test: DomainDataset) -> tuple[dict[Any, int], dict[str, int]]:
    """Lookup of a results file's ``image_id``: by the split's COCO image id (exact value and type),
    and by sample id string."""
    from benchmark.metrics.coco import coco_image_ids

    by_id: dict[Any, int] = {}
    for i, (cid, s) in enumerate(zip(coco_image_ids(list(test)), test, strict=True)):
        by_id[(type(cid).__name__, cid)] = i
        raw = s.meta.get("coco_id")
        if raw is not None:
            by_id.setdefault((type(raw).__name__, raw), i)
    by_name = {sid: i for i, sid in enumerate(test.ids)}
    return by_id, by_name


def read_coco_results(path: Path, test: DomainDataset, domain: Domain | None = None) -> list[Prediction]:
    from benchmark.metrics.coco import coco_category_ids

    try:
        dets = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise AnnotationError(path, 0, "not UTF-8 text (a COCO results file is JSON)") from None
    if isinstance(dets, dict) and isinstance(dets.get("annotations"), list):  # a COCO dataset
        dets = [
            {"score": 1.0, **a} for a in dets["annotations"] if isinstance(a, dict) and not a.get("iscrowd")
        ]
    if not isinstance(dets, list):
        raise AnnotationError(path, 0, "a COCO results file is a JSON list of detections")
    by_id, by_name = _image_index(test)
    n_classes = len(test.classes)
    cats = coco_category_ids(domain, n_classes)
    cat_index = {c: k for k, c in enumerate(cats)}
    acc = _Acc()
    for k, d in enumerate(dets):
        where = f"entry {k}"
        try:
            iid = d["image_id"]
            x, y, w, h = (float(v) for v in d["bbox"])
            cat = d["category_id"]
            score = float(d["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError(
                path, 0, f"{where}: needs image_id, category_id, bbox [x,y,w,h], score ({_cut(str(exc))})"
            ) from None
        if isinstance(iid, bool) or not isinstance(iid, int | str):
            raise AnnotationError(path, 0, f"{where}: image_id must be an integer or a string, got {iid!r}")
        i = by_id.get((type(iid).__name__, iid))
        if i is None and isinstance(iid, str):
            i = by_name.get(iid)
        if i is None:
            raise AnnotationError(
                path,
                0,
                f"{where}: unknown image_id {_cut(repr(iid), 60)} (no image of split {test.split!r} has it)",
            )
        if isinstance(cat, bool) or not isinstance(cat, int) or cat not in cat_index:
            known = ", ".join(str(c) for c in cats[:20]) + (" ..." if len(cats) > 20 else "")
            raise AnnotationError(
                path, 0, f"{where}: unknown category_id {_cut(repr(cat), 60)} (known: {known})"
            )
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)):
            raise AnnotationError(path, 0, f"{where}: bbox has a non-finite value")
        if not math.isfinite(score):
            raise AnnotationError(path, 0, f"{where}: score {score} is not finite")
        if not (w > 0 and h > 0):
            raise AnnotationError(path, 0, f"{where}: bbox needs a positive width and height, got {w} x {h}")
        poly = None
        seg = d.get("segmentation")
        if isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) == 8:
            try:
                poly = [float(v) for v in seg[0]]
            except (TypeError, ValueError):
                raise AnnotationError(path, 0, f"{where}: segmentation must hold 8 numbers") from None
            if not all(math.isfinite(v) for v in poly):
                raise AnnotationError(path, 0, f"{where}: segmentation has a non-finite value")
        acc.add(i, score, cat_index[cat], (x, y, x + w, y + h), poly)
    return acc.predictions(len(test), n_classes)


def _task_files(path: Path) -> list[Path]:
    files = sorted(path.glob("Task[12]_*.txt")) if path.is_dir() else [path]
    if not files:
        raise AnnotationError(path, 0, "no Task1_<class>.txt or Task2_<class>.txt files here")
    tasks = {f.name.partition("_")[0] for f in files}
    if len(tasks) > 1:
        raise AnnotationError(
            path, 0, "holds both Task1_ and Task2_ files: score one task at a time (a folder per task)"
        )
    return files


def read_dota_task_files(path: Path, test: DomainDataset) -> list[Prediction]:
    files = _task_files(path)
    index = {sid: i for i, sid in enumerate(test.ids)}
    task1 = files[0].name.startswith("Task1_")
    acc = _Acc(with_polygons=task1)
    for f in files:
        task, _, cls = f.stem.partition("_")
        if task not in ("Task1", "Task2") or cls not in test.classes:
            raise AnnotationError(
                f,
                0,
                "file name must be Task1_<class>.txt or Task2_<class>.txt, class in "
                + ", ".join(test.classes),
            )
        label = test.classes.index(cls)
        n_coords = 8 if task == "Task1" else 4
        try:
            fh = f.open(encoding="utf-8-sig", newline=None)
        except OSError as exc:
            raise AnnotationError(f, 0, f"cannot read: {exc.strerror}") from None
        with fh:
            try:
                for lineno, line in enumerate(fh, start=1):
                    tok = line.split()
                    if not tok:
                        continue
                    if len(tok) != 2 + n_coords:
                        raise AnnotationError(
                            f,
                            lineno,
                            f"expected imgname score and {n_coords} coordinates, got {len(tok)} tokens",
                        )
                    try:
                        vals = [float(t) for t in tok[1:]]
                    except ValueError:
                        raise AnnotationError(f, lineno, f"non-numeric value in {_cut(line)!r}") from None
                    if not all(math.isfinite(v) for v in vals):
                        raise AnnotationError(f, lineno, f"non-finite value (nan or inf) in {_cut(line)!r}")
                    i = index.get(tok[0])
                    if i is None:
                        raise AnnotationError(
                            f,
                            lineno,
                            f"unknown image {_cut(tok[0], 60)!r} (not a scene of split {test.split!r})",
                        )
                    coords = vals[1:]
                    xs, ys = coords[0::2], coords[1::2]
                    box = (min(xs), min(ys), max(xs), max(ys))
                    if box[2] <= box[0] or box[3] <= box[1]:
                        raise AnnotationError(f, lineno, "degenerate box (no width or no height)")
                    acc.add(i, vals[0], label, box, coords if task1 else None)
            except UnicodeDecodeError:
                raise AnnotationError(f, 0, "not UTF-8 text") from None
    return acc.predictions(len(test), len(test.classes))


def read_predictions(
    path: str | Path, test: DomainDataset, fmt: str | None = None, domain: Domain | None = None
) -> list[Prediction]:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"predictions {path} do not exist")
    if fmt is None:
        fmt = "dota" if path.is_dir() or path.name.startswith(("Task1_", "Task2_")) else "coco"
    if fmt == "coco":
        if path.is_dir():
            raise SpecError(f"predictions {path} is a folder: a COCO results file is one JSON file")
        return read_coco_results(path, test, domain)
    if fmt == "dota":
        return read_dota_task_files(path, test)
    raise SpecError(f"unknown predictions format {fmt!r}; use coco or dota")


def attach_saliency_maps(preds: list[Prediction], test: DomainDataset, folder: str | Path) -> None:
    """Read ``<folder>/<sample id>.png`` (grayscale, 0-255 = foreground probability) into each
    prediction's ``dense["foreground"]`` for the saliency metrics (sonar)."""
    from PIL import Image

    folder = Path(folder)
    for s, p in zip(test, preds, strict=True):
        f = folder / f"{s.id}.png"
        if not f.is_file():
            raise AnnotationError(f, 0, f"no saliency map for sample {s.id}")
        with Image.open(f) as im:
            p.dense = {"foreground": np.asarray(im.convert("L"), np.float32) / 255.0}


def scenes_of(test: DomainDataset) -> DomainDataset:
    """The whole scenes of a patch-based split (what DOTA submissions name); ``test`` itself otherwise."""
    scenes = getattr(test, "scenes", None)
    if scenes is None or not any(s.window is not None for s in test):
        return test
    out = DomainDataset(
        test.domain, test.split, test.classes, scenes, test.version, test.report, test.options
    )
    out.scenes = scenes  # type: ignore[attr-defined]
    return out


def evaluate_external(
    domain: Domain,
    test: DomainDataset,
    path: str | Path,
    fmt: str | None = None,
    saliency_maps: str | Path | None = None,
) -> dict[str, Any]:
    """Official metrics of external predictions. Metrics that need dense maps (saliency) are computed
    from ``saliency_maps`` (a folder of ``<id>.png``) and left out, with a note, without it. Oriented
    predictions (Task1 files, or COCO results with 8-point segmentations) make a domain's
    ``oriented_primary`` metric (DOTA: Task1, ``mAP50-task1``, polygon IoU) the primary one, as in an
    oriented detector's run record."""
    from benchmark.evaluation import evaluate_domain, get_protocol, scoring_domain

    is_task_files = (
        (fmt or "") == "dota" or Path(path).is_dir() or Path(path).name.startswith(("Task1_", "Task2_"))
    )
    if is_task_files:
        test = scenes_of(test)  # DOTA submissions name whole scenes: score them on the scenes
    preds = read_predictions(path, test, fmt, domain)
    # oriented predictions (Task1 files, COCO results with 8-point segmentations) are scored as an
    # oriented detector's run is: DOTA's Task1 (polygon IoU) becomes the primary metric
    domain = scoring_domain(domain, any(p.polygons is not None for p in preds))
    if saliency_maps is not None:
        attach_saliency_maps(preds, test, saliency_maps)
        return evaluate_domain(domain, test, preds)
    dense = [m.name for m in domain.metrics if get_protocol(m.protocol)[1]]
    if dense and get_protocol(domain.metrics[0].protocol)[1]:
        raise SpecError(f"{domain.name}'s primary metric needs saliency maps: pass --saliency-maps DIR")
    res = evaluate_domain(domain, test, preds, skip=set(dense))
    if dense:
        res["skipped"] = {n: "needs saliency maps (--saliency-maps DIR)" for n in dense}
    return res
