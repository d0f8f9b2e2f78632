"""Synthetic Foggy Cityscapes: small street scenes with a depth map, written in the Cityscapes layout.

What it draws (fixed difficulty, not tuned to any method):
    * a forward-looking street view, 192 x 96 px, with a horizon, a road with lane marks, sidewalks,
      building facades with windows on both sides, an overcast sky, poles and traffic signs;
    * 3-10 traffic participants standing on the ground plane: cars (most frequent), persons, riders
      on bicycles or motorcycles, parked bicycles, trucks and buses. Their pixel height follows the
      perspective of the ground row they stand on, so far objects are small and near ones large;
      they are drawn far to near, so near objects occlude far ones (and a rider occludes its bike);
    * sometimes a distant crowd, annotated as a ``persongroup`` polygon (an ignore region);
    * a per-pixel depth map in metres: ground rows ``d = K / (y - horizon)`` (K = 350), facades at
      the depth of their ground line, objects at the depth of their contact row, sky at infinity.

It writes, for each frame ``{city}_{seq:06d}_{frame:06d}`` (frames of one sequence share their
street, cities differ between train and val):
    * ``leftImg8bit/{split}/{city}/<frame>_leftImg8bit.png``: the clear image J;
    * ``leftImg8bit_foggy/{split}/{city}/<frame>_leftImg8bit_foggy_beta_{0.005,0.01,0.02}.png``: the
      fog renderings with the standard optical model of Sakaridis et al. (the one Foggy Cityscapes
      uses): transmittance ``t = exp(-beta * d)`` and ``I = J * t + A * (1 - t)`` with one grey-ish
      atmospheric light A per frame;
    * ``gtFine/{split}/{city}/<frame>_gtFine_polygons.json`` (``imgHeight``, ``imgWidth``,
      ``objects[{label, polygon}]``: stuff polygons first, then objects far to near, the Cityscapes
      drawing order) and ``<frame>_gtFine_instanceIds.png`` (16-bit: ``labelId * 1000 + k`` for the
      k-th instance of a class in file order, the bare ``labelId`` for groups and stuff, as
      ``json2instanceImg.py`` writes it).

Everything is drawn from ``numpy.random.Generator`` objects seeded by ``seed``: a seed always gives
the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from domains.base import SpecError, register_synthetic
from domains.foggy_cityscapes import CLASS_LABEL_IDS
from domains.synthetic.cache import atomic_tree

WIDTH, HEIGHT = 192, 96
BETAS = (0.005, 0.01, 0.02)
DEPTH_K = 350.0  # metres x pixels: ground depth d = K / (y - horizon)
SKY_DEPTH = 1e4
# Cityscapes label ids (helpers/labels.py): the stuff classes drawn here, then the 8 detection classes
LABEL_IDS = {
    "road": 7,
    "sidewalk": 8,
    "building": 11,
    "pole": 17,
    "traffic sign": 20,
    "sky": 23,
    **CLASS_LABEL_IDS,
}
# kind -> probability; "rider" draws a rider on a bicycle, "moto" a rider on a motorcycle
KINDS = {
    "car": 0.32,
    "person": 0.22,
    "rider": 0.11,
    "moto": 0.07,
    "bicycle": 0.06,
    "truck": 0.11,
    "bus": 0.11,
}
# pixel height of an object per pixel of (contact row - horizon): real height / camera height 1.5 m
HEIGHT_FACTOR = {"car": 1.0, "person": 1.17, "bicycle": 0.72, "motorcycle": 0.8, "truck": 2.1, "bus": 2.0}
TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg")
VAL_CITIES = ("frankfurt", "lindau", "munster")


@dataclass(frozen=True)
class SizePreset:
    n_train: int
    n_val: int
    frames_per_seq: int


PRESETS = {
    "tiny": SizePreset(24, 12, 3),
    "small": SizePreset(600, 200, 3),
    "medium": SizePreset(2000, 500, 3),
}


# ------------------------------------------------------------------------------------------ scene


@dataclass
class Street:
    """The static part of a sequence: horizon, vanishing point, palette, facades."""

    horizon: int
    vx: float
    road_half: float  # half road width at the bottom row, px
    walk_half: float  # half width of road + sidewalks at the bottom row, px
    sky: np.ndarray
    road: float
    walk: float
    facades: list[tuple[int, int, int, np.ndarray]]  # (x0, x1, top, colour)
    poles: list[tuple[int, bool]]  # (x, has sign)
    airlight: np.ndarray


def make_street(rng: np.random.Generator) -> Street:
    horizon = int(rng.integers(int(HEIGHT * 0.36), int(HEIGHT * 0.44)))
    vx = float(rng.uniform(WIDTH * 0.4, WIDTH * 0.6))
    facades = []
    x = 0
    while x < WIDTH:
        w = int(rng.integers(14, 40))
        top = int(rng.integers(2, max(3, horizon - 8)))
        colour = rng.choice(
            [[150, 140, 130], [120, 110, 100], [170, 160, 150], [110, 115, 125]]
        ) + rng.normal(0, 12, 3)
        facades.append((x, x + w, top, colour))
        x += w
    poles = [(int(rng.integers(0, WIDTH)), bool(rng.random() < 0.5)) for _ in range(int(rng.integers(0, 4)))]
    a = float(rng.uniform(205, 235))
    return Street(
        horizon=horizon,
        vx=vx,
        road_half=float(rng.uniform(0.55, 0.75) * WIDTH),
        walk_half=float(rng.uniform(0.95, 1.2) * WIDTH),
        sky=np.array([a - 8, a - 3, a + 2]) + rng.normal(0, 4, 3),
        road=float(rng.uniform(70, 105)),
        walk=float(rng.uniform(130, 160)),
        facades=facades,
        poles=poles,
        airlight=np.array([a, a, a + 3]) + rng.normal(0, 2, 3),
    )


def _ground_depth(y: np.ndarray, horizon: int) -> np.ndarray:
    return DEPTH_K / np.maximum(y - horizon, 0.5)


def _x_at(street: Street, y: float, half_bottom: float, side: int) -> float:
    """x of a line through the vanishing point reaching ``vx + side * half_bottom`` at the bottom row."""
    frac = (y - street.horizon) / (HEIGHT - street.horizon)
    return street.vx + side * half_bottom * frac


def render_background(street: Street) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    """Clear image (float32), depth (metres) and the stuff polygons of the street."""
    h, w, hz = HEIGHT, WIDTH, street.horizon
    img = np.empty((h, w, 3), np.float32)
    depth = np.full((h, w), SKY_DEPTH, np.float32)
    img[:] = street.sky
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    below = ys > hz
    gd = np.broadcast_to(_ground_depth(ys, hz), (h, w))
    frac = np.clip((ys - hz) / (h - hz), 0, None)
    dx = np.abs(xs - street.vx)
    road = below & (dx <= street.road_half * frac)
    walk = below & ~road & (dx <= street.walk_half * frac)
    polys: list[tuple[str, np.ndarray]] = []
    # facades: columns outside the sidewalk, from their top down to the sidewalk's outer edge
    for x0, x1, top, colour in street.facades:
        for x in range(x0, min(x1, w)):
            xc = x + 0.5
            # the row at which the sidewalk's outer edge passes this column
            reach = abs(xc - street.vx) / street.walk_half
            base = hz + reach * (h - hz)
            y1 = int(min(h, math.ceil(base)))
            img[top:y1, x] = colour
            depth[top:y1, x] = DEPTH_K / max(base - hz, 0.5)
        # window grid
        for wy in range(top + 3, hz + 4, 6):
            for wx in range(x0 + 2, min(x1, w) - 2, 6):
                if depth[min(wy, h - 1), min(wx, w - 1)] < SKY_DEPTH:
                    img[wy : wy + 3, wx : wx + 3] = colour * 0.45
        polys.append(("building", np.array([[x0, top], [x1 - 1, top], [x1 - 1, hz + 2], [x0, hz + 2]])))
    img[walk] = street.walk
    depth[walk] = gd[walk]
    img[road] = street.road
    depth[road] = gd[road]
    # dashed centre line
    for y in range(hz + 2, h):
        if (y // 4) % 2 == 0:
            half = max(0.5, 1.5 * (y - hz) / (h - hz))
            x0, x1 = int(street.vx - half), int(math.ceil(street.vx + half))
            img[y, max(0, x0) : x1] = 225
    polys.append(("sky", np.array([[0, 0], [w - 1, 0], [w - 1, hz], [0, hz]])))
    for name, half in (("sidewalk", street.walk_half), ("road", street.road_half)):
        polys.append(
            (
                name,
                np.array(
                    [
                        [street.vx, hz],
                        [_x_at(street, h - 1, half, 1), h - 1],
                        [_x_at(street, h - 1, half, -1), h - 1],
                    ]
                ),
            )
        )
    for px, sign in street.poles:
        top = int(hz - 20)
        base = h - 1 if abs(px - street.vx) > street.road_half else hz + 10
        cv2.line(img, (px, top), (px, base), (60, 60, 62), 1)
        depth[top:base, px] = DEPTH_K / max(base - hz, 0.5)
        polys.append(("pole", np.array([[px, top], [px + 1, top], [px + 1, base], [px, base]])))
        if sign:
            cv2.rectangle(img, (px - 3, top), (px + 3, top + 5), (40, 80, 170), -1)
            polys.append(
                (
                    "traffic sign",
                    np.array([[px - 3, top], [px + 3, top], [px + 3, top + 5], [px - 3, top + 5]]),
                )
            )
    return img, depth, polys


def _fillpoly(target: np.ndarray, pts: np.ndarray, value) -> None:
    cv2.fillPoly(target, [np.round(pts).astype(np.int32)], value)


def _wheel(img: np.ndarray, cx: float, cy: float, r: float, thick: int = -1) -> None:
    cv2.circle(img, (int(round(cx)), int(round(cy))), max(1, int(round(r))), (25, 25, 28), thick)


def _person_poly(cx: float, yb: float, h: float, w: float) -> np.ndarray:
    return np.array(
        [
            [cx - 0.2 * w, yb - h],
            [cx + 0.2 * w, yb - h],
            [cx + 0.5 * w, yb - 0.78 * h],
            [cx + 0.42 * w, yb - 0.45 * h],
            [cx + 0.32 * w, yb],
            [cx - 0.32 * w, yb],
            [cx - 0.42 * w, yb - 0.45 * h],
            [cx - 0.5 * w, yb - 0.78 * h],
        ]
    )


def _draw_person(
    img: np.ndarray, rng: np.random.Generator, cx: float, yb: float, h: float, w: float, helmet: bool = False
) -> None:
    top = rng.choice(
        [[170, 40, 40], [40, 60, 150], [220, 220, 210], [40, 120, 60], [200, 150, 40], [30, 30, 30]]
    )
    top = top + rng.normal(0, 10, 3)
    legs = rng.choice([[40, 40, 70], [60, 60, 60], [110, 90, 70]])
    _fillpoly(img, _person_poly(cx, yb, h, w), [float(v) for v in legs])
    torso = np.array(
        [
            [cx - 0.5 * w, yb - 0.8 * h],
            [cx + 0.5 * w, yb - 0.8 * h],
            [cx + 0.42 * w, yb - 0.45 * h],
            [cx - 0.42 * w, yb - 0.45 * h],
        ]
    )
    _fillpoly(img, torso, [float(v) for v in top])
    cv2.circle(
        img, (int(round(cx)), int(round(yb - 0.9 * h))), max(1, int(round(0.11 * h))), (205, 165, 140), -1
    )
    if helmet:  # riders wear a bright helmet and reach forward to the handlebar
        hc = [(250, 240, 60), (245, 245, 245), (255, 120, 20)][int(rng.integers(3))]
        cv2.ellipse(
            img,
            (int(round(cx)), int(round(yb - 0.93 * h))),
            (max(1, int(round(0.16 * h))), max(1, int(round(0.09 * h)))),
            0,
            180,
            360,
            hc,
            -1,
        )
        cv2.line(
            img,
            (int(round(cx)), int(round(yb - 0.75 * h))),
            (int(round(cx + 0.9 * w)), int(round(yb - 0.55 * h))),
            [float(v) for v in top],
            max(1, int(h / 9)),
        )
    elif h > 14:  # gap between the legs
        cv2.line(
            img,
            (int(round(cx)), int(round(yb))),
            (int(round(cx)), int(round(yb - 0.35 * h))),
            (90, 90, 90),
            1,
        )


def _draw_bike(img: np.ndarray, x0: float, yb: float, h: float, w: float, motor: bool) -> None:
    r = 0.36 * h
    r = min(r, 0.3 * w)
    _wheel(img, x0 + r, yb - r, r, -1 if motor else max(2, int(r / 2)))
    _wheel(img, x0 + w - r, yb - r, r, -1 if motor else max(2, int(r / 2)))
    frame = (200, 40, 40) if motor else (230, 200, 30)
    thick = max(2, int(h / 7))
    top = (int(x0 + w / 2), int(yb - 0.9 * h))
    cv2.line(img, (int(x0 + r), int(yb - r)), top, frame, thick)
    cv2.line(img, (int(x0 + w - r), int(yb - r)), top, frame, thick)
    bar = max(1, int(h / 10))
    cv2.line(
        img,
        (int(x0 + w * 0.3), int(yb - 0.95 * h)),
        (int(x0 + w * 0.7), int(yb - 0.95 * h)),
        (20, 20, 20),
        bar,
    )
    if motor:
        body = np.array(
            [
                [x0 + 0.25 * w, yb - 0.95 * h],
                [x0 + 0.8 * w, yb - h],
                [x0 + 0.75 * w, yb - 0.45 * h],
                [x0 + 0.3 * w, yb - 0.45 * h],
            ]
        )
        _fillpoly(img, body, frame)


def _vehicle_poly(kind: str, x0: float, x1: float, yb: float, h: float) -> np.ndarray:
    w = x1 - x0
    if kind == "car":
        return np.array(
            [
                [x0, yb - 0.15 * h],
                [x0, yb - 0.6 * h],
                [x0 + 0.2 * w, yb - h],
                [x1 - 0.2 * w, yb - h],
                [x1, yb - 0.6 * h],
                [x1, yb - 0.15 * h],
                [x1 - 0.1 * w, yb],
                [x0 + 0.1 * w, yb],
            ]
        )
    return np.array([[x0, yb - 0.92 * h], [x0 + 0.06 * w, yb - h], [x1, yb - h], [x1, yb], [x0, yb]])


def _draw_vehicle(
    img: np.ndarray, rng: np.random.Generator, kind: str, x0: float, x1: float, yb: float, h: float
) -> None:
    w = x1 - x0
    if kind == "car":
        body = rng.choice(
            [[200, 200, 205], [30, 30, 35], [150, 30, 30], [40, 60, 140], [120, 120, 125], [190, 170, 60]]
        )
        _fillpoly(img, _vehicle_poly(kind, x0, x1, yb, h), [float(v) for v in body + rng.normal(0, 8, 3)])
        win = np.array(
            [
                [x0 + 0.24 * w, yb - 0.92 * h],
                [x1 - 0.24 * w, yb - 0.92 * h],
                [x1 - 0.1 * w, yb - 0.62 * h],
                [x0 + 0.1 * w, yb - 0.62 * h],
            ]
        )
        _fillpoly(img, win, (45, 55, 70))
        _wheel(img, x0 + 0.2 * w, yb - 0.12 * h, 0.14 * h)
        _wheel(img, x1 - 0.2 * w, yb - 0.12 * h, 0.14 * h)
        cv2.rectangle(
            img, (int(x0), int(yb - 0.5 * h)), (int(x0 + 0.06 * w) + 1, int(yb - 0.4 * h)), (210, 30, 30), -1
        )
    elif kind == "truck":
        cargo = np.array([215, 215, 210]) + rng.normal(0, 8, 3)
        _fillpoly(img, _vehicle_poly(kind, x0, x1, yb, h), [float(v) for v in cargo])
        cab = rng.choice([[160, 40, 40], [40, 70, 150], [60, 120, 60]])
        cx0 = x0 if rng.random() < 0.5 else x1 - 0.3 * w
        cv2.rectangle(
            img,
            (int(cx0), int(yb - 0.6 * h)),
            (int(cx0 + 0.3 * w), int(yb - 0.1 * h)),
            [float(v) for v in cab],
            -1,
        )
        cv2.rectangle(
            img,
            (int(cx0 + 0.05 * w), int(yb - 0.55 * h)),
            (int(cx0 + 0.25 * w), int(yb - 0.38 * h)),
            (40, 50, 60),
            -1,
        )
        for fx in (0.18, 0.55, 0.82):
            _wheel(img, x0 + fx * w, yb - 0.09 * h, 0.1 * h)
    else:  # bus
        body = rng.choice([[230, 190, 40], [200, 40, 40], [235, 235, 235], [40, 90, 170]])
        _fillpoly(img, _vehicle_poly(kind, x0, x1, yb, h), [float(v) for v in body + rng.normal(0, 6, 3)])
        n_win = max(2, int(w / max(3.0, 0.35 * h)))
        for i in range(n_win):
            wx0 = x0 + (i + 0.15) * w / n_win
            wx1 = x0 + (i + 0.85) * w / n_win
            cv2.rectangle(
                img, (int(wx0), int(yb - 0.85 * h)), (int(wx1), int(yb - 0.55 * h)), (40, 50, 65), -1
            )
        _wheel(img, x0 + 0.15 * w, yb - 0.08 * h, 0.09 * h)
        _wheel(img, x1 - 0.15 * w, yb - 0.08 * h, 0.09 * h)


@dataclass
class Obj:
    label: str
    polygon: np.ndarray  # (K, 2) float
    depth: float
    draw: object  # callable(img) drawing the object's pixels


def _place(rng: np.random.Generator, street: Street, kind: str) -> list[Obj]:
    """One traffic participant (a rider yields two objects: the rider and the bike)."""
    hz = street.horizon
    base_kind = {"rider": "bicycle", "moto": "motorcycle"}.get(kind, kind)
    factor = HEIGHT_FACTOR[base_kind]
    # contact row: far objects are more frequent; keep the object's top inside the frame
    near = min(0.8 * (HEIGHT - hz), 0.75 * HEIGHT / factor)
    max_rel = min(near, (hz + 2) / max(factor - 1.0, 1e-3)) if factor > 1 else near
    min_rel = 14.0 if base_kind in ("bicycle", "motorcycle") else 11.0
    rel = float(np.exp(rng.uniform(np.log(min_rel), np.log(max(min_rel + 1, max_rel)))))
    yb = hz + rel
    h = factor * rel
    d = DEPTH_K / rel
    on_road = kind in ("car", "truck", "bus", "moto") or (kind == "rider" and rng.random() < 0.5)
    half = street.road_half if on_road else street.walk_half
    frac = rel / (HEIGHT - hz)
    if on_road:
        cx = street.vx + rng.uniform(-0.85, 0.85) * half * frac
    else:
        side = 1 if rng.random() < 0.5 else -1
        lo = street.road_half * frac
        cx = street.vx + side * rng.uniform(lo, max(lo + 1, half * frac))
    objs: list[Obj] = []
    if kind in ("car", "truck", "bus"):
        ratio = {"car": (1.1, 2.0), "truck": (0.8, 1.4), "bus": (1.4, 2.6)}[kind]
        w = h * rng.uniform(*ratio)
        x0, x1 = cx - w / 2, cx + w / 2
        sub = np.random.default_rng(rng.integers(1 << 62))
        objs.append(
            Obj(
                kind,
                _vehicle_poly(kind, x0, x1, yb, h),
                d,
                lambda img: _draw_vehicle(img, sub, kind, x0, x1, yb, h),
            )
        )
    elif kind == "person":
        w = 0.4 * h * rng.uniform(0.85, 1.15)
        sub = np.random.default_rng(rng.integers(1 << 62))
        objs.append(
            Obj("person", _person_poly(cx, yb, h, w), d, lambda img: _draw_person(img, sub, cx, yb, h, w))
        )
    else:  # bicycle (parked), rider on a bicycle or a motorcycle
        motor = base_kind == "motorcycle"
        w = h * rng.uniform(0.5, 1.7)  # seen from behind (narrow) to from the side
        x0 = cx - w / 2
        bike_poly = np.array([[x0, yb - h], [x0 + w, yb - h], [x0 + w, yb], [x0, yb]])
        objs.append(Obj(base_kind, bike_poly, d, lambda img: _draw_bike(img, x0, yb, h, w, motor)))
        if kind in ("rider", "moto"):
            ph = HEIGHT_FACTOR["person"] * rel * 0.8  # seated
            pw = 0.42 * ph
            pyb = yb - 0.45 * h
            pcx = cx
            sub = np.random.default_rng(rng.integers(1 << 62))
            objs.append(
                Obj(
                    "rider",
                    _person_poly(pcx, pyb + 0.25 * ph, ph * 1.0, pw),
                    d - 0.01,
                    lambda img: _draw_person(img, sub, pcx, pyb + 0.25 * ph, ph, pw, helmet=True),
                )
            )
    return objs


def _crowd(rng: np.random.Generator, street: Street) -> Obj:
    """A distant group of small persons (annotated as one ``persongroup`` polygon)."""
    hz = street.horizon
    rel = float(rng.uniform(6, 11))
    yb = hz + rel
    frac = rel / (HEIGHT - hz)
    side = 1 if rng.random() < 0.5 else -1
    cx = street.vx + side * street.road_half * frac * rng.uniform(1.05, 1.4)
    n = int(rng.integers(4, 8))
    h = HEIGHT_FACTOR["person"] * rel
    xs = cx + np.sort(rng.uniform(-0.9, 0.9, n)) * h
    sub = np.random.default_rng(rng.integers(1 << 62))

    def draw(img: np.ndarray) -> None:
        for x in xs:
            _draw_person(img, sub, float(x), yb + sub.uniform(-1, 1), h, 0.4 * h)

    poly = np.array(
        [
            [xs.min() - 0.25 * h, yb - h - 1],
            [xs.max() + 0.25 * h, yb - h - 1],
            [xs.max() + 0.25 * h, yb + 1],
            [xs.min() - 0.25 * h, yb + 1],
        ]
    )
    return Obj("persongroup", poly, DEPTH_K / rel, draw)


def _max_cover(a: np.ndarray, b: np.ndarray) -> float:
    """Largest intersection over the smaller box's area between boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return float((inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-6)).max())


def render_frame(rng: np.random.Generator, street: Street):
    """One frame: clear image (uint8), depth (float32), instance ids (uint16), polygon objects."""
    img, depth, stuff = render_background(street)
    n = int(rng.integers(3, 11))
    kinds = list(KINDS)
    p = np.array(list(KINDS.values()))
    objs: list[Obj] = []
    boxes: list[np.ndarray] = []
    for _ in range(n * 3):  # placements hidden behind earlier ones are redrawn elsewhere
        if len(objs) >= n:
            break
        new = _place(rng, street, kinds[rng.choice(len(kinds), p=p / p.sum())])
        b = np.array([[*o.polygon.min(0), *o.polygon.max(0)] for o in new])
        if boxes and _max_cover(b, np.array(boxes)) > 0.35:
            continue
        objs.extend(new)
        boxes.extend(b)
    if rng.random() < 0.3:
        objs.append(_crowd(rng, street))
    objs.sort(key=lambda o: -o.depth)  # far to near: near objects are drawn last and occlude
    inst = np.zeros((HEIGHT, WIDTH), np.uint16)
    for name, poly in stuff:
        _fillpoly(inst, poly, LABEL_IDS[name])
    counters: dict[str, int] = {}
    out_objects = [{"label": name, "polygon": _int_poly(poly)} for name, poly in stuff]
    for o in objs:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        _fillpoly(mask, o.polygon, 1)
        if o.label.endswith("group"):
            value = LABEL_IDS[o.label[: -len("group")]]
        else:
            k = counters.get(o.label, 0)
            counters[o.label] = k + 1
            value = LABEL_IDS[o.label] * 1000 + k
        o.draw(img)  # type: ignore[operator]
        inst[mask > 0] = value
        depth[mask > 0] = o.depth
        out_objects.append({"label": o.label, "polygon": _int_poly(o.polygon)})
    img = cv2.GaussianBlur(img, (3, 3), 0.5)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255), depth, inst, out_objects


def _int_poly(poly: np.ndarray) -> list[list[int]]:
    return [[int(round(x)), int(round(y))] for x, y in poly]


def add_fog(clear: np.ndarray, depth: np.ndarray, beta: float, airlight: np.ndarray) -> np.ndarray:
    """The standard optical model: ``I = J * t + A * (1 - t)``, ``t = exp(-beta * depth)``."""
    t = np.exp(-beta * depth.astype(np.float64))[:, :, None]
    out = clear.astype(np.float64) * t + airlight[None, None, :] * (1.0 - t)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@register_synthetic("foggy_cityscapes")
def write_dataset(root: Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
    """Write the synthetic Foggy Cityscapes tree under ``root`` (atomically: a temp folder renamed)."""
    if size not in PRESETS:
        raise SpecError(f"synthetic foggy_cityscapes size must be one of {', '.join(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    root = Path(root)
    with atomic_tree(root, "foggy_cityscapes") as tmp:
        rng = np.random.default_rng([seed, 0xF066])
        bar = tqdm(
            total=preset.n_train + preset.n_val,
            desc=f"synthesizing foggy_cityscapes ({size})",
            disable=not progress,
            unit="img",
            leave=False,
        )
        for split, n, cities in (("train", preset.n_train, TRAIN_CITIES), ("val", preset.n_val, VAL_CITIES)):
            street = None
            for i in range(n):
                seq, frame_k = divmod(i, preset.frames_per_seq)
                city = cities[seq % len(cities)]
                if frame_k == 0:
                    street = make_street(rng)
                assert street is not None
                fid = f"{city}_{seq:06d}_{19 + 30 * frame_k:06d}"
                clear, depth, inst, objects = render_frame(rng, street)
                clear_u8 = clear.astype(np.uint8)
                dirs = {k: tmp / k / split / city for k in ("leftImg8bit", "leftImg8bit_foggy", "gtFine")}
                for d in dirs.values():
                    d.mkdir(parents=True, exist_ok=True)
                _write_png(dirs["leftImg8bit"] / f"{fid}_leftImg8bit.png", clear_u8)
                for beta in BETAS:
                    _write_png(
                        dirs["leftImg8bit_foggy"] / f"{fid}_leftImg8bit_foggy_beta_{beta}.png",
                        add_fog(clear, depth, beta, street.airlight),
                    )
                cv2.imwrite(str(dirs["gtFine"] / f"{fid}_gtFine_instanceIds.png"), inst)
                ann = {"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects}
                (dirs["gtFine"] / f"{fid}_gtFine_polygons.json").write_text(json.dumps(ann, indent=1) + "\n")
                bar.update()
        bar.close()
    return root
