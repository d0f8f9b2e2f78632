"""The launchers of one machine: ``serial`` (this process) and ``process`` (worker processes).

``process`` forks ``--workers`` processes with one torch thread each (two 1-thread processes train
1.5x faster here than one 2-thread process); the cells of a (domain, trainer, seed) group go to the
same worker one after another, so the first trains the shared round 0 and the others load it
without waiting on its lease.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context

from benchmark.launchers.base import Job, Launcher, Outcome, execute_job, register_launcher


def _run_jobs(jobs: list[Job], out: str, device: str, retry_failed: bool, launcher: str) -> list[Outcome]:
    return [execute_job(out, j.cell_id, device, retry_failed, launcher) for j in jobs]


def groups_of(jobs: list[Job]) -> list[list[Job]]:
    groups: dict[str, list[Job]] = defaultdict(list)
    for j in jobs:
        groups[j.group].append(j)
    # longest groups first: better packing on few workers
    return sorted(groups.values(), key=lambda g: -len(g))


@register_launcher("serial")
class SerialLauncher(Launcher):
    """Every cell in this process, one after another."""

    def launch(self, jobs: list[Job]) -> list[Outcome]:
        o = self.options
        args = (str(o.out), o.device, o.retry_failed, "serial")
        return [x for g in groups_of(jobs) for x in _run_jobs(g, *args)]


def _worker_init() -> None:
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, a worker is killed when the launcher dies (even by SIGKILL), so a killed run
    never leaves workers writing into the folders that the resumed run is using."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


@register_launcher("process")
class ProcessLauncher(Launcher):
    """``--workers`` forked processes (spawned where fork does not exist)."""

    def launch(self, jobs: list[Job]) -> list[Outcome]:
        o = self.options
        groups = groups_of(jobs)
        if o.workers <= 1 or len(groups) <= 1:
            return [x for g in groups for x in _run_jobs(g, str(o.out), o.device, o.retry_failed, "process")]
        # fork: workers inherit the loaded datasets and imports (the parent has run no torch
        # kernels, so no OpenMP pool is copied)
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(
            max_workers=min(o.workers, len(groups)), mp_context=ctx, initializer=_worker_init
        ) as ex:
            futs = [ex.submit(_run_jobs, g, str(o.out), o.device, o.retry_failed, "process") for g in groups]
            return [x for f in futs for x in f.result()]
