"""The ``full`` matrix's code path on the CPU, for every domain: real-layout trees written by the
synthetic generators (``tiny``), the published detector (``fcos_r50``) without pretrained weights,
4 iterations at batch 1, 2 rounds given as fractions of the pool, the full-supervision reference and
(on Foggy Cityscapes and sonar) the source checkpoint; every trainer runs at least once."""

from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import replace

import pytest

from benchmark.runner import run_matrix
from benchmark.spec import load_matrix
from benchmark.training import Schedule

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cached_backbone_weights")]

# each domain runs a few of the matrix's methods; together they cover every trainer (the method
# each paper was designed for goes to its domain)
SHARE = {
    "dota": ["supervised+random", "triple_ema"],
    "sonar": ["eucl"],
    "foggy_cityscapes": ["sar_source_free"],
    "pedestrian": ["mean_teacher+random", "dil"],
}


def test_full_matrix_code_path_on_cpu(tmp_path, _private_cache):
    from baselines.base import METHODS
    from benchmark.spec import find_matrix
    from domains.synthetic import ensure_synthetic

    listed = tomllib.loads(find_matrix("full").read_text())["methods"]
    assert {m for ms in SHARE.values() for m in ms} <= set(listed)
    covered = set()
    t0 = time.perf_counter()
    for domain, methods in SHARE.items():
        root = ensure_synthetic(domain, "tiny", 0, progress=False)
        m = load_matrix(
            "full",
            domains=[domain],
            methods=methods,
            seeds=[0],
            budgets=["25%", "50%"],
            data_roots={domain: str(root)},
        )
        small = Schedule(iterations=4, batch_size=1, lr=1e-4, warmup=1)
        cells = tuple(
            replace(c, schedule=small, detector_options={"pretrained": False}, threads=1) for c in m.cells
        )
        assert {c.detector for c in cells} == {"fcos_r50"}
        res = run_matrix(replace(m, cells=cells), tmp_path / "runs", launcher="serial", progress=False)
        recs = [
            json.loads(x)
            for x in (tmp_path / "runs").rglob("results.jsonl")
            for x in x.read_text().splitlines()
        ]
        recs = [r for r in recs if r["domain"] == domain]
        ordinary = [r for r in recs if not r["reference"]]
        assert len(ordinary) == 2 * len(methods) and sum(r["reference"] for r in recs) == 1
        for r in recs:
            primary = r["metrics"][r["primary_metric"]]
            assert math.isfinite(primary)
            assert r["detector"] == "fcos_r50" and r["detector_options"] == {"pretrained": False}
        pool_units = {r["budget_target"] for r in ordinary}
        assert len(pool_units) == 2  # 25 % and 50 % of the pool, resolved to counts
        if domain in ("foggy_cityscapes", "sonar"):
            assert all(r["source_checkpoint"] for r in recs)
        covered |= {r["trainer"] for r in recs}
        assert res.records >= len(recs) - len(methods)  # round 0 may be shared
    assert covered == {n for n in METHODS.names() if METHODS.get(n).benchmarked}
    print(f"\nfull-matrix code path, 4 domains, {len(covered)} trainers: {time.perf_counter() - t0:.1f} s")
