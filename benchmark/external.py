"""Score anyone's predictions with a domain's official metrics (``labelbudget evaluate``).

Accepted formats:

* ``coco``: a COCO results JSON list, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
  ``image_id`` is a sample id (string) or the integer id of the image in this project's COCO export
  of the split (``labelbudget data export-coco``: 1-based position); ``category_id`` is the class
  index + 1 (the export's category ids).
* ``dota``: the official DOTA submission files, a folder (or the files themselves) with
  ``Task1_<class>.txt`` (``imgname score x1 y1 x2 y2 x3 y3 x4 y4``) or ``Task2_<class>.txt``
  (``imgname score xmin ymin xmax ymax``). Task1 polygons are kept (``Prediction.polygons``): the
  Task1 metric scores them with polygon IoU, the horizontal metrics score their enclosing boxes.

A malformed file raises ``AnnotationError`` naming the file and the line (or the JSON entry).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.detectors.base import Prediction
from domains.base import AnnotationError, Domain, DomainDataset, SpecError


def _empty_lists(n: int) -> list[dict[str, list]]:
    return [{"boxes": [], "scores": [], "labels": []} for _ in range(n)]


def _to_predictions(acc: list[dict[str, list]], n_classes: int, polygons: bool = False) -> list[Prediction]:
    out = []
    for a in acc:
        boxes = np.asarray(a["boxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(a["labels"], np.int64)
        probs = np.zeros((len(labels), n_classes), np.float32)
        scores = np.asarray(a["scores"], np.float32)
        probs[np.arange(len(labels)), labels] = scores
        polys = np.asarray(a.get("polygons", []), np.float32).reshape(-1, 8) if polygons else None
        out.append(Prediction(boxes, scores, labels, probs, polygons=polys))
    return out


def read_coco_results(path: Path, test: DomainDataset) -> list[Prediction]:
    try:
        dets = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(dets, list):
        raise AnnotationError(path, 0, "a COCO results file is a JSON list of detections")
    index = {sid: i for i, sid in enumerate(test.ids)}
    n_classes = len(test.classes)
    acc = _empty_lists(len(test))
    for k, d in enumerate(dets):
        where = f"entry {k}"
        try:
            iid = d["image_id"]
            x, y, w, h = (float(v) for v in d["bbox"])
            cat = int(d["category_id"])
            score = float(d["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError(
                path, 0, f"{where}: needs image_id, category_id, bbox [x,y,w,h], score ({exc})"
            ) from None
        if isinstance(iid, str):
            if iid not in index:
                raise AnnotationError(
                    path, 0, f"{where}: unknown image_id {iid!r} (not a sample of this split)"
                )
            i = index[iid]
        else:
            i = int(iid) - 1
            if not 0 <= i < len(test):
                raise AnnotationError(path, 0, f"{where}: image_id {iid} outside 1..{len(test)}")
        if not 1 <= cat <= n_classes:
            raise AnnotationError(path, 0, f"{where}: category_id {cat} outside 1..{n_classes}")
        if not (w > 0 and h > 0 and np.isfinite([x, y, w, h, score]).all()):
            raise AnnotationError(path, 0, f"{where}: bbox needs positive width and height, finite values")
        acc[i]["boxes"].append([x, y, x + w, y + h])
        acc[i]["scores"].append(score)
        acc[i]["labels"].append(cat - 1)
    return _to_predictions(acc, n_classes)


def read_dota_task_files(path: Path, test: DomainDataset) -> list[Prediction]:
    files = sorted(path.glob("Task[12]_*.txt")) if path.is_dir() else [path]
    if not files:
        raise AnnotationError(path, 0, "no Task1_<class>.txt or Task2_<class>.txt files here")
    index = {sid: i for i, sid in enumerate(test.ids)}
    acc = _empty_lists(len(test))
    for f in files:
        stem = f.stem
        task, _, cls = stem.partition("_")
        if task not in ("Task1", "Task2") or cls not in test.classes:
            raise AnnotationError(
                f,
                0,
                f"file name must be Task1_<class>.txt or Task2_<class>.txt, class in "
                f"{', '.join(test.classes)}",
            )
        label = test.classes.index(cls)
        n_coords = 8 if task == "Task1" else 4
        for lineno, line in enumerate(f.read_text().splitlines(), start=1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) != 2 + n_coords:
                raise AnnotationError(
                    f, lineno, f"expected imgname score and {n_coords} coordinates, got {len(tok)} tokens"
                )
            try:
                score, *coords = (float(t) for t in tok[1:])
            except ValueError:
                raise AnnotationError(f, lineno, f"non-numeric value in {line!r}") from None
            if tok[0] not in index:
                raise AnnotationError(f, lineno, f"unknown image {tok[0]!r} (not a sample of this split)")
            xs, ys = coords[0::2], coords[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
            if box[2] <= box[0] or box[3] <= box[1]:
                raise AnnotationError(f, lineno, "degenerate box")
            a = acc[index[tok[0]]]
            x0, y0, x1, y1 = box
            corners = coords if n_coords == 8 else [x0, y0, x1, y0, x1, y1, x0, y1]
            a.setdefault("polygons", []).append(corners)
            a["boxes"].append(box)
            a["scores"].append(score)
            a["labels"].append(label)
    task1 = any(f.stem.startswith("Task1_") for f in files)
    return _to_predictions(acc, len(test.classes), polygons=task1)


def read_predictions(path: str | Path, test: DomainDataset, fmt: str | None = None) -> list[Prediction]:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"predictions {path} do not exist")
    if fmt is None:
        fmt = "dota" if path.is_dir() or path.name.startswith(("Task1_", "Task2_")) else "coco"
    if fmt == "coco":
        return read_coco_results(path, test)
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


def evaluate_external(
    domain: Domain,
    test: DomainDataset,
    path: str | Path,
    fmt: str | None = None,
    saliency_maps: str | Path | None = None,
) -> dict[str, Any]:
    """Official metrics of external predictions. Metrics that need dense maps (saliency) are computed
    from ``saliency_maps`` (a folder of ``<id>.png``) and left out, with a note, without it."""
    from benchmark.evaluation import evaluate_domain, get_protocol

    scenes = getattr(test, "scenes", None)
    is_task_files = (
        (fmt or "") == "dota" or Path(path).is_dir() or Path(path).name.startswith(("Task1_", "Task2_"))
    )
    if is_task_files and scenes is not None and any(s.window is not None for s in test):
        # DOTA submissions name whole scenes: score them against the scenes (the COCO metrics too)
        test = DomainDataset(
            test.domain, test.split, test.classes, scenes, test.version, test.report, test.options
        )
        test.scenes = scenes  # type: ignore[attr-defined]
    preds = read_predictions(path, test, fmt)
    if saliency_maps is not None:
        attach_saliency_maps(preds, test, saliency_maps)
        return evaluate_domain(domain, test, preds)
    dense = [m.name for m in domain.metrics if get_protocol(m.protocol)[1]]
    if not dense:
        return evaluate_domain(domain, test, preds)
    if get_protocol(domain.metrics[0].protocol)[1]:
        raise SpecError(f"{domain.name}'s primary metric needs saliency maps: pass --saliency-maps DIR")
    res = evaluate_domain(domain, test, preds, skip=set(dense))
    res["skipped"] = {n: "needs saliency maps (--saliency-maps DIR)" for n in dense}
    return res
