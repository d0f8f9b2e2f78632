"""The pretraining corpus: generic shapes on textured backgrounds, disjoint from every domain's data.

The shared pretrained start (``labelbudget pretrain``, ``benchmark.pretrain``) is the CPU-scale
counterpart of an ImageNet backbone: it must teach generic low-level features (edges, blobs,
textures, small and dense objects, low contrast, speckle and haze) without ever showing the detector
an image, an object class or a generator of a benchmark domain. This module is its own scene family,
written for this purpose only; it imports nothing from ``domains.synthetic``, and the images of a
domain's pool, test and source splits are never drawn by it.

What one image holds (128 x 128 px, RGB; a fifth of them grey, like sonar):
    * a background from one of four families: multi-scale value noise in a random two- or
      three-colour palette, oriented stripes or a grid (sinusoids with noise), smooth gradients with
      blotches, or a "tiled" field of random rectangles (a cell layout); random straight bands;
    * 1-28 objects of ten generic shape classes (``CLASSES``: disc, ring, rectangle, triangle,
      cross, star, crescent, arrow, L-shape, hexagon), each at a random angle, 5-72 px on its long
      side (log-uniform: most are small; crowded images hold small objects), a random aspect ratio
      for elongated classes, a flat, shaded or noisy fill whose contrast to the background is drawn
      (sometimes low), an optional outline and drop shadow. Later objects occlude earlier ones; an
      object with less than 25 % of its pixels visible becomes an ignore region (never a positive);
    * unlabelled clutter: irregular blobs, thin lines and dots (negatives that resemble objects);
    * corruptions, each with its own probability: haze (``I = J t + A (1 - t)``, transmittance from
      a vertical or smooth random depth field), multiplicative speckle (Gamma(L, 1/L) intensity,
      L in 1-5), Gaussian blur, additive sensor noise, a dusk-like darkening with a warm tint, and
      a contrast change.

Boxes are the horizontal extents of each object's whole shape (amodal, as annotators draw them).
Image ``i`` of corpus seed ``s`` is drawn by its own ``numpy.random.Generator`` seeded with
``seed_hash("pretrain-corpus", CORPUS_VERSION, s, i)``: a seed namespace that no domain generator
and no protocol stream uses (domains seed their generators with the bare integer dataset seed; the
protocol's streams are ``seed_hash(seed, purpose, ...)`` with an integer first part), so every image
is reproducible on its own, in any order. ``tests/benchmark/test_pretrain.py`` checks that no corpus
image equals an image of any domain's splits.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from benchmark.spec import seed_hash

CORPUS_VERSION = 1
NAMESPACE = "pretrain-corpus"
IMAGE_SIZE = 128
CLASSES = (
    "disc",
    "ring",
    "rectangle",
    "triangle",
    "cross",
    "star",
    "crescent",
    "arrow",
    "l_shape",
    "hexagon",
)
ELONGATED = {"rectangle", "triangle", "cross", "arrow", "l_shape"}  # aspect ratio drawn, not ~1
IGNORE_BELOW = 0.25  # visible share under which an occluded object becomes an ignore region


@dataclass(frozen=True)
class CorpusSpec:
    """What a corpus is: enough to regenerate it exactly (recorded in the checkpoint's sidecar)."""

    seed: int = 0
    n_images: int = 2000
    image_size: int = IMAGE_SIZE
    version: int = CORPUS_VERSION
    namespace: str = NAMESPACE

    def to_dict(self) -> dict:
        return {**asdict(self), "classes": list(CLASSES), "generator": __name__}


@dataclass
class CorpusImage:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy
    labels: np.ndarray  # (N,) int64
    ignore: np.ndarray  # (N,) bool


def image_seed(seed: int, index: int) -> int:
    """The seed of corpus image ``index`` (see the module docstring)."""
    return seed_hash(NAMESPACE, CORPUS_VERSION, int(seed), int(index))


# ----------------------------------------------------------------------------------------- pieces


def _noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    g = max(2, int(size / cell) + 2)
    grid = rng.standard_normal((g, g)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    base = rng.uniform(20, 235, 3)
    return np.clip(base + rng.normal(0, 45, (k, 3)), 0, 255).astype(np.float32)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    if kind == 0:  # multi-scale value noise in a palette
        pal = _palette(rng, 3)
        t = 0.6 * _noise(rng, s, rng.uniform(24, 64)) + 0.3 * _noise(rng, s, rng.uniform(6, 16))
        t = 1 / (1 + np.exp(-1.5 * t))
        u = 1 / (1 + np.exp(-1.5 * _noise(rng, s, rng.uniform(16, 48))))
        img = (pal[0] * (1 - t)[..., None] + pal[1] * t[..., None]) * (1 - 0.4 * u)[..., None]
        img += pal[2] * (0.4 * u)[..., None]
    elif kind == 1:  # stripes or a grid
        pal = _palette(rng, 2)
        ang = rng.uniform(0, math.pi)
        f = rng.uniform(0.05, 0.5)
        w = np.sin(f * (xx * math.cos(ang) + yy * math.sin(ang)) + rng.uniform(0, 6.3))
        if rng.random() < 0.4:
            w = 0.5 * (w + np.sin(f * (-xx * math.sin(ang) + yy * math.cos(ang))))
        t = (0.5 + 0.5 * w * rng.uniform(0.2, 1.0))[..., None]
        img = pal[0] * (1 - t) + pal[1] * t
    elif kind == 2:  # a gradient with blotches
        pal = _palette(rng, 2)
        ang = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(ang) + yy * math.sin(ang)) / s
        t = ((t - t.min()) / max(1e-6, float(np.ptp(t))))[..., None]
        img = pal[0] * (1 - t) + pal[1] * t
        img *= (1 + 0.15 * _noise(rng, s, rng.uniform(8, 32)))[..., None]
    else:  # a cell layout: random rectangles (plots, tiles, roofs)
        pal = _palette(rng, 4)
        img = np.empty((s, s, 3), np.float32)
        img[:] = pal[0]
        for _ in range(int(rng.integers(4, 16))):
            x0, y0 = rng.integers(0, s, 2)
            w, h = rng.integers(10, 60, 2)
            img[y0 : y0 + h, x0 : x0 + w] = pal[int(rng.integers(1, 4))] + rng.normal(0, 8, 3)
    img += rng.normal(0, rng.uniform(1, 8), (s, s, 1)).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):  # straight bands (roads, seams, rails)
        ang = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0, s, 2)
        dx, dy = math.cos(ang) * 2 * s, math.sin(ang) * 2 * s
        shade = tuple(float(v) for v in rng.uniform(30, 220, 3))
        p1, p2 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
        cv2.line(img, p1, p2, shade, int(rng.integers(2, 9)), cv2.LINE_AA)
    return img


def _shape_polys(name: str, length: float, width: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Polygons (in the object's frame, centred at 0, long side along x) to fill, and to cut out."""
    hl, hw = length / 2, width / 2

    def ellipse(ax: float, ay: float, cx: float = 0.0, n: int = 28) -> np.ndarray:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return np.stack([cx + ax * np.cos(t), ay * np.sin(t)], 1)

    if name == "disc":
        return [ellipse(hl, hw)], []
    if name == "ring":
        return [ellipse(hl, hw)], [ellipse(hl * 0.55, hw * 0.55)]
    if name == "rectangle":
        return [np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])], []
    if name == "triangle":
        return [np.array([[-hl, -hw], [hl, 0.0], [-hl, hw]])], []
    if name == "cross":
        a, b = hl, max(hw * 0.35, 1.0)
        c = hw
        return [
            np.array([[-a, -b], [a, -b], [a, b], [-a, b]]),
            np.array([[-b, -c], [b, -c], [b, c], [-b, c]]),
        ], []
    if name == "star":
        t = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return [np.stack([hl * r * np.cos(t), hw * r * np.sin(t)], 1)], []
    if name == "crescent":
        return [ellipse(hl, hw)], [ellipse(hl * 0.85, hw * 0.85, cx=hl * 0.45)]
    if name == "arrow":
        return [
            np.array(
                [
                    [-hl, -hw * 0.3],
                    [hl * 0.2, -hw * 0.3],
                    [hl * 0.2, -hw],
                    [hl, 0.0],
                    [hl * 0.2, hw],
                    [hl * 0.2, hw * 0.3],
                    [-hl, hw * 0.3],
                ]
            )
        ], []
    if name == "l_shape":
        t = max(hw * 0.8, 1.0)
        return [
            np.array([[-hl, -hw], [hl, -hw], [hl, -hw + t], [-hl + t, -hw + t], [-hl + t, hw], [-hl, hw]])
        ], []
    if name == "hexagon":
        t = np.linspace(0, 2 * math.pi, 6, endpoint=False)
        return [np.stack([hl * np.cos(t), hw * np.sin(t)], 1)], []
    raise ValueError(f"unknown shape {name!r}")


def _place(polys: list[np.ndarray], cx: float, cy: float, ang: float) -> list[np.ndarray]:
    c, s = math.cos(ang), math.sin(ang)
    r = np.array([[c, -s], [s, c]])
    return [p @ r.T + np.array([cx, cy]) for p in polys]


def _mask(s: int, fill: list[np.ndarray], cut: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage (0..1, float32) of the filled polygons minus the cut-outs (subpixel
    precision: cv2's fixed-point ``shift``)."""
    m = np.zeros((s, s), np.uint8)
    k = 16
    cv2.fillPoly(m, [np.round(p * k).astype(np.int32) for p in fill], 255, cv2.LINE_AA, shift=4)
    if cut:
        cv2.fillPoly(m, [np.round(p * k).astype(np.int32) for p in cut], 0, cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


def _object_texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """An (h, w, 3) fill: flat, shaded (a linear gradient) or noisy."""
    kind = int(rng.integers(3))
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = colour
    if kind == 1:
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = ((xx * math.cos(ang) + yy * math.sin(ang)) / max(h, w, 1) - 0.5) * rng.uniform(20, 80)
        tex += g[..., None]
    elif kind == 2:
        n = _noise(rng, max(h, w), rng.uniform(2, 6))[:h, :w]
        tex += (rng.uniform(8, 30) * n)[..., None]
    return tex


def _corrupt(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    if rng.random() < 0.3:  # haze: I = J t + A (1 - t)
        if rng.random() < 0.5:
            d = np.linspace(1.0, 0.0, s, dtype=np.float32)[:, None] * np.ones((1, s), np.float32)
        else:
            d = 0.5 + 0.25 * _noise(rng, s, rng.uniform(32, 96))
        t = np.exp(-rng.uniform(0.5, 2.5) * np.clip(d, 0, None))[..., None]
        airlight = rng.uniform(150, 235) + rng.normal(0, 6, 3)
        img = img * t + airlight * (1 - t)
    if rng.random() < 0.25:  # multiplicative speckle: L-look intensity
        looks = int(rng.integers(1, 6))
        sp = rng.gamma(looks, 1.0 / looks, (s, s, 1)).astype(np.float32)
        img = img * (0.5 + 0.5 * sp)
    if rng.random() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.4)))
    if rng.random() < 0.2:  # dusk: darker, warmer
        img = img * rng.uniform(0.35, 0.7) * np.array([1.08, 1.0, 0.85], np.float32)
    if rng.random() < 0.3:  # contrast change around the mean
        m = img.mean()
        img = m + (img - m) * rng.uniform(0.5, 1.3)
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(1, 10), img.shape).astype(np.float32)
    return img


# ------------------------------------------------------------------------------------------ images


def render(seed: int, index: int, size: int = IMAGE_SIZE) -> CorpusImage:
    """Corpus image ``index`` of corpus seed ``seed`` (the module docstring says what it holds)."""
    rng = np.random.default_rng(image_seed(seed, index))
    s = int(size)
    img = _background(rng, s)
    crowd = rng.random()
    n = int(
        rng.integers(1, 7) if crowd < 0.4 else rng.integers(6, 16) if crowd < 0.8 else rng.integers(15, 29)
    )
    max_len = 72.0 if n < 8 else 40.0 if n < 16 else 24.0
    owner = np.full((s, s), -1, np.int32)
    areas, boxes, labels = [], [], []
    clutter_left = int(rng.integers(0, 6))
    for k in range(n + clutter_left):
        is_clutter = k >= n
        if is_clutter:  # irregular blob, thin line or dot: not an object
            kind = int(rng.integers(3))
            cx, cy = rng.uniform(0, s, 2)
            if kind == 0:
                t = np.linspace(0, 2 * math.pi, 14, endpoint=False)
                r = rng.uniform(3, 14) * (1 + 0.45 * rng.standard_normal(14)).clip(0.3, 2.0)
                fill, cut = [np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)], []
            elif kind == 1:
                ang = rng.uniform(0, math.pi)
                ln, th = rng.uniform(15, 60), rng.uniform(0.8, 2.0)
                fill, cut = _place([np.array([[-ln, -th], [ln, -th], [ln, th], [-ln, th]])], cx, cy, ang), []
            else:
                r = rng.uniform(1.0, 3.0)
                t = np.linspace(0, 2 * math.pi, 12, endpoint=False)
                fill, cut = [np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)], []
            cls = -1
        else:
            cls = int(rng.integers(len(CLASSES)))
            length = float(np.exp(rng.uniform(math.log(5.0), math.log(max_len))))
            aspect = rng.uniform(0.3, 0.75) if CLASSES[cls] in ELONGATED else rng.uniform(0.8, 1.0)
            width = max(3.0, length * aspect)
            cx, cy = rng.uniform(-0.05 * s, 1.05 * s, 2)
            ang = rng.uniform(0, 2 * math.pi)
            polys, holes = _shape_polys(CLASSES[cls], length, width)
            fill, cut = _place(polys, cx, cy, ang), _place(holes, cx, cy, ang)
        a = _mask(s, fill, cut)
        if not is_clutter and rng.random() < 0.25:  # drop shadow (aerial sun, sonar shadow)
            off = rng.uniform(1, 4, 2) * rng.choice([-1, 1], 2)
            sh = np.roll(a, (int(off[1]), int(off[0])), (0, 1))
            img = img * (1 - 0.5 * sh[..., None])
        bg_mean = img[a > 0.5].mean(0) if (a > 0.5).any() else img.mean((0, 1))
        contrast = rng.uniform(15, 110) if rng.random() < 0.8 else rng.uniform(5, 15)
        colour = np.clip(bg_mean + contrast * rng.choice([-1, 1]) * _unit(rng), 0, 255)
        ys, xs = np.nonzero(a > 0)
        if len(xs):  # blend inside the coverage's bounding box only
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            tex = _object_texture(rng, int(y1 - y0), int(x1 - x0), colour)
            aa = a[y0:y1, x0:x1, None]
            img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - aa) + tex * aa
        if not is_clutter and rng.random() < 0.3:  # outline
            edge = cv2.morphologyEx((a > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
            shade = np.clip(colour * rng.uniform(0.3, 0.7), 0, 255)
            img[edge > 0] = shade
        inside = a > 0.5
        owner[inside] = len(labels) if not is_clutter else -2
        if is_clutter:
            continue
        ys, xs = np.nonzero(a > 0.02)
        if len(xs) == 0:
            owner[inside] = -1
            continue
        boxes.append([xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0])
        labels.append(cls)
        areas.append(max(1, int(inside.sum())))
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(labels))[: len(labels)]
    ignore = np.array([v / a < IGNORE_BELOW for v, a in zip(visible, areas, strict=True)], bool)
    if rng.random() < 0.2:  # grey images (sonar-like)
        img = np.repeat(img.mean(2, keepdims=True), 3, 2)
    img = _corrupt(rng, img)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return CorpusImage(out, b, np.asarray(labels, np.int64), ignore)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = np.abs(rng.normal(0, 1, 3)) + 0.3
    return (v / np.linalg.norm(v) * math.sqrt(3)).astype(np.float32)


def corpus(spec: CorpusSpec, start: int = 0, stop: int | None = None) -> list[CorpusImage]:
    """Images ``start..stop`` (default: all ``spec.n_images``) of a corpus."""
    stop = spec.n_images if stop is None else stop
    if spec.version != CORPUS_VERSION or spec.namespace != NAMESPACE:
        raise ValueError(f"this code draws corpus version {CORPUS_VERSION} ({NAMESPACE}), not {spec}")
    return [render(spec.seed, i, spec.image_size) for i in range(start, stop)]


def corpus_sha256(images: list[CorpusImage]) -> str:
    """One hash of a corpus's pixels and annotations (recorded beside the checkpoint)."""
    h = hashlib.sha256()
    for im in images:
        for arr in (im.image, im.boxes, im.labels, im.ignore):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
