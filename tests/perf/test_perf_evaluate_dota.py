"""`labelbudget evaluate dota` on huge Task2 submissions: peak memory and time grow linearly.

Run with ``tox -e perf`` (or ``pytest tests/perf/test_perf_evaluate_dota.py -o addopts="" -s``). Each
size writes Task2_<class>.txt files of N detections spread over the scenes of a synthetic DOTA test
split, then runs ``labelbudget evaluate`` in a fresh process and reads its peak resident memory
(``ru_maxrss`` of the child) and wall time. Goal: under 2 GB at 1.5 M detections, and the
per-detection cost roughly constant from 0.2 M to 1.5 M (linear scaling).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SIZES = (200_000, 500_000, 1_500_000)
MAX_RSS_GB = 2.0


def write_submission(folder: Path, scenes: list[tuple[str, int, int]], classes: list[str], n: int, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per_class = np.array_split(np.arange(n), len(classes))
    for cls, idx in zip(classes, per_class, strict=True):
        k = len(idx)
        which = rng.integers(0, len(scenes), k)
        w = np.array([scenes[i][1] for i in which], np.float64)
        h = np.array([scenes[i][2] for i in which], np.float64)
        x1, y1 = rng.uniform(0, 1, k) * (w - 12), rng.uniform(0, 1, k) * (h - 12)
        bw, bh = rng.uniform(4, 40, k), rng.uniform(4, 40, k)
        score = rng.random(k)
        with (folder / f"Task2_{cls}.txt").open("w") as f:
            for j in range(k):
                f.write(
                    f"{scenes[which[j]][0]} {score[j]:.5f} {x1[j]:.1f} {y1[j]:.1f} "
                    f"{x1[j] + bw[j]:.1f} {y1[j] + bh[j]:.1f}\n"
                )


def run_evaluate(root: Path, sub: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one `labelbudget evaluate` process."""
    code = (
        "import resource, sys\n"
        "from benchmark.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", code, "evaluate", "dota", str(root), str(sub)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    dt = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    kb = int(next(ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("MAXRSS")))
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >= kb
    return dt, kb / 1024**2


@pytest.mark.parametrize("sizes", [SIZES])
def test_evaluate_dota_memory_and_time_scale_linearly(tmp_path, sizes):
    from domains.dota import DOTA
    from domains.synthetic import ensure_synthetic

    root = ensure_synthetic("dota", "small", 0, progress=False)
    test = DOTA(label_unit="image").load(root, "test")
    scenes = [(s.id, s.width, s.height) for s in test]
    rows = []
    for n in sizes:
        sub = tmp_path / f"sub{n}"
        write_submission(sub, scenes, list(test.classes), n)
        mb = sum(f.stat().st_size for f in sub.iterdir()) / 1e6
        dt, gb = run_evaluate(root, sub)
        rows.append((n, mb, dt, gb))
        print(f"\n{n:>9,d} detections ({mb:.0f} MB of Task2 files): {dt:6.1f} s, peak RSS {gb:.2f} GB")
    n0, _, t0, g0 = rows[0]
    for n, _, dt, gb in rows[1:]:
        print(
            f"x{n / n0:.1f} detections: time x{dt / t0:.2f}, peak RSS x{gb / g0:.2f} "
            f"(per detection: {dt / n * 1e6:.1f} us vs {t0 / n0 * 1e6:.1f} us)"
        )
    assert rows[-1][3] < MAX_RSS_GB, f"peak RSS {rows[-1][3]:.2f} GB at {rows[-1][0]:,} detections"
    # linear: the per-detection time of the largest size is within 2x of the smallest's
    assert rows[-1][2] / rows[-1][0] < 2.0 * t0 / n0
