"""Synthetic COCO data: the scenes of the synthetic DOTA generator (``domains.synthetic.dota``) written
as a COCO JSON dataset, ``images/*.png`` with ``annotations/train.json`` and ``annotations/val.json``
(the ``ann``/``test_ann`` defaults of ``domains.coco``), so ``labelbudget run --domains coco`` works
without data.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from domains.base import SpecError, register_synthetic
from domains.synthetic.cache import atomic_tree
from domains.synthetic.dota import SYNTH_CLASSES, render_scene

PRESETS = {"tiny": (48, 24), "small": (600, 200), "medium": (2000, 500)}  # train / val images
SIDES = (128, 160)


@register_synthetic("coco")
def write_dataset(root: Path, seed: int = 0, size: str = "small", progress: bool = True) -> Path:
    """Synthetic DOTA-like scenes in COCO JSON under ``root`` (atomically: a temp folder renamed)."""
    if size not in PRESETS:
        raise SpecError(f"synthetic coco size must be one of {', '.join(PRESETS)}, got {size!r}")
    n_train, n_val = PRESETS[size]
    root = Path(root)
    with atomic_tree(root, "coco") as tmp:
        (tmp / "images").mkdir()
        (tmp / "annotations").mkdir()
        rng = np.random.default_rng([seed, 0xC0C0])
        cats = [{"id": k + 1, "name": n, "supercategory": "object"} for k, n in enumerate(SYNTH_CLASSES)]
        bar = tqdm(
            total=n_train + n_val,
            desc=f"synthesizing coco ({size})",
            disable=not progress,
            unit="img",
            leave=False,
        )
        img_id, ann_id = 1, 1
        for split, n in (("train", n_train), ("val", n_val)):
            images, anns = [], []
            for i in range(n):
                h, w = int(rng.choice(SIDES)), int(rng.choice(SIDES))
                img, polys, names, diffs = render_scene(rng, h, w, 0 if i == 0 else int(rng.integers(3, 16)))
                fn = f"{split}_{i:05d}.png"
                cv2.imwrite(str(tmp / "images" / fn), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                images.append({"id": img_id, "file_name": fn, "width": w, "height": h})
                for poly, name, d in zip(polys, names, diffs, strict=True):
                    xs, ys = poly[0::2], poly[1::2]
                    x0, y0 = float(xs.min()), float(ys.min())
                    bw, bh = float(xs.max()) - x0, float(ys.max()) - y0
                    anns.append(
                        {
                            "id": ann_id,
                            "image_id": img_id,
                            "category_id": SYNTH_CLASSES.index(name) + 1,
                            "bbox": [x0, y0, bw, bh],
                            "area": bw * bh,
                            "iscrowd": 0,
                            "difficult": int(d),
                            "segmentation": [[float(v) for v in poly]],
                        }
                    )
                    ann_id += 1
                img_id += 1
                bar.update()
            doc = {
                "info": {"description": "labelbudget synthetic COCO"},
                "images": images,
                "annotations": anns,
                "categories": cats,
            }
            (tmp / "annotations" / f"{split}.json").write_text(json.dumps(doc) + "\n")
        bar.close()
    return root
