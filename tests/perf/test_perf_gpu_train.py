"""Training speed on a GPU: the ``full`` matrix's detector (FCOS ResNet-50, 1024 px DOTA patches,
batch 8) and the CPU matrices' detector (``tiny_fcos_xs``, 128 px, batch 8), each with and without
the deterministic kernels that ``labelbudget run --device cuda`` uses (``benchmark.protocol.deterministic``).

Skipped without CUDA. Run with ``pytest tests/perf/test_perf_gpu_train.py -o addopts="" -s``; it prints
iterations and images per second and the peak GPU memory, so a user can size a ``full`` matrix run
(``iterations`` per round x rounds x methods x seeds).
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmark.detectors import build_detector
from benchmark.protocol import deterministic
from benchmark.training import Schedule, train_supervised

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = {"fcos_r50": (1024, 60), "tiny_fcos_xs": (128, 200)}  # detector: (image side, timed iterations)


def _data(side: int, n: int = 32, n_classes: int = 15):
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand((8, 2), generator=g) * side * 0.8
        wh = 8 + torch.rand((8, 2), generator=g) * side * 0.15
        targets.append(
            {"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(n_classes, (8,), generator=g)}
        )
    return images, targets


@pytest.mark.parametrize("det_mode", [True, False], ids=["deterministic", "default-kernels"])
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_training_speed(name, det_mode):
    side, iters = CASES[name]
    images, targets = _data(side)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_detector(name, 15)
    device = "cuda"
    with deterministic(device if det_mode else "cpu"):
        gen = torch.Generator().manual_seed(0)
        train_supervised(model, images, targets, Schedule(iterations=5, batch_size=8, warmup=1), gen, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train_supervised(
            model, images, targets, Schedule(iterations=iters, batch_size=8, warmup=1), gen, device
        )
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"\n{name} {side}px batch 8, {'deterministic' if det_mode else 'default kernels'}: "
        f"{iters / dt:.1f} it/s, {8 * iters / dt:.0f} img/s, peak GPU memory {peak:.1f} GiB "
        f"({torch.cuda.get_device_name()})"
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())
