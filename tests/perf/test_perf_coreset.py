"""Benchmark: greedy k-centre (core-set) picks 1,000 of 100,000 pool embeddings (dim 256), with
1,000 labelled centres, without building the N x N distance matrix.

Run alone (it times things): ``pytest tests/perf/test_perf_coreset.py -s -p no:cacheprovider``.
Time (``time.perf_counter``, one run) and the peak of memory allocated during selection
(``tracemalloc``, which tracks numpy's buffers) are printed and stored in ``extra_info``. The
N x N float32 matrix would need 40 GB; the selection must stay below 64 MiB beyond its input (the
pool itself is 100 MB).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from baselines.acquisition.core_set import k_center_greedy

N, D, M, K = 100_000, 256, 1_000, 1_000


def test_perf_k_center_greedy_100k(benchmark):
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((N, D), dtype=np.float32)
    labelled = rng.standard_normal((M, D), dtype=np.float32)

    def run():
        return k_center_greedy(pool, labelled, K, np.random.default_rng(1))

    tracemalloc.start()
    t0 = time.perf_counter()
    picks = run()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    benchmark.pedantic(lambda: picks, rounds=1, iterations=1)  # record in the benchmark table

    assert len(picks) == K and len(set(picks)) == K
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB: something N x N-sized was built"
    benchmark.extra_info.update({"seconds": seconds, "peak_mib": peak / 2**20, "n": N, "dim": D, "k": K})
    print(
        f"\nk-centre greedy {K} of {N} (dim {D}, {M} labelled): {seconds:.2f} s, peak {peak / 2**20:.1f} MiB"
    )
