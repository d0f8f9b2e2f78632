"""Run folders, atomic files, round records and resume.

Layout of one run (``<out>/<domain>/<trainer>+<strategy>/seed<k>/<run_id>/``)::

    spec.json                the canonical cell spec (its hash is the run id)
    round<r>/labelled.ids    ids labelled when round r trained (one per line, in labelling order)
    round<r>/acquired.ids    ids the strategy picked after round r (empty in the last round)
    round<r>/predictions.json  test-split detections, COCO results JSON (image_id = sample id)
    round<r>/metrics.json    the metrics of round r
    round<r>/record.json     the round's self-describing record
    round<r>/DONE            written last: a round without it is redone on resume
    results.jsonl            all finished rounds' records, one JSON object per line
    DONE                     every round finished
    RUNNING                  the lease of the worker running it (heartbeat; ``benchmark.runstate``)
    FAILED, traceback.txt    the error of a cell that raised (``FAILED.<n>``: earlier attempts)
    attempts.jsonl           one line per claim (host, pid, launcher)

Every file is written to a temporary name in the same folder and renamed into place, so a killed
run never leaves a half-written file that looks like a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from benchmark.atomic import atomic_write_bytes as atomic_write_bytes  # re-exported
from benchmark.atomic import atomic_write_json, atomic_write_text, json_default
from benchmark.runstate import _pid_namespace, active_lease

RECORD_FIELDS_VOLATILE = ("timing", "provenance")  # excluded when comparing records for equality


def write_ids(path: str | Path, ids: list[str]) -> None:
    atomic_write_text(path, "".join(f"{i}\n" for i in ids))


def read_ids(path: str | Path) -> list[str]:
    return [x for x in Path(path).read_text().splitlines() if x]


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()


class RunDir:
    """The folder of one run and its per-round files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def round_dir(self, r: int) -> Path:
        return self.root / f"round{r}"

    def clear_stale_temps(self) -> list[Path]:
        """Remove the temp files a killed writer left behind (``.<name>.*.tmp`` of the atomic
        writes; the real files are never half-written). Call when (re)starting the run, which owns
        its folder. Returns what was removed."""
        gone = [p for p in self.root.rglob(".*.tmp") if p.is_file()]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def round_done(self, r: int) -> bool:
        return (self.round_dir(r) / "DONE").is_file()

    def read_record(self, r: int) -> dict[str, Any]:
        return json.loads((self.round_dir(r) / "record.json").read_text())

    def write_round(
        self,
        r: int,
        record: dict[str, Any],
        labelled: list[str],
        acquired: list[str],
        predictions: list[dict],
    ) -> None:
        d = self.round_dir(r)
        (d / "DONE").unlink(missing_ok=True)
        write_ids(d / "labelled.ids", labelled)
        write_ids(d / "acquired.ids", acquired)
        atomic_write_text(d / "predictions.json", json.dumps(predictions, separators=(",", ":")) + "\n")
        atomic_write_json(d / "metrics.json", record["metrics"])
        atomic_write_json(d / "record.json", record)
        atomic_write_text(d / "DONE", "ok\n")
        self.rewrite_jsonl()

    def records(self) -> list[dict[str, Any]]:
        out, r = [], 0
        while self.round_done(r):
            out.append(self.read_record(r))
            r += 1
        return out

    def rewrite_jsonl(self) -> None:
        lines = [json.dumps(rec, sort_keys=True, default=json_default) for rec in self.records()]
        atomic_write_text(self.root / "results.jsonl", "".join(x + "\n" for x in lines))

    def heartbeat(self, round_: int) -> None:
        """Say which round is running. Under a claim (``benchmark.runstate``) this updates the
        claim's lease, and raises ``LostLeaseError`` if another worker took the cell over;
        otherwise (``run_cell`` called directly) it writes a plain heartbeat file."""
        lease = active_lease(self.root / "RUNNING")
        if lease is not None:
            lease.refresh(round=round_)
            return
        now = time.time()
        info = {"pid": os.getpid(), "host": platform.node(), "pidns": _pid_namespace(), "round": round_}
        atomic_write_json(self.root / "RUNNING", {**info, "updated_unix": now})

    def finish(self) -> None:
        """Mark the run done. A claim's lease is released by its holder after this; a plain
        heartbeat file goes now."""
        atomic_write_text(self.root / "DONE", "ok\n")
        if active_lease(self.root / "RUNNING") is None:
            (self.root / "RUNNING").unlink(missing_ok=True)


def strip_volatile(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timings and provenance (what must be equal across identical runs)."""
    return {k: v for k, v in record.items() if k not in RECORD_FIELDS_VOLATILE}


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for p in ("labelbudget", "torch", "torchvision", "numpy", "faster-coco-eval", "pycocotools", "pandas"):
        try:
            out[p] = pkg_version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
