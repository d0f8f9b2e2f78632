"""Synthetic pedestrians: CCTV-like views of a plaza, written in the CityPersons format.

What it draws (fixed difficulty, not tuned to any method):
    * a 160 x 128 px view from an elevated camera: paving with tile joints, a road band with lane
      marks, a building wall with windows and posters along the top, benches;
    * 2-9 walking pedestrians per frame (the only positives), whose pixel height follows the ground
      plane: about 22 px with their feet at the far edge, about 95 px at the bottom edge, width 0.41 x
      height (CityPersons' aspect ratio). They are drawn far to near, so near people and cars
      occlude far people; the visible box (``bboxVis``) is the extent of each person's visible
      pixels;
    * ignore regions, as CityPersons labels them: riders on bicycles (``rider``), people on benches
      (``sitting person``), distant crowds annotated as one box (``person group``) and person-like
      figures on posters (``ignore``);
    * a source/target shift by illumination: train frames are mostly in daylight (80 %), val frames
      all at dusk (darker, warmer, lower contrast, more sensor noise, lit street lamps).

It writes ``leftImg8bit/{split}/{city}/<frame>_leftImg8bit.png`` and
``gtBboxCityPersons/{split}/{city}/<frame>_gtBboxCityPersons.json`` (``imgHeight``, ``imgWidth``,
``objects[{instanceId, label, bbox, bboxVis}]``, boxes ``[x, y, w, h]``), frame ids
``{city}_{seq:06d}_{frame:06d}``: frames of one sequence share their camera (background); cities
differ between train and val. Everything comes from one ``numpy.random.Generator`` seeded by
``seed``: a seed always gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from domains.base import SpecError, register_synthetic
from domains.synthetic.cache import atomic_tree

WIDTH, HEIGHT = 160, 128
FAR_Y, NEAR_Y = 34.0, 128.0  # feet rows of the farthest and nearest walkers
FAR_H, NEAR_H = 22.0, 95.0  # their heights
ASPECT = 0.41
TRAIN_DUSK_SHARE = 0.2  # a CCTV camera records at all hours: some train frames are at dusk too
TRAIN_CITIES = ("bochum", "hamburg", "jena", "ulm", "weimar")
VAL_CITIES = ("frankfurt", "munster")


@dataclass(frozen=True)
class SizePreset:
    n_train: int
    n_val: int
    frames_per_seq: int


PRESETS = {
    "tiny": SizePreset(24, 12, 4),
    "small": SizePreset(600, 200, 4),
    "medium": SizePreset(2000, 500, 4),
}


def height_at(y: float) -> float:
    """Pixel height of a standing person whose feet are on row ``y``."""
    return FAR_H + (y - FAR_Y) * (NEAR_H - FAR_H) / (NEAR_Y - FAR_Y)


@dataclass
class Camera:
    """The static part of a sequence."""

    wall_bottom: int
    road: tuple[int, int]
    paving: np.ndarray
    wall: np.ndarray
    posters: list[tuple[int, int, int, int]]  # x, y, w, h
    benches: list[tuple[int, int, int]]  # x, y (seat row), width
    lamps: list[tuple[int, int]]


def make_camera(rng: np.random.Generator) -> Camera:
    wall_bottom = int(rng.integers(20, 30))
    r0 = int(rng.integers(60, 90))
    posters = []
    for _ in range(int(rng.integers(0, 3))):
        pw = int(rng.integers(9, 14))
        posters.append(
            (int(rng.integers(2, WIDTH - pw - 2)), int(rng.integers(1, max(2, wall_bottom - 20))), pw, 18)
        )
    benches = [
        (int(rng.integers(5, WIDTH - 35)), int(rng.integers(40, 58)), int(rng.integers(22, 32)))
        for _ in range(int(rng.integers(0, 2)))
    ]
    lamps = [(int(rng.integers(5, WIDTH - 5)), wall_bottom + int(rng.integers(2, 10))) for _ in range(2)]
    return Camera(
        wall_bottom=wall_bottom,
        road=(r0, r0 + int(rng.integers(18, 26))),
        paving=np.array([150, 145, 135]) + rng.normal(0, 10, 3),
        wall=rng.choice([[170, 150, 130], [130, 130, 140], [180, 175, 160], [120, 100, 90]])
        + rng.normal(0, 8, 3),
        posters=posters,
        benches=benches,
        lamps=lamps,
    )


def _background(cam: Camera, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((HEIGHT, WIDTH, 3), np.float32)
    img[:] = cam.paving
    for y in range(cam.wall_bottom, HEIGHT, 7):
        img[y, :] *= 0.85
    for x in range(0, WIDTH, 9):
        img[cam.wall_bottom :, x] *= 0.88
    r0, r1 = cam.road
    img[r0:r1] = [85, 85, 88]
    img[(r0 + r1) // 2, ::6] = 220
    img[: cam.wall_bottom] = cam.wall
    for wy in range(2, cam.wall_bottom - 5, 8):
        for wx in range(3, WIDTH - 4, 10):
            img[wy : wy + 5, wx : wx + 5] = cam.wall * 0.5
    for x, y, w, h in cam.posters:
        img[y : y + h, x : x + w] = [235, 230, 215]
    for x, y, w in cam.benches:
        cv2.rectangle(img, (x, y), (x + w, y + 3), (110, 75, 45), -1)
        cv2.rectangle(img, (x, y - 6), (x + w, y - 4), (110, 75, 45), -1)
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return img


def _silhouette(cx: float, yf: float, h: float, stride: float) -> list[np.ndarray]:
    """Polygons of a standing/walking person (legs apart by ``stride``): head, torso, two legs."""
    w = ASPECT * h
    head = np.array(
        [
            [cx - 0.13 * w, yf - h],
            [cx + 0.13 * w, yf - h],
            [cx + 0.15 * w, yf - 0.86 * h],
            [cx - 0.15 * w, yf - 0.86 * h],
        ]
    )
    torso = np.array(
        [
            [cx - 0.42 * w, yf - 0.85 * h],
            [cx + 0.42 * w, yf - 0.85 * h],
            [cx + 0.36 * w, yf - 0.47 * h],
            [cx - 0.36 * w, yf - 0.47 * h],
        ]
    )
    s = stride * w
    leg_l = np.array(
        [
            [cx - 0.3 * w, yf - 0.48 * h],
            [cx, yf - 0.48 * h],
            [cx - 0.5 * s + 0.12 * w, yf],
            [cx - 0.5 * s - 0.18 * w, yf],
        ]
    )
    leg_r = np.array(
        [
            [cx, yf - 0.48 * h],
            [cx + 0.3 * w, yf - 0.48 * h],
            [cx + 0.5 * s + 0.18 * w, yf],
            [cx + 0.5 * s - 0.12 * w, yf],
        ]
    )
    return [head, torso, leg_l, leg_r]


def _draw_polys(img: np.ndarray, polys: list[np.ndarray], colours: list) -> None:
    for p, c in zip(polys, colours, strict=True):
        cv2.fillPoly(img, [np.round(p * 8).astype(np.int32)], [float(v) for v in c], cv2.LINE_AA, shift=3)


def _mask_polys(mask: np.ndarray, polys: list[np.ndarray], value: int) -> None:
    for p in polys:
        cv2.fillPoly(mask, [np.round(p * 8).astype(np.int32)], value, cv2.LINE_8, shift=3)


def _person_colours(rng: np.random.Generator) -> list:
    skin = np.array([205, 165, 140]) * rng.uniform(0.6, 1.05)
    top = rng.choice(
        [
            [170, 40, 40],
            [40, 60, 150],
            [225, 225, 215],
            [40, 120, 60],
            [200, 150, 40],
            [35, 35, 35],
            [120, 60, 130],
        ]
    ) + rng.normal(0, 10, 3)
    legs = rng.choice([[40, 40, 70], [50, 50, 50], [110, 90, 70], [30, 30, 40]]) + rng.normal(0, 6, 3)
    return [skin, top, legs, legs * 0.92]


def render_frame(rng: np.random.Generator, cam: Camera, dusk: bool):
    """One frame: (uint8 image, CityPersons objects)."""
    img = _background(cam, rng)
    inst = np.zeros((HEIGHT, WIDTH), np.int32)
    items = []  # (feet row, kind, payload)
    for _ in range(int(rng.integers(2, 10))):
        yf = float(rng.uniform(FAR_Y, NEAR_Y - 1))
        h = height_at(yf) * rng.uniform(0.9, 1.1)
        cx = float(rng.uniform(0.3 * ASPECT * h, WIDTH - 0.3 * ASPECT * h))
        items.append((yf, "pedestrian", (cx, h)))
    if rng.random() < 0.35:  # a rider on a bicycle
        yf = float(rng.uniform(cam.road[0] + 4, cam.road[1] + 2))
        items.append((yf, "rider", (float(rng.uniform(15, WIDTH - 15)), height_at(yf))))
    if rng.random() < 0.3:  # a distant crowd
        items.append(
            (float(rng.uniform(FAR_Y, FAR_Y + 10)), "person group", (float(rng.uniform(20, WIDTH - 20)), 0.0))
        )
    for bx, by, bw in cam.benches:
        if rng.random() < 0.6:
            items.append(
                (by + 6.0, "sitting person", (bx + float(rng.uniform(5, bw - 5)), height_at(by + 6.0)))
            )
    if rng.random() < 0.5:  # a car on the road
        yf = float(cam.road[1] - 2)
        items.append((yf, "car", (float(rng.uniform(0, WIDTH)), height_at(yf))))
    items.sort(key=lambda t: t[0])  # far (small feet row) to near
    objects = []
    masks_of: dict[int, tuple[str, np.ndarray]] = {}
    next_id = 1
    # person-like figures on posters: ignore regions ("fake humans")
    for x, y, w, h in cam.posters:
        fh = h - 3
        polys = _silhouette(x + w / 2, y + h - 1.5, fh, 0.1)
        _draw_polys(img, polys, [[200, 160, 150], [60, 90, 160], [50, 50, 70], [50, 50, 70]])
        objects.append(
            ("ignore", np.array([x + w / 2 - ASPECT * fh / 2, y + h - 1.5 - fh, ASPECT * fh, fh]), None)
        )
    for yf, kind, payload in items:
        cx, h = payload
        if kind == "pedestrian":
            polys = _silhouette(cx, yf, h, float(rng.uniform(0.0, 0.9)))
            _draw_polys(img, polys, _person_colours(rng))
            _mask_polys(inst, polys, next_id)
            masks_of[next_id] = ("pedestrian", np.array([cx - ASPECT * h / 2, yf - h, ASPECT * h, h]))
            next_id += 1
        elif kind == "rider":
            bw = 0.75 * h
            for wx in (cx - bw * 0.33, cx + bw * 0.33):
                cv2.circle(
                    img,
                    (int(wx), int(yf - 0.17 * h)),
                    max(2, int(0.17 * h)),
                    (25, 25, 25),
                    max(1, int(h / 30)),
                )
            cv2.line(
                img, (int(cx - bw * 0.33), int(yf - 0.17 * h)), (int(cx), int(yf - 0.4 * h)), (30, 90, 170), 2
            )
            cv2.line(
                img, (int(cx + bw * 0.33), int(yf - 0.17 * h)), (int(cx), int(yf - 0.4 * h)), (30, 90, 170), 2
            )
            polys = _silhouette(cx, yf - 0.2 * h, 0.85 * h, 0.5)
            _draw_polys(img, polys, _person_colours(rng))
            _mask_polys(inst, polys, next_id)
            masks_of[next_id] = ("rider", np.array([cx - bw / 2, yf - 1.05 * h, bw, 1.05 * h]))
            next_id += 1
        elif kind == "sitting person":
            polys = _silhouette(cx, yf - 0.2 * h, 0.72 * h, 1.2)
            _draw_polys(img, polys, _person_colours(rng))
            _mask_polys(inst, polys, next_id)
            masks_of[next_id] = (
                "sitting person",
                np.array([cx - ASPECT * h / 2, yf - 0.92 * h, ASPECT * h, 0.72 * h]),
            )
            next_id += 1
        elif kind == "person group":
            n = int(rng.integers(4, 8))
            hh = height_at(yf)
            xs = cx + np.sort(rng.uniform(-0.8, 0.8, n)) * hh
            for x in xs:
                y = yf + float(rng.uniform(-2, 2))
                _draw_polys(
                    img, _silhouette(float(x), y, hh, float(rng.uniform(0, 0.6))), _person_colours(rng)
                )
            x0, x1 = xs.min() - ASPECT * hh / 2 - 1, xs.max() + ASPECT * hh / 2 + 1
            objects.append(("person group", np.array([x0, yf - hh - 3, x1 - x0, hh + 5]), None))
        else:  # car: an occluder, not annotated
            cw, ch = 1.3 * h, 0.6 * h
            colour = rng.choice([[200, 200, 205], [30, 30, 35], [150, 30, 30], [40, 60, 140]])
            cv2.rectangle(
                img,
                (int(cx - cw / 2), int(yf - ch)),
                (int(cx + cw / 2), int(yf)),
                [float(v) for v in colour],
                -1,
            )
            cv2.rectangle(
                img,
                (int(cx - cw / 3), int(yf - ch * 0.95)),
                (int(cx + cw / 3), int(yf - ch * 0.6)),
                (45, 55, 70),
                -1,
            )
            inst[
                max(0, int(yf - ch)) : max(0, int(yf) + 1),
                max(0, int(cx - cw / 2)) : max(0, int(cx + cw / 2) + 1),
            ] = -1
    # visible boxes from the instance map
    for iid, (label, box) in masks_of.items():
        ys, xs = np.nonzero(inst == iid)
        if len(xs) == 0:
            continue  # fully hidden: nothing to annotate
        vis = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], np.float64)
        objects.append((label, box, vis))
    img = cv2.GaussianBlur(img, (3, 3), 0.5)
    img = _illuminate(img, rng, cam, dusk)
    out = []
    for k, (label, box, vis) in enumerate(objects):
        b = _clip_xywh(box)
        if b is None:
            continue
        v = b if vis is None else (_clip_xywh(vis) or b)
        out.append({"instanceId": 24000 + k, "label": label, "bbox": b, "bboxVis": v})
    return img, out


def _clip_xywh(b: np.ndarray) -> list[int] | None:
    x0, y0 = max(0.0, float(b[0])), max(0.0, float(b[1]))
    x1, y1 = min(float(WIDTH), float(b[0] + b[2])), min(float(HEIGHT), float(b[1] + b[3]))
    x0i, y0i, x1i, y1i = int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))
    if x1i - x0i < 1 or y1i - y0i < 1:
        return None
    return [x0i, y0i, x1i - x0i, y1i - y0i]


def _illuminate(img: np.ndarray, rng: np.random.Generator, cam: Camera, dusk: bool) -> np.ndarray:
    if dusk:
        gain = rng.uniform(0.6, 0.75)
        tint = np.array([1.08, 0.97, 0.85])
        img = img * gain * tint + 6
        for lx, ly in cam.lamps:
            yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
            glow = np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * 12.0**2))
            img += glow[:, :, None] * np.array([70, 55, 25])
        noise = 4.5
    else:
        img = img * rng.uniform(0.85, 1.1)
        noise = 3.0
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@register_synthetic("pedestrian")
def write_dataset(root: Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
    """Write the synthetic CityPersons-format tree under ``root`` (atomically)."""
    if size not in PRESETS:
        raise SpecError(f"synthetic pedestrian size must be one of {', '.join(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    root = Path(root)
    with atomic_tree(root, "pedestrian") as tmp:
        rng = np.random.default_rng([seed, 0x9ED])
        bar = tqdm(
            total=preset.n_train + preset.n_val,
            desc=f"synthesizing pedestrian ({size})",
            disable=not progress,
            unit="img",
            leave=False,
        )
        for split, n, cities in (("train", preset.n_train, TRAIN_CITIES), ("val", preset.n_val, VAL_CITIES)):
            cam = None
            for i in range(n):
                seq, frame_k = divmod(i, preset.frames_per_seq)
                city = cities[seq % len(cities)]
                if frame_k == 0:
                    cam = make_camera(rng)
                assert cam is not None
                fid = f"{city}_{seq:06d}_{19 + 30 * frame_k:06d}"
                dusk = split == "val" or rng.random() < TRAIN_DUSK_SHARE
                img, objects = render_frame(rng, cam, dusk=dusk)
                d_img = tmp / "leftImg8bit" / split / city
                d_ann = tmp / "gtBboxCityPersons" / split / city
                d_img.mkdir(parents=True, exist_ok=True)
                d_ann.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d_img / f"{fid}_leftImg8bit.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                ann = {"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects}
                (d_ann / f"{fid}_gtBboxCityPersons.json").write_text(json.dumps(ann, indent=1) + "\n")
                bar.update()
        bar.close()
    return root
