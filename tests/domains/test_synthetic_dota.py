"""The synthetic DOTA generator: official layout, real format, determinism, long tail."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from domains.dota import DOTA
from domains.synthetic.dota import CLASS_P, PRESETS, SYNTH_CLASSES, write_dataset


def tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_format(dota_tiny_root):
    root = dota_tiny_root
    for split, n in (("train", PRESETS["tiny"].n_train), ("val", PRESETS["tiny"].n_val)):
        images = list((root / split / "images").glob("*.png")) + list((root / split / "images").glob("*.tif"))
        assert len(images) == n  # scenes: PNG, every third one a GeoTIFF
        labels = sorted((root / split / "labelTxt").glob("*.txt"))
        assert len(labels) == n
        first = labels[1].read_text().splitlines()
        assert first[0] in ("imagesource:GoogleEarth", "imagesource:GF-2") and first[1].startswith("gsd:")
        assert len(first[2].split()) == 10
        # one image per split without objects (an empty annotation, header only)
        assert labels[0].read_text().splitlines()[2:] == []


def test_objects_sizes_and_counts(dota_tiny_root):
    ds = DOTA(label_unit="image").load(dota_tiny_root, "pool")  # whole scenes, several patches wide
    counts = [s.num_objects / (s.width * s.height / 128**2) for s in ds]  # objects per 128 x 128 px
    assert counts[0] == 0 and min(counts[1:]) >= 2.5 and max(counts) <= 15.5
    for s in ds:
        assert 240 <= s.width <= 352 and 240 <= s.height <= 352
        if s.num_objects:
            p = s.polygons.reshape(-1, 4, 2)
            sides = np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2).max(1)
            assert sides.max() <= 41 and sides.min() >= 4


def test_deterministic_by_seed(tmp_path):
    a = write_dataset(tmp_path / "a", seed=3, size="tiny", progress=False)
    b = write_dataset(tmp_path / "b", seed=3, size="tiny", progress=False)
    c = write_dataset(tmp_path / "c", seed=4, size="tiny", progress=False)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)


def test_long_tail():
    assert len(SYNTH_CLASSES) >= 8
    assert CLASS_P[0] / CLASS_P[-1] >= 20  # head:tail ~23:1
    assert all(np.diff(CLASS_P) < 0)


def test_long_tail_in_generated_data(dota_tiny_root):
    ds = DOTA().load(dota_tiny_root, "pool")
    names = Counter(ds.classes[k] for s in ds for k in s.labels)
    assert names.most_common(1)[0][0] == "small-vehicle"
    assert set(names) <= set(SYNTH_CLASSES)
