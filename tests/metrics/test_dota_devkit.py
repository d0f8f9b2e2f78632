"""`labelbudget evaluate dota` on Task1 / Task2 files equals a port of the DOTA devkit's ``voc_eval``.

The port below follows ``CAPTAIN-WHU/DOTA_devkit`` (commit 9938855) ``dota_evaluation_task1.py`` and
``dota_evaluation_task2.py`` statement by statement: GT parsed from the label text (header lines and
lines of fewer than 9 tokens skipped, difficult from the 10th token), detections sorted by descending
confidence, per detection the best-IoU ground truth of its class and image (Task1: an HBB prefilter
with +1 pixel areas, then exact polygon IoU, here by shapely; Task2: VOC IoU with +1 pixel areas on
the ground truth's horizontal box), ``ovmax > 0.5`` strict, difficult neither TP nor FP, duplicates
FP, VOC07 11-point AP. It is independent of ``benchmark.metrics.dota``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from benchmark.cli import main

CLASSES = ["plane", "ship", "small-vehicle", "harbor"]


# ---------------------------------------------------------------------------------- the port
def port_parse_gt(path: Path) -> list[dict]:
    objects = []
    for line in path.read_text().splitlines():
        sp = line.strip().split(" ")
        if len(sp) < 9:
            continue
        obj = {"name": sp[8], "difficult": int(sp[9]) if len(sp) == 10 else 0}
        obj["poly"] = [float(v) for v in sp[:8]]
        xs, ys = obj["poly"][0::2], obj["poly"][1::2]
        # Task2 reads the HBB labels: the polygon's enclosing rectangle, vertices 0 and 2 as ints
        obj["bbox"] = [int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))]
        objects.append(obj)
    return objects


def port_voc_ap(rec, prec):
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
        ap = ap + p / 11.0
    return ap


def port_voc_eval(det_lines, gt_files, classname, task):
    recs = {name: port_parse_gt(f) for name, f in gt_files.items()}
    class_recs, npos = {}, 0
    for name in gt_files:
        R = [o for o in recs[name] if o["name"] == classname]
        key = "poly" if task == 1 else "bbox"
        bbox = np.array([x[key] for x in R]).reshape(-1, 8 if task == 1 else 4)
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[name] = {"bbox": bbox, "difficult": difficult, "det": det}
    splitlines = [x.strip().split(" ") for x in det_lines]
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines]).reshape(len(splitlines), -1)
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            if task == 1:
                BBGT_xmin, BBGT_ymin = np.min(BBGT[:, 0::2], axis=1), np.min(BBGT[:, 1::2], axis=1)
                BBGT_xmax, BBGT_ymax = np.max(BBGT[:, 0::2], axis=1), np.max(BBGT[:, 1::2], axis=1)
                bb_xmin, bb_ymin = np.min(bb[0::2]), np.min(bb[1::2])
                bb_xmax, bb_ymax = np.max(bb[0::2]), np.max(bb[1::2])
                ixmin, iymin = np.maximum(BBGT_xmin, bb_xmin), np.maximum(BBGT_ymin, bb_ymin)
                ixmax, iymax = np.minimum(BBGT_xmax, bb_xmax), np.minimum(BBGT_ymax, bb_ymax)
                iw, ih = np.maximum(ixmax - ixmin + 1.0, 0.0), np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = (
                    (bb_xmax - bb_xmin + 1.0) * (bb_ymax - bb_ymin + 1.0)
                    + (BBGT_xmax - BBGT_xmin + 1.0) * (BBGT_ymax - BBGT_ymin + 1.0)
                    - inters
                )
                overlaps = inters / uni
                BBGT_keep_mask = overlaps > 0
                BBGT_keep = BBGT[BBGT_keep_mask, :]
                BBGT_keep_index = np.where(overlaps > 0)[0]
                if len(BBGT_keep) > 0:
                    pd = shapely.Polygon(bb.reshape(4, 2))
                    overlaps = []
                    for g in BBGT_keep:
                        pg = shapely.Polygon(g.reshape(4, 2))
                        inter = pd.intersection(pg).area
                        overlaps.append(inter / (pd.area + pg.area - inter))
                    ovmax = np.max(overlaps)
                    jmax = BBGT_keep_index[np.argmax(overlaps)]
            else:
                ixmin, iymin = np.maximum(BBGT[:, 0], bb[0]), np.maximum(BBGT[:, 1], bb[1])
                ixmax, iymax = np.minimum(BBGT[:, 2], bb[2]), np.minimum(BBGT[:, 3], bb[3])
                iw, ih = np.maximum(ixmax - ixmin + 1.0, 0.0), np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = (
                    (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                    + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                    - inters
                )
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
        if ovmax > 0.5:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return port_voc_ap(rec, prec)


# ---------------------------------------------------------------------------------- the data
def rotated(cx, cy, w, h, deg):
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    pts = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return [v for x, y in pts for v in (round(cx + c * x - s * y), round(cy + s * x + c * y))]


def write_tree(root: Path, rng) -> dict[str, Path]:
    """Three 400x400 scenes with integer polygons (as in DOTA v1.0's files): a header, difficult
    objects, a dense cluster of small vehicles a few pixels apart, a harbor whose polygon is rotated."""
    gt_files = {}
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labelTxt").mkdir(parents=True)
    for k in range(3):
        name = f"P{k:04d}"
        lines = ["imagesource:GoogleEarth", "gsd:0.146343590398"] if k != 1 else []
        objs = []
        for _ in range(3):
            objs.append((rotated(*rng.uniform(60, 340, 2), 40, 30, rng.uniform(0, 180)), "plane", 0))
        for i in range(12):  # dense cluster, 2-4 px apart
            x, y = 120 + (i % 4) * 14, 200 + (i // 4) * 10
            objs.append((rotated(x, y, 11, 7, rng.choice([0, 90, 30])), "small-vehicle", int(i == 5)))
        objs.append((rotated(300, 300, 60, 20, 45), "ship", 1))
        objs.append((rotated(280, 80, 70, 25, 10), "ship", 0))
        objs.append((rotated(90, 320, 80, 40, 35), "harbor", 0))
        lines += [" ".join(str(v) for v in p) + f" {c} {d}" for p, c, d in objs]
        for split, stem in (("train", f"T{k:04d}"), ("val", name)):  # train and val must not overlap
            Image.new("RGB", (400, 400)).save(root / split / "images" / f"{stem}.png")
            (root / split / "labelTxt" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        gt_files[name] = root / "val" / "labelTxt" / f"{name}.txt"
    return gt_files


def noisy_detections(gt_files, rng, task):
    """Jittered copies of every object (some twice: duplicates), misses and pure false positives;
    distinct scores (the devkit's unstable sort leaves ties unordered)."""
    per_class: dict[str, list[str]] = {}
    for name, f in gt_files.items():
        for o in port_parse_gt(f):
            if rng.random() < 0.15:
                continue  # a miss
            for _ in range(1 + int(rng.random() < 0.3)):
                p = np.array(o["poly"]) + rng.normal(0, 2.0, 8)
                geom = p if task == 1 else [p[0::2].min(), p[1::2].min(), p[0::2].max(), p[1::2].max()]
                per_class.setdefault(o["name"], []).append((name, geom))
        for _ in range(4):
            x, y = rng.uniform(0, 360, 2)
            p = rotated(x, y, 20, 12, rng.uniform(0, 90))
            geom = p if task == 1 else [min(p[0::2]), min(p[1::2]), max(p[0::2]), max(p[1::2])]
            per_class.setdefault(CLASSES[int(rng.integers(len(CLASSES)))], []).append((name, geom))
    out = {}
    for cls, dets in per_class.items():
        scores = rng.permutation(len(dets)) / len(dets) + 0.01
        out[cls] = [
            f"{n} {s:.6f} " + " ".join(f"{v:.3f}" for v in g) for (n, g), s in zip(dets, scores, strict=True)
        ]
    return out


@pytest.mark.parametrize("task", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_equals_devkit_port(tmp_path, task, seed):
    rng = np.random.default_rng(seed)
    root = tmp_path / "DOTA"
    gt_files = write_tree(root, rng)
    dets = noisy_detections(gt_files, rng, task)
    sub = tmp_path / f"task{task}"
    sub.mkdir()
    for cls, lines in dets.items():
        (sub / f"Task{task}_{cls}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", "dota", str(root), str(sub), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["primary"] == ("mAP50-task1" if task == 1 else "mAP50")
    ours = res["per_class"]
    checked = 0
    for cls in CLASSES:
        expected = port_voc_eval(dets.get(cls, []), gt_files, cls, task)
        assert ours[cls]["AP50"] == pytest.approx(expected, abs=1e-6), cls
        checked += 1
    assert checked == len(CLASSES)
    mean = float(np.mean([port_voc_eval(dets.get(c, []), gt_files, c, task) for c in CLASSES]))
    key = "mAP50-task1" if task == 1 else "mAP50"
    assert res["metrics"][key] == pytest.approx(mean, abs=1e-6)
