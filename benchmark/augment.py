"""Box-aware weak and strong views for teacher-student training (albumentations).

* **weak** view: random horizontal (and optionally vertical) flip plus scale jitter (the whole image
  is resized by a factor in ``scale``); the teacher sees this view.
* **strong** view: colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8), grayscale (p 0.2), Gaussian blur
  (p 0.5), a small geometric jitter (affine: translate up to 10 %, scale 0.9-1.1; p 0.5) and three
  random-erasing (cutout) passes with p 0.7 / 0.5 / 0.3, the strong augmentation of Unbiased Teacher
  (Liu et al., ICLR 2021, ``ubteacher/data/detection_utils.py``) plus the geometric jitter of STAC /
  Soft Teacher. The strong view is applied *to the weak view*, with the teacher's boxes as its
  bounding boxes, so the pseudo-labels come out in the strong view's geometry.

Every view maker owns one ``albumentations.Compose`` seeded from the ``torch.Generator`` it is
given (albumentations' own seed: no global random state is read or written), so the same generator
gives the same views. Images are uint8 ``(3, H, W)`` tensors, boxes ``(N, 4)`` xyxy pixel tensors;
each call returns the view, its boxes and the indices of the input boxes that survived (boxes that
leave the image or keep less than ``min_visibility`` of their area are dropped; use the indices to
carry labels, scores or ignore flags along).

Oriented objects: ``BoxView.with_polygons`` carries (N, 8) polygons through the same transform as
albumentations keypoints (their corners; pixel-centre convention, so flips and 90-degree rotations
map them exactly, scale and affine jitter to a fraction of a pixel); polygons are not clipped (as
DOTA's ground truth), their boxes are. ``weak_view(rotate90=True)`` adds a random rotation by a
multiple of 90 degrees (aerial imagery has no "up"): the oriented detectors' weak view.
"""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version on import unless told not to: runs stay offline
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np
import torch

STRONG_COLOUR = (0.4, 0.4, 0.4, 0.1)


def _seed_from(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


class BoxView:
    """A seeded, box-aware albumentations pipeline (see the module docstring)."""

    def __init__(self, transforms: list, gen: torch.Generator, min_visibility: float = 0.3) -> None:
        self.compose = A.Compose(
            transforms,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["index"],
                min_visibility=min_visibility,
                min_width=1.0,
                min_height=1.0,
                clip=True,
                filter_invalid_bboxes=True,
            ),
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            seed=_seed_from(gen),
        )

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` uint8 (3, H, W), ``boxes`` (N, 4) xyxy -> (view, view boxes (M, 4), kept (M,))."""
        im, ob, kept, _ = self.with_polygons(image, boxes, None)
        return im, ob, kept

    def with_polygons(
        self, image: torch.Tensor, boxes: torch.Tensor, polygons: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As ``__call__``, also mapping ``polygons`` (N, 8) (or None): returns (view, view boxes
        (M, 4), kept (M,), the kept objects' polygons (M, 8) in the view, or None)."""
        h, w = int(image.shape[1]), int(image.shape[2])
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        b = boxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
        if len(b):
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        ok = (b[:, 2] - b[:, 0] >= 1e-3) & (b[:, 3] - b[:, 1] >= 1e-3)
        idx = np.nonzero(ok)[0]
        kp = np.zeros((0, 2))
        if polygons is not None:
            poly = polygons.detach().cpu().numpy().astype(np.float64).reshape(-1, 8)
            if len(poly) != len(b):
                raise ValueError(f"{len(poly)} polygons for {len(b)} boxes")
            kp = poly.reshape(-1, 2) - 0.5  # continuous coordinates -> pixel-centre keypoints
        out = self.compose(image=hwc, bboxes=b[ok], index=idx.tolist(), keypoints=kp)
        im = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        ob = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        kept_np = np.asarray(out["index"], dtype=np.int64).reshape(-1)
        kept = torch.as_tensor(kept_np)
        polys = None
        if polygons is not None:
            pts = np.asarray(out["keypoints"], np.float64)[:, :2] + 0.5
            polys = torch.from_numpy(pts.reshape(-1, 8)[kept_np].astype(np.float32))
        return im, torch.from_numpy(ob), kept, polys


WEAK_SCALE = (0.8, 1.25)  # the weak view's zoom range (teacher-student methods; supervised's "weak")


def weak_view(
    gen: torch.Generator,
    vertical_flip: bool = True,
    scale: tuple[float, float] = WEAK_SCALE,
    rotate90: bool = False,
) -> BoxView:
    """Flip + scale jitter; with ``rotate90`` also a rotation by 0, 90, 180 or 270 degrees (uniform).
    The scale jitter zooms the content about the image centre by a factor drawn from ``scale``
    (uniform, as the resizing jitter it replaces) on a canvas of the input's size: a view never grows, so a
    batch of views stays at the patch size (a resizing jitter padded most batches to 1.25x the side,
    1.56x the pixels). Objects pushed past the border are clipped (dropped below 30 % visible)."""
    t: list = [A.HorizontalFlip(p=0.5)]
    if vertical_flip:
        t.append(A.VerticalFlip(p=0.5))
    if rotate90:
        t.append(A.RandomRotate90(p=1.0))
    if scale != (1.0, 1.0):
        t.append(A.Affine(scale=scale, keep_ratio=True, p=1.0))
    return BoxView(t, gen)


def strong_view(gen: torch.Generator, geometric: bool = True) -> BoxView:
    """Colour jitter, grayscale, blur, cutout (x3) and (optionally) a small affine jitter."""
    b, c, s, h = STRONG_COLOUR
    t: list = [
        A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=0.8),
        A.ToGray(p=0.2),
        A.GaussianBlur(sigma_limit=(0.1, 2.0), p=0.5),
    ]
    if geometric:
        t.append(A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), p=0.5))
    for p, area in ((0.7, (0.05, 0.2)), (0.5, (0.02, 0.2)), (0.3, (0.02, 0.2))):
        side = (float(np.sqrt(area[0])), float(np.sqrt(area[1])))
        t.append(
            A.CoarseDropout(
                num_holes_range=(1, 1), hole_height_range=side, hole_width_range=side, fill="random", p=p
            )
        )
    return BoxView(t, gen, min_visibility=0.0 if not geometric else 0.3)


def apply_view(view, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """A view of ``image`` with ``target`` carried into it: boxes (and ``polygons``) mapped, every
    other per-object tensor kept for the surviving objects."""
    polys = target.get("polygons")
    im, boxes, kept, new_polys = view.with_polygons(image, target["boxes"], polys)
    skip = ("boxes", "polygons")
    out = {k: v[kept] for k, v in target.items() if isinstance(v, torch.Tensor) and k not in skip}
    out["boxes"] = boxes
    if new_polys is not None:
        out["polygons"] = new_polys
    return im, {**{k: v for k, v in target.items() if not isinstance(v, torch.Tensor)}, **out}
