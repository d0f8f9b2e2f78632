"""Orchestrating a matrix: prepare the data and the initial splits, launch the runs, write tables.

The orchestrator (not the workers) loads each domain once, fixes its dataset version, and writes
every seed's initial labelled set before any run starts. Cells are grouped so that runs sharing a
round-0 model (same domain, trainer and seed) go to the same worker one after another: the first
trains round 0, the others reuse it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import defaultdict
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmark.protocol import ensure_initial_split, load_domain_data, run_cell, run_path
from benchmark.results import RunDir
from benchmark.spec import Cell, DomainSetup, Matrix, resolve_budgets, with_version
from domains.base import SpecError

LAUNCHERS = ("serial", "process")


@dataclass
class MatrixResult:
    cells: list[Cell]
    out: Path
    records: int


def prepare(matrix: Matrix, out: Path, progress: bool = True) -> list[Cell]:
    """Load each domain once (generating synthetic data if needed), stamp dataset versions on the
    cells and write the initial splits."""
    versions: dict[str, str] = {}
    resolved: dict[str, DomainSetup] = {}
    cells = []
    for name, setup in matrix.domains.items():
        data = load_domain_data(setup, progress=progress)
        versions[name] = data.version
        # budgets given as fractions ("10%") become counts of this pool
        setup = resolved[name] = resolve_budgets(
            setup, len(data.pool.unit_members()), data.pool.unit_boxes(data.pool.ids)
        )
        if setup.budget_unit == "images" and setup.budgets[-1] > len(data.pool):
            raise SpecError(
                f"{name}: the last budget {setup.budgets[-1]} exceeds the pool's {len(data.pool)} images"
            )
    for c in matrix.cells:
        cell = with_version(replace(c, domain=resolved[c.domain.name]), versions[c.domain.name])
        ensure_initial_split(out, cell, load_domain_data(cell.domain, progress=False).pool)
        cells.append(cell)
    return cells


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        groups[(c.domain.name, c.trainer, c.seed)].append(c)
    # longest groups first: better packing on few workers
    return sorted(groups.values(), key=lambda g: -len(g))


def pending_rounds(out: Path, cells: list[Cell]) -> int:
    n = 0
    for c in cells:
        rd = RunDir(run_path(out, c))
        n += sum(1 for r in range(len(c.budgets)) if not rd.round_done(r))
    return n


def _run_group(group: list[Cell], out: str, device: str, launcher: str, events: Any | None) -> int:
    """Run a group of cells in this process (a worker, or the main process for ``serial``)."""
    old_threads = torch.get_num_threads()
    n = 0
    try:
        for cell in group:
            torch.set_num_threads(cell.threads)
            data = load_domain_data(cell.domain, progress=False)

            def on_round(c: Cell, r: int, rec: dict) -> None:
                if events is not None:
                    primary = rec["primary_metric"]
                    events.put((c.method, c.domain.name, c.seed, r, primary, rec["metrics"][primary]))

            n += len(run_cell(cell, Path(out), data, device=device, launcher=launcher, on_round=on_round))
    finally:
        torch.set_num_threads(old_threads)
    return n


def _worker_init() -> None:
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


def run_matrix(
    matrix: Matrix,
    out: Path,
    launcher: str = "serial",
    workers: int = 2,
    device: str = "cpu",
    progress: bool = True,
) -> MatrixResult:
    if launcher not in LAUNCHERS:
        raise SpecError(f"unknown launcher {launcher!r}; choose from {', '.join(LAUNCHERS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = prepare(matrix, out, progress)
    groups = group_cells(cells)
    total = pending_rounds(out, cells)
    bar = tqdm(total=total, desc=f"{matrix.name}: rounds", unit="round", disable=not progress or total == 0)

    def show(ev: tuple) -> None:
        method, domain, seed, r, primary, value = ev
        bar.set_postfix_str(f"{domain} {method} s{seed} r{r} {primary}={value:.3f}")
        bar.update()

    n = 0
    if launcher == "serial" or workers <= 1 or len(groups) == 1:
        q: queue.Queue = queue.Queue()
        for g in groups:
            n += _run_group(g, str(out), device, "serial", q)
            while not q.empty():
                show(q.get())
    else:
        # fork: workers inherit the loaded datasets and imports (the parent has run no torch
        # kernels, so no OpenMP pool is copied); spawn where fork does not exist
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ctx.Manager() as mgr:
            events = mgr.Queue()
            stop = threading.Event()

            def pump() -> None:
                while not stop.is_set():
                    try:
                        show(events.get(timeout=0.2))
                    except queue.Empty:
                        continue

            th = threading.Thread(target=pump, daemon=True)
            th.start()
            with ProcessPoolExecutor(
                max_workers=min(workers, len(groups)), mp_context=ctx, initializer=_worker_init
            ) as ex:
                futs = [ex.submit(_run_group, g, str(out), device, "process", events) for g in groups]
                done, _ = wait(futs, return_when=FIRST_EXCEPTION)
                for f in futs:
                    n += f.result()  # re-raises a worker's error with its traceback
            stop.set()
            th.join()
            while not events.empty():
                show(events.get())
    bar.close()
    return MatrixResult(cells, out, n)
