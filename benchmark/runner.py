"""Orchestrating a matrix: prepare the data and the initial splits, plan the cells, launch them.

The orchestrator (not the workers) loads each domain once, fixes its dataset version, writes every
seed's initial labelled set and the plan (``<out>/_plan/``, ``benchmark.launchers.base``) before
any cell starts. A launcher (``serial``, ``process``, ``ray``, ``slurm``: ``benchmark.launchers``)
then runs ``run-cell`` jobs; the run folders decide what is done (``benchmark.runstate``): done
cells are skipped, live ones left to their worker (this command waits for them), stale ones taken
over, failed ones retried only with ``retry_failed``. ``shard=(i, n)`` runs a deterministic slice.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmark.data import load_domain_data
from benchmark.launchers.base import LAUNCHERS, Job, LaunchOptions, Outcome, get_launcher, write_plan
from benchmark.protocol import ensure_initial_split, run_path
from benchmark.results import RunDir
from benchmark.runstate import cell_state, rounds_done
from benchmark.spec import Cell, DomainSetup, Matrix, resolve_budgets, with_version
from domains.base import SpecError


def launcher_names() -> list[str]:
    return LAUNCHERS.names()


@dataclass
class MatrixResult:
    cells: list[Cell]
    out: Path
    records: int  # round records of these cells on disk
    outcomes: list[Outcome] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # run id -> final state

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if self.states.get(c.run_id) == "failed"]


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


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (1 <= i <= n) -> (i, n)."""
    if not text:
        return None
    a, sep, b = text.partition("/")
    try:
        i, n = int(a), int(b)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise SpecError(f"--shard expects i/n with 1 <= i <= n (e.g. 1/4), got {text!r}")
    return i, n


def shard_cells(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """The i-th of n deterministic slices: whole (domain, trainer, seed) groups, dealt round-robin
    in matrix order, so the cells sharing a round-0 model stay in one shard."""
    if shard is None:
        return list(cells)
    i, n = shard
    order: dict[tuple, int] = {}
    for c in cells:
        order.setdefault((c.domain.name, c.trainer, c.seed), len(order))
    return [c for c in cells if order[(c.domain.name, c.trainer, c.seed)] % n == i - 1]


def _wanted(state: str, retry_failed: bool) -> bool:
    return state in ("planned", "stale") or (retry_failed and state == "failed")


def _records_on_disk(out: Path, cells: list[Cell]) -> int:
    return sum(len(RunDir(run_path(out, c)).records()) for c in cells)


def run_matrix(
    matrix: Matrix,
    out: Path,
    launcher: str = "serial",
    workers: int = 2,
    device: str = "cpu",
    progress: bool = True,
    retry_failed: bool = False,
    shard: tuple[int, int] | None = None,
    launcher_options: dict[str, Any] | None = None,
    wait: bool = True,
    poll: float = 2.0,
) -> MatrixResult:
    """Prepare, plan and launch the matrix (or its ``shard``); returns when every selected cell is
    done or failed (or, with ``wait=False``, once a batch launcher has submitted them)."""
    cls = get_launcher(launcher)  # an unknown launcher or a missing extra fails before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = prepare(matrix, out, progress)
    entries = {e["run_id"]: e for e in write_plan(out, cells)}
    selected = shard_cells(cells, shard)
    opts = LaunchOptions(out, device, workers, retry_failed, wait, dict(launcher_options or {}))
    runner = cls(opts)
    jobs = {c.run_id: Job(c.run_id, entries[c.run_id]["group"], c.threads) for c in selected}
    total = sum(len(c.budgets) for c in selected)
    bar = tqdm(total=total, desc=f"{matrix.name}: rounds", unit="round", disable=not progress)
    stop = threading.Event()

    def monitor() -> None:
        while True:
            done = sum(min(len(c.budgets), rounds_done(run_path(out, c))) for c in selected)
            bar.update(done - bar.n)
            if stop.wait(1.0):
                return

    mon = threading.Thread(target=monitor, daemon=True)
    if progress:
        mon.start()
    outcomes: list[Outcome] = []
    attempted: set[str] = set()
    try:
        while True:
            states = {c.run_id: cell_state(run_path(out, c)).state for c in selected}
            todo = [
                jobs[c.run_id]
                for c in selected
                if c.run_id not in attempted and _wanted(states[c.run_id], retry_failed)
            ]
            if todo:
                res = runner.launch(todo)
                outcomes += res
                attempted.update(o.cell_id for o in res if o.status != "not run")
                if not wait:
                    break
                continue
            if wait and any(s == "running" for s in states.values()):
                time.sleep(poll)  # cells that another worker runs: wait for them (or for them to go stale)
                continue
            break
    finally:
        stop.set()
        if progress:
            mon.join()
            bar.close()
    final = {c.run_id: cell_state(run_path(out, c)).state for c in selected}
    return MatrixResult(selected, out, _records_on_disk(out, selected), outcomes, final)
