"""Synthetic side-scan sonar: waterfall-like images in the Pascal VOC layout the sonar adapter reads.

What it draws (a physical caricature, fixed difficulty, not tuned to any method):
    * geometry of a side-scan waterfall: rows are pings (along track), columns are slant range, port
      to the left and starboard to the right of a dark water column at nadir (the first bottom return);
    * seabed backscatter: low- and mid-frequency texture (sand, mud, ripples) times a range-dependent
      gain (grazing-angle loss, partly compensated by a time-varied gain), times multiplicative
      speckle: the intensity of an L-look Rayleigh amplitude, i.e. Gamma(L, 1/L) power;
    * targets as a bright highlight followed, away from nadir, by an acoustic shadow whose length grows
      with range (``shadow = height * range / altitude``): ``ship`` (a long wreck hull, 26-44 px),
      ``aircraft`` (fuselage and wings, 16-28 px) and ``human`` (a small elongated body, 7-12 px) - the
      SCTD vocabulary. Highlights are only 1.5-2.6x the seabed level (small bodies 1.4x more: strong
      point returns) before speckle, so the SNR is low. The box covers highlight and shadow (what an
      annotator encloses); the saliency mask is the highlight;
    * look-alike clutter: bright stones and rock outcrops (irregular highlights with shadows);
    * two surveys for the domain shift: the source survey (``A``) is a cleaner, higher-frequency
      system (3-look speckle, finer texture, 8-bit JPEG); the target survey (``B``) is noisier
      (1-look speckle, additive noise, stronger gain roll-off, 16-bit PNG).

Layout written (``docs/protocol.md#dataset-layouts``): ``JPEGImages/<id>.jpg|png`` (grayscale),
``Annotations/<id>.xml`` (VOC: ``size``, ``object/name``, ``difficult``, ``bndbox`` with 1-based inclusive
pixel indices), ``masks/<id>.png`` (0/255), ``ImageSets/Main/{train,test,source}.txt``, ``classes.txt`` and
``groups.csv`` (``id,group``: the survey line; lines never straddle train and test). Every split holds one
image without targets. One ``numpy.random.Generator`` seeded by ``seed`` draws everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from domains.base import SpecError, register_synthetic
from domains.synthetic.cache import atomic_tree

CLASSES = ("ship", "aircraft", "human")
CLASS_P = np.array([0.45, 0.3, 0.25])
IMAGE_SIZE = 128  # square images: 128 pings x 128 range cells
LINE_LENGTH = 10  # images per survey line


@dataclass(frozen=True)
class SizePreset:
    n_source: int
    n_train: int
    n_test: int


PRESETS = {
    "tiny": SizePreset(20, 30, 20),
    "small": SizePreset(300, 400, 150),
    "medium": SizePreset(800, 1200, 400),
}


@dataclass(frozen=True)
class Survey:
    name: str
    looks: int  # speckle looks (more = less noise)
    texture_cell: int  # px of the mid-frequency texture
    rolloff: float  # gain loss towards far range
    additive: float  # additive noise (fraction of the mean level)
    bits: int  # 8 (JPEG) or 16 (PNG)


SURVEYS = {
    "A": Survey("A", looks=3, texture_cell=6, rolloff=0.35, additive=0.02, bits=8),
    "B": Survey("B", looks=1, texture_cell=10, rolloff=0.55, additive=0.08, bits=16),
}


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _shape(cls: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A target's highlight as a small float mask (rows along track, columns across range) and its
    height above the seabed (relative, for the shadow length)."""
    if cls == "ship":
        length, width, height = rng.uniform(26, 44), rng.uniform(7, 12), rng.uniform(0.28, 0.4)
    elif cls == "aircraft":
        length, width, height = rng.uniform(16, 28), 0.0, rng.uniform(0.14, 0.22)
        width = length * rng.uniform(0.85, 1.05)  # wingspan
    else:
        length, width, height = rng.uniform(8, 13), rng.uniform(3, 5), rng.uniform(0.05, 0.09)
    hh = int(math.ceil(length)) + 4
    ww = int(math.ceil(max(width, length * 0.3))) + 4
    m = np.zeros((hh, ww), np.float32)
    c = (ww / 2, hh / 2)
    ang = rng.uniform(-0.35, 0.35)  # heading relative to the track
    if cls == "ship":
        cv2.ellipse(m, (c, (width, length), math.degrees(ang)), 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(m, (c, (width * 0.45, length * 0.5), math.degrees(ang)), 1.6, -1, cv2.LINE_AA)
    elif cls == "aircraft":
        cv2.ellipse(m, (c, (length * 0.16, length), math.degrees(ang)), 1.0, -1, cv2.LINE_AA)
        wing_c = (c[0], c[1] - length * 0.08)
        cv2.ellipse(m, (wing_c, (width, length * 0.14), math.degrees(ang)), 1.0, -1, cv2.LINE_AA)
        tail_c = (c[0], c[1] + length * 0.4)
        cv2.ellipse(m, (tail_c, (width * 0.35, length * 0.08), math.degrees(ang)), 1.0, -1, cv2.LINE_AA)
    else:
        cv2.ellipse(m, (c, (width, length), math.degrees(ang)), 1.0, -1, cv2.LINE_AA)
    m = np.clip(m, 0, 2)
    ys, xs = np.nonzero(m > 0.05)
    m = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return m, height


def _stamp(
    rng: np.random.Generator,
    refl: np.ndarray,
    mask: np.ndarray | None,
    occupied: np.ndarray | None,
    shape: np.ndarray,
    height: float,
    nadir: float,
    water: float,
    gain: np.ndarray,
    w: int,
    h: int,
) -> list[float] | None:
    """Draw a highlight ``shape`` at a random range and side with the acoustic shadow behind it (away
    from nadir, ``height * range`` long); returns the box of highlight and shadow, or None when it does
    not fit (or overlaps an ``occupied`` target)."""
    sh, sw = shape.shape
    side = 1 if rng.random() < 0.5 else -1  # starboard / port
    lo = water + 3
    hi = (w - nadir if side > 0 else nadir) - sw - 2
    if hi <= lo or sh >= h - 2:
        return None
    ground = rng.uniform(lo, hi)  # range of the target's near edge
    shadow = int(round(height * (ground + sw) * rng.uniform(0.8, 1.2))) + 2
    y0 = int(rng.integers(1, h - sh - 1))
    if side > 0:
        x0 = int(nadir + ground)
        sx0, sx1 = x0 + sw, min(w, x0 + sw + shadow)
        bx0, bx1 = x0, sx1
    else:
        x0 = int(nadir - ground - sw)
        sx0, sx1 = max(0, x0 - shadow), x0
        bx0, bx1 = sx0, x0 + sw
    if occupied is not None:
        if occupied[max(0, y0 - 2) : y0 + sh + 2, max(0, bx0 - 2) : bx1 + 2].any():
            return None
        occupied[y0 : y0 + sh, bx0:bx1] = True
    rows = shape.max(1) > 0.3
    for k in np.nonzero(rows)[0]:
        refl[y0 + k, sx0:sx1] *= rng.uniform(0.1, 0.35)
    bright = rng.uniform(1.5, 2.6) * (1.4 if sh * sw < 150 else 1.0)  # small bodies: strong point returns
    region = refl[y0 : y0 + sh, x0 : x0 + sw]
    refl[y0 : y0 + sh, x0 : x0 + sw] = np.maximum(region, bright * shape * gain[x0 : x0 + sw][None, :])
    if mask is not None:
        mask[y0 : y0 + sh, x0 : x0 + sw] |= shape > 0.3
    return [bx0, y0, bx1, y0 + sh]


def render(
    rng: np.random.Generator, survey: Survey, n_objects: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """One waterfall image: (intensity in [0, 1] (H, W) float32, boxes (N, 4) xyxy continuous pixels,
    class names, highlight mask (H, W) bool)."""
    h = w = size
    nadir = w / 2 + rng.uniform(-6, 6)
    water = rng.uniform(5, 10)  # half-width of the water column (altitude in px of slant range)
    cols = np.arange(w, dtype=np.float32) + 0.5
    rng_px = np.abs(cols - nadir) - water  # ground range from the first bottom return
    far = max(nadir, w - nadir) - water
    gain = np.where(rng_px > 0, 1.0 - survey.rolloff * np.clip(rng_px / far, 0, 1), 0.0)
    gain = gain * (1 + 0.6 * np.exp(-np.clip(rng_px, 0, None) / 6.0))  # strong near-nadir return
    texture = 1 + 0.25 * _noise(rng, h, w, 40) + 0.18 * _noise(rng, h, w, survey.texture_cell)
    if rng.random() < 0.5:  # sand ripples across the track
        period = rng.uniform(5, 9)
        texture += 0.15 * np.sin(2 * np.pi * np.arange(h)[:, None] / period + rng.uniform(0, 6.3))
    refl = np.clip(texture, 0.2, None) * gain[None, :]
    boxes, names = [], []
    mask = np.zeros((h, w), bool)
    occupied = np.zeros((h, w), bool)
    # clutter that is not a target: small bright stones, and rock outcrops (irregular highlights with
    # their own shadows, 6-24 px) that look like targets at low SNR
    for _ in range(int(rng.integers(1, 6))):
        r = int(rng.integers(1, 3))
        y, x = int(rng.integers(4, h - 4)), int(rng.integers(2, w - 2))
        if abs(x - nadir) > water + 3:
            cv2.circle(refl, (x, y), r, float(rng.uniform(1.8, 2.8)), -1)
    for _ in range(int(rng.integers(0, 4))):
        rock = np.zeros((26, 26), np.float32)
        for _ in range(int(rng.integers(2, 5))):
            c = (float(rng.uniform(7, 19)), float(rng.uniform(7, 19)))
            ax = (float(rng.uniform(3, 12)), float(rng.uniform(3, 12)))
            cv2.ellipse(rock, (c, ax, float(rng.uniform(0, 180))), 1.0, -1, cv2.LINE_AA)
        ys, xs = np.nonzero(rock > 0.05)
        rock = rock[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        _stamp(rng, refl, None, None, rock, float(rng.uniform(0.05, 0.3)), nadir, water, gain, w, h)
    attempts = 0
    while len(boxes) < n_objects and attempts < 50:
        attempts += 1
        cls = CLASSES[rng.choice(len(CLASSES), p=CLASS_P)]
        shape, height = _shape(cls, rng)
        box = _stamp(rng, refl, mask, occupied, shape, height, nadir, water, gain, w, h)
        if box is None:
            continue
        boxes.append(box)
        names.append(cls)
    # multiplicative speckle: L-look intensity, Gamma(L, 1/L) (mean 1); amplitude = sqrt(intensity)
    speckle = rng.gamma(survey.looks, 1.0 / survey.looks, (h, w)).astype(np.float32)
    amp = np.sqrt(np.clip(refl, 0, None) * speckle)
    amp += survey.additive * np.abs(rng.standard_normal((h, w))).astype(np.float32)
    img = np.clip(amp / 1.9, 0, 1).astype(np.float32)
    return img, np.asarray(boxes, np.float32).reshape(-1, 4), names, mask


def voc_xml(sid: str, filename: str, w: int, h: int, boxes: np.ndarray, names: list[str]) -> str:
    """A VOC annotation: continuous ``xyxy`` boxes become 1-based inclusive pixel indices
    (``xmin = x1 + 1``, ``xmax = x2``)."""
    objs = []
    for b, n in zip(boxes, names, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in b)
        objs.append(
            "  <object>\n"
            f"    <name>{n}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
            "    <difficult>0</difficult>\n    <bndbox>\n"
            f"      <xmin>{x1 + 1}</xmin>\n      <ymin>{y1 + 1}</ymin>\n"
            f"      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n    </bndbox>\n  </object>\n"
        )
    return (
        "<annotation>\n  <folder>JPEGImages</folder>\n"
        f"  <filename>{filename}</filename>\n"
        f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>1</depth>\n  </size>\n"
        "  <segmented>1</segmented>\n" + "".join(objs) + "</annotation>\n"
    )


@register_synthetic("sonar")
def write_dataset(root: Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
    """Write the synthetic sonar tree under ``root`` (atomically: a temp folder renamed at the end)."""
    if size not in PRESETS:
        raise SpecError(f"synthetic sonar size must be one of {', '.join(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    root = Path(root)
    with atomic_tree(root, "sonar") as tmp:
        for sub in ("JPEGImages", "Annotations", "masks", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        rng = np.random.default_rng([seed, 0x50AA])
        bar = tqdm(
            total=preset.n_source + preset.n_train + preset.n_test,
            desc=f"synthesizing sonar ({size})",
            disable=not progress,
            unit="img",
            leave=False,
        )
        groups = ["id,group"]
        line_no = 0
        for split, survey_key, n in (
            ("source", "A", preset.n_source),
            ("train", "B", preset.n_train),
            ("test", "B", preset.n_test),
        ):
            survey = SURVEYS[survey_key]
            ids = []
            for i in range(n):
                if i % LINE_LENGTH == 0:
                    line_no += 1
                sid = f"{survey_key}{line_no:03d}_{i % LINE_LENGTH:02d}"
                n_obj = 0 if i == 0 else int(rng.choice([1, 1, 2, 2, 3, 4]))
                img, boxes, names, mask = render(rng, survey, n_obj)
                if survey.bits == 8:
                    fname = f"{sid}.jpg"
                    cv2.imwrite(
                        str(tmp / "JPEGImages" / fname),
                        np.round(img * 255).astype(np.uint8),
                        [cv2.IMWRITE_JPEG_QUALITY, 92],
                    )
                else:
                    fname = f"{sid}.png"
                    cv2.imwrite(str(tmp / "JPEGImages" / fname), np.round(img * 65535).astype(np.uint16))
                cv2.imwrite(str(tmp / "masks" / f"{sid}.png"), mask.astype(np.uint8) * 255)
                h, w = img.shape
                (tmp / "Annotations" / f"{sid}.xml").write_text(voc_xml(sid, fname, w, h, boxes, names))
                ids.append(sid)
                groups.append(f"{sid},{survey_key}-line{line_no:03d}")
                bar.update()
            (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        bar.close()
        (tmp / "classes.txt").write_text("\n".join(CLASSES) + "\n")
        (tmp / "groups.csv").write_text("\n".join(groups) + "\n")
    return root
