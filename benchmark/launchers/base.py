"""The launcher contract, the plan of a prepared matrix, and the one-cell job every launcher runs.

``labelbudget run`` prepares a matrix once (dataset versions, initial splits) and writes its
**plan**: one JSON file per cell, ``<out>/_plan/<run_id>.json``, holding everything a worker needs
to rebuild the cell (its data root included) -- the run id is checked on the way back, so a worker
with different code refuses the cell instead of mixing versions. A launcher then runs **jobs**, each
``labelbudget run-cell OUT RUN_ID`` (in-process for ``serial``/``process``, a command for Ray, a
submitit job for SLURM). A job claims its cell through the run folder (``benchmark.runstate``), so
whatever engine runs it, a done cell is skipped, a live one is left alone, a stale one is taken
over and a failed one is retried only when asked.

A launcher is a class registered with ``@register_launcher("name")``: ``extra`` names the pip extra
it needs (checked by ``check_available``), and ``launch(jobs)`` runs the jobs and returns their
outcomes (``run-cell`` exit codes below). Third-party launchers register through the entry-point
group ``labelbudget.launchers``.
"""

from __future__ import annotations

import importlib.util
import json
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark.registry import Registry
from domains.base import LabelbudgetError, SpecError

LAUNCHERS: Registry = Registry("launcher", "labelbudget.launchers", ("benchmark.launchers",))

# run-cell exit codes (what a job reports to its launcher)
EXIT_DONE = 0  # finished now, or already done
EXIT_FAILED = 1  # the cell raised: FAILED and traceback.txt are in its run folder
EXIT_USAGE = 2  # bad arguments or plan (labelbudget's usual error code)
EXIT_NOT_RUN = 3  # a live worker holds it, or it failed before and --retry-failed was not given
EXIT_LOST = 4  # the cell was taken over by another worker while this one ran (it stopped)

STATUS_OF_EXIT = {
    EXIT_DONE: "done",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "error",
    EXIT_NOT_RUN: "not run",
    EXIT_LOST: "lost",
}


def register_launcher(name: str):
    return LAUNCHERS.register(name)


@dataclass
class LaunchOptions:
    out: Path
    device: str = "cpu"
    workers: int = 2
    retry_failed: bool = False
    wait: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # launcher-specific flags (ray_*, slurm_*)


@dataclass(frozen=True)
class Job:
    cell_id: str
    group: str  # cells sharing a round-0 model (domain/trainer/seed): local launchers keep them together
    threads: int = 1


@dataclass
class Outcome:
    cell_id: str
    status: str  # done | failed | not run | lost | error | submitted
    message: str = ""


class Launcher(ABC):
    """Base class: subclasses set ``extra`` (and ``module``) and implement ``launch``."""

    name = "?"
    extra: str | None = None  # the pip extra, e.g. "ray" -> pip install 'labelbudget[ray]'
    module: str | None = None  # the module that extra provides

    def __init__(self, options: LaunchOptions) -> None:
        self.options = options

    @classmethod
    def check_available(cls) -> None:
        if cls.module and importlib.util.find_spec(cls.module) is None:
            raise SpecError(
                f"the {cls.name} launcher needs the {cls.module!r} package: "
                f"pip install 'labelbudget[{cls.extra}]'"
            )

    @abstractmethod
    def launch(self, jobs: list[Job]) -> list[Outcome]:
        """Run ``jobs`` (each through ``execute_job``, here or on other machines); one outcome each."""

    def run_cell_argv(self, job: Job) -> list[str]:
        """The ``labelbudget run-cell`` arguments of a job (after ``run-cell``)."""
        from benchmark.runstate import heartbeat_interval, stale_limit

        o = self.options
        argv = [str(Path(o.out).resolve()), job.cell_id, "--device", o.device, "--launcher-name", self.name]
        argv += ["--heartbeat", f"{heartbeat_interval():g}", "--stale-after", f"{stale_limit():g}"]
        if o.retry_failed:
            argv.append("--retry-failed")
        return argv


def get_launcher(name: str) -> type[Launcher]:
    cls = LAUNCHERS.get(name)
    cls.check_available()
    return cls


# ------------------------------------------------------------------------------------------ plan


def plan_dir(out: Path) -> Path:
    return Path(out) / "_plan"


def cell_to_json(cell) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cell)))


def cell_from_json(d: dict[str, Any]):
    from benchmark.spec import Cell, DomainSetup
    from benchmark.training import Schedule

    d = dict(d)
    dom = dict(d.pop("domain"))
    dom["budgets"] = tuple(dom.get("budgets", ()))
    dom["budget_fractions"] = tuple(dom.get("budget_fractions", ()))
    if isinstance(dom.get("schedule"), dict):  # a per-domain [domains.X.schedule]
        dom["schedule"] = Schedule(**dom["schedule"])
    sched = d.pop("schedule")
    return Cell(domain=DomainSetup(**dom), schedule=Schedule(**sched), **d)


def write_plan(out: Path, cells: list) -> list[dict[str, Any]]:
    """Write one plan entry per cell (matrix order). The first cell of each (domain, trainer, seed)
    group reports the shared round 0's training statistics (``protocol._record_train_stats``)."""
    from benchmark.protocol import run_path
    from benchmark.results import atomic_write_json

    seen: set[tuple] = set()
    entries = []
    for i, c in enumerate(cells):
        key = (c.domain.name, c.trainer, c.seed)
        entry = {
            "run_id": c.run_id,
            "run_dir": run_path(Path(""), c).as_posix(),
            "group": "/".join(map(str, key)),
            "order": i,
            "round0_stats": key not in seen,
            "n_rounds": len(c.budgets),
            "cell": cell_to_json(c),
        }
        seen.add(key)
        path = plan_dir(out) / f"{c.run_id}.json"
        if not path.is_file() or json.loads(path.read_text()) != entry:
            atomic_write_json(path, entry)
        entries.append(entry)
    return entries


def load_plan_entry(target: Path | str, cell_id: str | None = None) -> tuple[Path, dict[str, Any], Any]:
    """(runs folder, plan entry, Cell) from ``OUT CELL_ID`` or from a plan entry's path."""
    target = Path(target)
    if cell_id is None:
        if not target.is_file():
            raise SpecError(f"{target}: no such plan file (give RUNS_DIR CELL_ID, or OUT/_plan/RUN_ID.json)")
        path, out = target, target.parent.parent
    else:
        path, out = plan_dir(target) / f"{cell_id}.json", target
        if not path.is_file():
            raise SpecError(
                f"{path}: no such planned cell; `labelbudget run ... --out {target}` plans the matrix "
                "(`labelbudget status --runs DIR` lists the cells)"
            )
    try:
        entry = json.loads(path.read_text())
        cell = cell_from_json(entry["cell"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SpecError(f"{path}: not a plan entry ({exc})") from None
    if cell.run_id != entry["run_id"]:
        raise SpecError(
            f"{path}: this code gives the cell run id {cell.run_id}, the plan says {entry['run_id']} "
            "(the code changed since it was planned); re-run `labelbudget run` to plan it again"
        )
    return out, entry, cell


def execute_job(
    out: Path | str,
    cell_id: str | None,
    device: str = "cpu",
    retry_failed: bool = False,
    launcher: str = "run-cell",
    verbose: bool = False,
) -> Outcome:
    """Claim one planned cell and run it to completion (``labelbudget run-cell``)."""
    import torch

    from benchmark.data import load_domain_data
    from benchmark.protocol import run_cell, run_path
    from benchmark.runstate import LostLeaseError, claim_cell, record_failure

    out, entry, cell = load_plan_entry(out, cell_id)
    root = run_path(out, cell)
    lease, why = claim_cell(root, retry_failed=retry_failed, launcher=launcher)
    if lease is None:
        msg = {
            "done": "already done",
            "running": "a live worker is running it",
            "failed": "it failed before (see its traceback.txt); --retry-failed runs it again",
        }[why]
        return Outcome(cell.run_id, "done" if why == "done" else "not run", msg)
    old_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        torch.set_num_threads(cell.threads)
        data = load_domain_data(cell.domain, progress=False)
        recs = run_cell(cell, out, data, device=device, launcher=launcher, round0_stats=entry["round0_stats"])
        return Outcome(cell.run_id, "done", f"{len(recs)} round(s) in {time.perf_counter() - t0:.1f} s")
    except LostLeaseError as exc:
        return Outcome(cell.run_id, "lost", str(exc))
    except (LabelbudgetError, OSError):
        # bad input, a method breaking the protocol's contract, a full disk, a read-only folder: the
        # user has to act, so the run stops with one line; the cell is not marked failed, so the
        # same command finishes it once the cause is fixed
        raise
    except Exception as exc:
        info = record_failure(root, exc, lease)
        if verbose:
            print(info["traceback"], end="", flush=True)
        return Outcome(cell.run_id, "failed", info["error"])
    finally:
        lease.release()
        torch.set_num_threads(old_threads)
