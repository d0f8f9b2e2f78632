"""Synthetic DOTA: top-down aerial-like scenes written in the official devkit layout.

What it draws (fixed difficulty, not tuned to any method):
    * scenes of one or several patches (``small``: each side 128 or 240 px, so a scene is 1, 2 or
      2 x 2 patches; up to 352 px for ``tiny`` and 576 px for ``medium``), cut by the adapter into
      128-px patches with a 16-px gap, as declared in
      ``ROOT/patching.json``; most object placements across a window border are redrawn
      (``SEAM_AVOID``) so that cut objects stay a minority, as in real DOTA at 1024 px;
    * ground: a blend of four draws of three land covers (vegetation, arid, urban) made of low-, mid- and
      high-frequency noise, with roads;
    * oriented objects, 8-40 px long, 3-15 per 128 x 128 px, of 8 DOTA v1.0 classes with distinct shapes
      (small-vehicle, large-vehicle, ship, storage-tank, plane, tennis-court, swimming-pool,
      helicopter). Angles as in DOTA: vehicles, ships, planes and helicopters at every angle (uniform
      in [-180, 180) degrees); tennis courts and swimming pools, laid out along streets and plots, within
      4.5 degrees of an axis (``AXIS_ALIGNED``); storage tanks are round. Class frequency is
      Zipf-like, p_k ~ 1/(k+1)^1.5, so the head:tail ratio is ~23:1
      (with the steeper 1.9, ~52:1, a 300-patch labelled set held ~25 instances of each tail class
      and their AP stayed near zero at every smoke budget);
    * look-alike clutter that is not an object: building roofs (rectangles), trees (dark discs),
      bright blobs and sheds that resemble vehicles;
    * two sensors (``imagesource``): ``GoogleEarth`` (gsd 0.1-0.6 m) and, for about 15 % of the scenes,
      ``GF-2`` (gsd 0.8-1.0 m: objects 0.9x as long, blurrier, warmer and desaturated), so a
      source/target split by sensor exists;
    * a mild blur and sensor noise. Objects smaller than 10 px or touching the border are marked
      difficult 1 (as DOTA annotators do for hard instances).

It writes ``ROOT/{train,val}/images/P%04d.png`` (every third scene as a GeoTIFF ``P%04d.tif`` in
EPSG:32633 with a north-up transform of the scene's gsd) and ``ROOT/{train,val}/labelTxt/P%04d.txt``
with the ``imagesource:``/``gsd:`` header lines; each split also holds one scene without objects (a
label file with the header only). Everything is drawn from one ``numpy.random.Generator`` seeded by
``seed``, so a seed always gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from domains.base import SpecError, register_synthetic
from domains.dota import format_label_file
from domains.patching import window_starts
from domains.synthetic.cache import atomic_tree

AXIS_ALIGNED = ("tennis-court", "swimming-pool")  # near axis-aligned, as in DOTA

SYNTH_CLASSES = (
    "small-vehicle",
    "large-vehicle",
    "ship",
    "storage-tank",
    "plane",
    "tennis-court",
    "swimming-pool",
    "helicopter",
)
ZIPF_EXPONENT = 1.5
CLASS_P = np.array([1.0 / (k + 1) ** ZIPF_EXPONENT for k in range(len(SYNTH_CLASSES))])
CLASS_P /= CLASS_P.sum()


@dataclass(frozen=True)
class SizePreset:
    n_train: int  # scenes
    n_val: int  # scenes
    sizes: tuple[int, ...]  # scene side lengths (each of W and H drawn from these)


# Scenes are cut into 128-px patches with a 16-px gap (step 112): a side of 128 + k * 112 px gives k + 1
# windows with the last one flush. "small" mixes single-patch scenes (the generator's first, 128-px images)
# with 2- and 4-patch scenes: about 590 pool / 195 test patches from 267 / 89 scenes, so a 300-patch
# labelled set spans ~130 scenes (with 2 x 2-patch scenes only it spanned 75, and learned measurably less).
PATCH_SIZE, GAP = 128, 16
PRESETS = {
    "tiny": SizePreset(8, 4, (240, 352)),
    "small": SizePreset(267, 89, (128, 240)),
    "medium": SizePreset(160, 48, (240, 352, 464, 576)),
}
SENSORS = ("GoogleEarth", "GF-2")  # GF-2: coarser (objects 0.9x, blurrier), warmer and desaturated
GF2_SHARE = 0.15
# Objects are 8-40 px but patches only 128 px, so far more objects would straddle a window border than
# in real DOTA (objects of tens of px in 1024-px windows). Most placements across a border are redrawn,
# so cut objects (difficult 2, or fragments left in the neighbouring window) stay a minority as in DOTA.
SEAM_AVOID = 0.9
GEOTIFF_EVERY = 3  # every third scene is written as a GeoTIFF (EPSG:32633), the others as PNG


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _ground(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cover = rng.integers(3)
    base = [np.array([70, 95, 60]), np.array([170, 150, 115]), np.array([115, 115, 112])][cover]
    base = base + rng.normal(0, 12, 3)
    img = np.empty((h, w, 3), np.float32)
    low, mid, high = (
        _noise(rng, h, w, 48),
        _noise(rng, h, w, 12),
        rng.standard_normal((h, w)).astype(np.float32),
    )
    tint = rng.normal(0, 1, 3) * 0.25 + 1.0
    for c in range(3):
        img[:, :, c] = base[c] + (18 * low + 10 * mid) * tint[c] + 5 * high
    # roads: 0-2 straight grey bands
    for _ in range(rng.integers(0, 3)):
        ang = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        dx, dy = math.cos(ang) * 400, math.sin(ang) * 400
        shade = float(rng.uniform(60, 140))
        cv2.line(
            img,
            (int(cx - dx), int(cy - dy)),
            (int(cx + dx), int(cy + dy)),
            (shade, shade, shade * 0.98),
            int(rng.integers(5, 12)),
            cv2.LINE_AA,
        )
    return img


def _rot(points: np.ndarray, cx: float, cy: float, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    r = np.array([[c, -s], [s, c]])
    return points @ r.T + np.array([cx, cy])


def _rect(length: float, width: float) -> np.ndarray:
    hl, hw = length / 2, width / 2
    # clockwise in image coordinates (y down), starting at the front-left corner
    return np.array([[hl, -hw], [hl, hw], [-hl, hw], [-hl, -hw]], np.float64)


def _fill(img: np.ndarray, pts: np.ndarray, color) -> None:
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], [float(v) for v in color], cv2.LINE_AA, shift=4)


def _draw_object(
    img: np.ndarray, rng: np.random.Generator, cls: str, cx: float, cy: float, ang: float, length: float
) -> np.ndarray:
    """Draw one object and return its oriented box (4 corners, clockwise, front-left first)."""
    R = lambda p: _rot(p, cx, cy, ang)  # noqa: E731
    if cls == "small-vehicle":
        width = length * rng.uniform(0.45, 0.55)
        body = rng.choice([[200, 200, 205], [30, 30, 35], [150, 30, 30], [40, 60, 140], [120, 120, 125]])
        _fill(img, R(_rect(length, width)), body + rng.normal(0, 10, 3))
        ws = _rect(length * 0.22, width * 0.8) + [length * 0.15, 0]
        _fill(img, R(ws), [25, 30, 40])
    elif cls == "large-vehicle":
        width = length * rng.uniform(0.3, 0.38)
        _fill(img, R(_rect(length, width)), np.array([185, 185, 180]) + rng.normal(0, 15, 3))
        cab = _rect(length * 0.2, width * 0.95) + [length * 0.4, 0]
        _fill(img, R(cab), rng.choice([[160, 40, 40], [40, 70, 150], [230, 230, 230]]))
    elif cls == "ship":
        width = length * rng.uniform(0.24, 0.32)
        hl, hw = length / 2, width / 2
        hull = np.array([[hl, 0], [hl * 0.55, hw], [-hl, hw], [-hl, -hw], [hl * 0.55, -hw]])
        _fill(img, R(hull), np.array([215, 215, 210]) + rng.normal(0, 12, 3))
        _fill(img, R(_rect(length * 0.35, width * 0.5) - [length * 0.1, 0]), [90, 95, 105])
    elif cls == "storage-tank":
        width = length
        ang = 0.0
        r = length / 2
        c = (int(round(cx * 16)), int(round(cy * 16)))
        cv2.circle(
            img,
            (int(round((cx + r * 0.25) * 16)), int(round((cy + r * 0.25) * 16))),
            int(r * 16),
            (40, 40, 40),
            -1,
            cv2.LINE_AA,
            4,
        )  # shadow
        shade = float(rng.uniform(190, 235))
        cv2.circle(img, c, int(r * 16), (shade, shade, shade * 0.97), -1, cv2.LINE_AA, 4)
        cv2.circle(img, c, int(r * 0.65 * 16), (shade - 35, shade - 35, shade - 35), 1, cv2.LINE_AA, 4)
        R = lambda p: p + np.array([cx, cy])  # noqa: E731
    elif cls == "plane":
        width = length * rng.uniform(0.9, 1.05)  # wingspan
        col = np.array([225, 225, 228]) + rng.normal(0, 8, 3)
        _fill(img, R(_rect(length, length * 0.14)), col)
        wing = np.array(
            [
                [length * 0.12, 0],
                [-length * 0.12, width / 2],
                [-length * 0.22, width / 2],
                [-length * 0.05, 0],
            ]
        )
        _fill(img, R(wing), col)
        _fill(img, R(wing * [1, -1]), col)
        tail = np.array([[-length * 0.36, 0], [-length * 0.5, width * 0.2], [-length * 0.5, -width * 0.2]])
        _fill(img, R(tail), col)
    elif cls == "tennis-court":
        width = length * rng.uniform(0.48, 0.56)
        surface = rng.choice([[60, 130, 70], [50, 90, 160], [170, 90, 60]])
        _fill(img, R(_rect(length, width)), surface)
        box = R(_rect(length * 0.86, width * 0.8))
        cv2.polylines(img, [np.round(box * 16).astype(np.int32)], True, (240, 240, 240), 1, cv2.LINE_AA, 4)
        net = R(np.array([[0, -width * 0.45], [0, width * 0.45]]))
        cv2.line(
            img,
            tuple(np.round(net[0] * 16).astype(int)),
            tuple(np.round(net[1] * 16).astype(int)),
            (240, 240, 240),
            1,
            cv2.LINE_AA,
            4,
        )
    elif cls == "swimming-pool":
        width = length * rng.uniform(0.5, 0.75)
        _fill(img, R(_rect(length, width)), [225, 225, 215])
        _fill(img, R(_rect(length * 0.82, width * 0.7)), np.array([40, 150, 215]) + rng.normal(0, 10, 3))
    elif cls == "helicopter":
        width = length
        body = np.array([40, 55, 45]) + rng.normal(0, 8, 3)
        _fill(img, R(_rect(length * 0.55, length * 0.22) + [length * 0.12, 0]), body)
        _fill(img, R(_rect(length * 0.45, length * 0.07) - [length * 0.27, 0]), body)
        for a in (0.6, 0.6 + math.pi / 2):
            blade = _rot(_rect(length * 0.98, 1.2), 0, 0, a) + [length * 0.12, 0]
            _fill(img, R(blade), [20, 20, 20])
    else:  # pragma: no cover - SYNTH_CLASSES is closed
        raise ValueError(cls)
    return R(_rect(length, width))


def _draw_clutter(img: np.ndarray, rng: np.random.Generator, h: int, w: int) -> None:
    for _ in range(int(rng.integers(2, 9) * h * w / 128**2)):
        kind = rng.integers(4)
        cx, cy, ang = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, math.pi)
        if kind == 0:  # building roof
            ln = rng.uniform(10, 40)
            shade = rng.uniform(90, 200)
            _fill(
                img,
                _rot(_rect(ln, ln * rng.uniform(0.4, 1.0)), cx, cy, ang),
                [shade, shade * 0.95, shade * 0.9],
            )
        elif kind == 1:  # tree
            cv2.circle(img, (int(cx), int(cy)), int(rng.integers(3, 9)), (35, 60, 30), -1, cv2.LINE_AA)
        elif kind == 2:  # shed that looks like a vehicle
            ln = rng.uniform(7, 14)
            shade = rng.uniform(60, 200)
            _fill(img, _rot(_rect(ln, ln * rng.uniform(0.6, 0.9)), cx, cy, ang), [shade, shade, shade])
        else:  # bright blob
            cv2.ellipse(
                img,
                (int(cx), int(cy)),
                (int(rng.integers(3, 10)), int(rng.integers(2, 6))),
                float(np.degrees(ang)),
                0,
                360,
                (210, 210, 200),
                -1,
                cv2.LINE_AA,
            )


LENGTH_RANGE = {
    "small-vehicle": (8, 13),
    "large-vehicle": (18, 30),
    "ship": (16, 38),
    "storage-tank": (10, 24),
    "plane": (20, 40),
    "tennis-court": (18, 28),
    "swimming-pool": (10, 22),
    "helicopter": (14, 24),
}


def _iou_hbb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(ua, 1e-9)


def _seams(length: int) -> np.ndarray:
    """Window borders (inside the scene) of the adapter's default patching along one axis."""
    starts = np.array(window_starts(length, PATCH_SIZE, GAP))
    cuts = np.concatenate([starts, starts + PATCH_SIZE])
    return np.unique(cuts[(cuts > 0) & (cuts < length)])


def _crosses(hbb: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> bool:
    return bool(((xs > hbb[0]) & (xs < hbb[2])).any() or ((ys > hbb[1]) & (ys < hbb[3])).any())


def render_scene(rng: np.random.Generator, h: int, w: int, n_objects: int, sensor: str = "GoogleEarth"):
    """One scene: returns (uint8 image, polygons (N, 8), class names, difficult flags).

    ``sensor`` ``GF-2`` imitates a coarser, differently calibrated satellite: objects 0.9x as long,
    a stronger blur and a warmer (reddish), desaturated colour response.
    """
    coarse = sensor == "GF-2"
    scale = 0.9 if coarse else 1.0
    # four land-cover draws blended by low-frequency masks: a scene is as varied as several small images
    img = _ground(rng, h, w)
    for _ in range(3):
        blend = 1.0 / (1.0 + np.exp(-4.0 * _noise(rng, h, w, 48)))[:, :, None]
        img = img * blend + _ground(rng, h, w) * (1.0 - blend)
    _draw_clutter(img, rng, h, w)
    polys, names, diffs, hbbs = [], [], [], []
    seam_x, seam_y = _seams(w), _seams(h)
    attempts = 0
    while len(polys) < n_objects and attempts < n_objects * 20:
        attempts += 1
        cls = SYNTH_CLASSES[rng.choice(len(SYNTH_CLASSES), p=CLASS_P)]
        length = rng.uniform(*LENGTH_RANGE[cls]) * scale
        ang = rng.uniform(-math.pi, math.pi)
        if cls in AXIS_ALIGNED:  # the nearest axis, plus a tenth of the draw's offset from it (<= 4.5 deg)
            axis = round(ang / (math.pi / 2)) * (math.pi / 2)
            ang = axis + 0.1 * (ang - axis)
        cx, cy = rng.uniform(length * 0.35, w - length * 0.35), rng.uniform(length * 0.35, h - length * 0.35)
        probe = _rot(_rect(length, length), cx, cy, 0 if cls == "storage-tank" else ang)
        hbb = np.array([probe[:, 0].min(), probe[:, 1].min(), probe[:, 0].max(), probe[:, 1].max()])
        if hbbs and _iou_hbb(hbb, np.array(hbbs)).max() > 0.05:
            continue
        if rng.random() < SEAM_AVOID and _crosses(hbb, seam_x, seam_y):
            continue
        corners = _draw_object(img, rng, cls, cx, cy, ang, length)
        corners[:, 0] = np.clip(corners[:, 0], 0, w)
        corners[:, 1] = np.clip(corners[:, 1], 0, h)
        touches = (
            corners[:, 0].min() <= 0.5
            or corners[:, 1].min() <= 0.5
            or corners[:, 0].max() >= w - 0.5
            or corners[:, 1].max() >= h - 0.5
        )
        hbbs.append(hbb)
        polys.append(corners.reshape(-1))
        names.append(cls)
        diffs.append(1 if (length < 10 or touches) else 0)
    img = cv2.GaussianBlur(img, (5, 5), 0.9 if coarse else 0.6)
    if coarse:
        grey = img.mean(2, keepdims=True)
        img = 0.6 * img + 0.4 * grey
        img *= np.array([1.12, 1.0, 0.86], np.float32)
        img += 10
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), np.array(polys).reshape(-1, 8), names, diffs


def _write_geotiff(path: Path, img: np.ndarray, gsd: float, x0: float, y0: float) -> None:
    """An RGB GeoTIFF in UTM zone 33N (EPSG:32633) with a north-up transform of ``gsd`` m/px."""
    import rasterio
    from affine import Affine

    h, w = img.shape[:2]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(gsd, 0.0, x0, 0.0, -gsd, y0),
        compress="deflate",
        photometric="RGB",
    ) as ds:
        ds.write(np.moveaxis(img, -1, 0))


@register_synthetic("dota")
def write_dataset(root: Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
    """Write the synthetic DOTA tree under ``root`` (atomically: a temp folder renamed at the end).

    Scenes of ``PRESETS[size].sizes`` px with about as many objects per 128 px as the calibration
    images had (3-15), about 15 % of them from the coarser ``GF-2`` sensor, every third one as a GeoTIFF;
    ``ROOT/patching.json`` declares the patch geometry (128 / 16) the adapter uses by default.
    """
    import json

    if size not in PRESETS:
        raise SpecError(f"synthetic DOTA size must be one of {', '.join(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    root = Path(root)
    with atomic_tree(root, "dota") as tmp:
        rng = np.random.default_rng([seed, 0xD07A])
        total = preset.n_train + preset.n_val
        bar = tqdm(
            total=total, desc=f"synthesizing dota ({size})", disable=not progress, unit="scene", leave=False
        )
        k = 0
        for split, n in (("train", preset.n_train), ("val", preset.n_val)):
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "labelTxt").mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.choice(preset.sizes)), int(rng.choice(preset.sizes))
                # the second scene of each split is always GF-2, so both sensors occur even in "tiny"
                sensor = SENSORS[1] if (i == 1 or rng.random() < GF2_SHARE) else SENSORS[0]
                n_obj = 0 if i == 0 else int(round(rng.integers(3, 16) * h * w / 128**2))
                img, polys, names, diffs = render_scene(rng, h, w, n_obj, sensor)
                sid = f"P{k:04d}"
                k += 1
                gsd = round(float(rng.uniform(0.8, 1.0) if sensor == "GF-2" else rng.uniform(0.1, 0.6)), 6)
                if k % GEOTIFF_EVERY == 0:
                    x0, y0 = 500000.0 + 1000.0 * k, 5000000.0
                    _write_geotiff(tmp / split / "images" / f"{sid}.tif", img, gsd, x0, y0)
                else:
                    cv2.imwrite(
                        str(tmp / split / "images" / f"{sid}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
                    )
                (tmp / split / "labelTxt" / f"{sid}.txt").write_text(
                    format_label_file(polys, names, diffs, sensor, gsd)
                )
                bar.update()
        bar.close()
        (tmp / "patching.json").write_text(json.dumps({"patch_size": PATCH_SIZE, "gap": GAP}) + "\n")
    return root
