"""Benchmark: patching a 20000 x 20000 RGB GeoTIFF reads raster windows and never decodes the scene.

The scene is written window by window (tiled, deflate; a full decode would need 20000^2 * 3 B = 1.2 GB).
A subprocess that does not import torch computes the 1024/200 windows (25 x 25 = 625 patches), assigns a
few thousand oriented objects to them (IoF >= 0.7) and reads every patch through ``read_raster`` (rasterio
windows), then reports its peak RSS, which must stay under 1 GB.

Run alone (it takes tens of seconds): ``pytest tests/perf/test_perf_patching.py -s -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SIDE = 20000
ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys, time
import numpy as np
from domains.base import read_raster
from domains.dota import raster_info
from domains.patching import assign_objects, windows

path = sys.argv[1]
t0 = time.perf_counter()
w, h, geo = raster_info(path)
wins = windows(w, h, 1024, 200)
rng = np.random.default_rng(0)
centres = rng.uniform(0, w, (5000, 2))
sq = np.array([-10, -6, 10, -6, 10, 6, -10, 6], np.float64)
polys = (np.tile(centres, 4) + sq).astype(np.float32)
n_obj, checksum = 0, 0
for win in wins:
    objs = assign_objects(polys, np.zeros(len(polys), np.int64), win)
    n_obj += len(objs.index)
    px = read_raster(path, win)
    assert px.shape == (win[3], win[2], 3)
    checksum += int(px[::97, ::89].sum())
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"patches": len(wins), "objects": n_obj, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": peak_mb, "torch_imported": "torch" in sys.modules, "crs": geo.get("crs"),
                  "checksum": checksum}))
"""


def write_big_geotiff(path: Path, side: int = SIDE, block: int = 1024) -> None:
    """A tiled RGB GeoTIFF written window by window (never the whole array in memory)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5010000.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        BIGTIFF="YES",
    ) as ds:
        yy, xx = np.mgrid[0:block, 0:block]
        base = ((xx // 16 + yy // 16) % 2 * 60 + 80).astype(np.uint8)
        for y in range(0, side, block):
            for x in range(0, side, block):
                h, w = min(block, side - y), min(block, side - x)
                tile = np.stack(
                    [base[:h, :w] + (x // block) % 7, base[:h, :w], base[:h, :w] + (y // block) % 5]
                )
                ds.write(tile, window=Window(x, y, w, h))


def test_patching_a_huge_geotiff_stays_under_1gb(tmp_path):
    path = tmp_path / "huge.tif"
    write_big_geotiff(path)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\npatching {SIDE}x{SIDE} GeoTIFF: {res}")
    assert res["patches"] == 25 * 25 and res["crs"] == "EPSG:32633"
    assert not res["torch_imported"]
    assert res["objects"] >= 5000  # every object lands in at least one patch
    assert res["peak_rss_mb"] < 1024, res
