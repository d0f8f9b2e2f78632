"""Run state on the file system: leases, heartbeats and the five states of a cell.

Every launcher (serial, process, Ray, SLURM, or a user's own loop over ``labelbudget run-cell``)
resumes the same way because the runs folder, not the engine, says what is done. Any machine that
shares the folder sees the same state.

A cell's run folder moves through::

    planned  --claim-->  running  --->  done     (DONE: every round finished)
                           |     \\-->  failed   (FAILED + traceback.txt: the cell raised)
                           \\---------> stale    (RUNNING's heartbeat older than the limit, or its
                                                  process gone from this host)

``running`` is a **lease**: the file ``RUNNING`` (JSON: token, host, pid, round, started, updated),
created atomically (written to a temporary name, then ``os.link`` -- fails if the name exists, also
on NFS) and refreshed by a heartbeat thread every ``heartbeat_interval()`` seconds while the process
lives. A lease is **stale** when its ``updated`` time (and the file's mtime) is older than
``stale_limit()`` seconds, or when it names a process on this host (same PID namespace) that no
longer exists. A stale lease is broken by renaming it away and checking that the renamed file is
the one that was judged stale (otherwise it is put back), so two workers never both take it over.

The same lease guards the shared caches (round-0 models, source checkpoints): ``exclusive(path)``
waits while another worker holds a fresh lease on ``path`` and takes it over when that worker
died, so a crashed builder never blocks the others for longer than the stale limit. Results are
still published by an atomic rename, so even two builders (a lease broken while its holder was
merely frozen for longer than the limit) leave one complete copy.

Settings: ``LABELBUDGET_HEARTBEAT_S`` (default 30 s) and ``LABELBUDGET_STALE_AFTER`` (default
300 s), or ``labelbudget run/status/run-cell --heartbeat S --stale-after S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.atomic import atomic_write_json, atomic_write_text

STATES = ("planned", "running", "done", "failed", "stale")
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 300.0
UNREADABLE_GRACE_S = 10.0  # a lease file without content (foreign or legacy) counts as held this long


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {raw}")
    return v


def heartbeat_interval() -> float:
    return _env_float("LABELBUDGET_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)


def stale_limit() -> float:
    return _env_float("LABELBUDGET_STALE_AFTER", DEFAULT_STALE_AFTER_S)


def configure(heartbeat: float | None = None, stale_after: float | None = None) -> None:
    """Set the heartbeat interval and the stale limit for this process and its children."""
    if heartbeat is not None:
        if heartbeat <= 0:
            raise ValueError("--heartbeat must be positive")
        os.environ["LABELBUDGET_HEARTBEAT_S"] = str(heartbeat)
    if stale_after is not None:
        if stale_after <= 0:
            raise ValueError("--stale-after must be positive")
        os.environ["LABELBUDGET_STALE_AFTER"] = str(stale_after)
    if heartbeat_interval() * 2 > stale_limit():
        raise ValueError(
            f"the stale limit ({stale_limit():g} s) must be at least twice the heartbeat interval "
            f"({heartbeat_interval():g} s), or live runs would look stale"
        )


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LostLeaseError(RuntimeError):
    """This process's lease was taken over (it looked stale to another worker): stop writing."""


# ------------------------------------------------------------------------------------- leases


def read_lease(path: Path) -> dict[str, Any] | None:
    """The lease at ``path`` (plus ``_mtime``), ``{}``-like if unreadable, None if there is none."""
    path = Path(path)
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    info["_mtime"] = mtime
    return info


def lease_age(info: dict[str, Any], now: float | None = None) -> float:
    now = time.time() if now is None else now
    stamps = [info.get("_mtime") or 0.0]
    if isinstance(info.get("updated_unix"), int | float):
        stamps.append(float(info["updated_unix"]))
    return max(0.0, now - max(stamps))


def lease_stale(info: dict[str, Any], stale_after: float | None = None) -> str | None:
    """Why the lease is stale, or None while its holder counts as alive."""
    limit = stale_limit() if stale_after is None else stale_after
    age = lease_age(info)
    if "host" not in info:  # no content: a legacy or foreign file
        return None if age < UNREADABLE_GRACE_S else f"unreadable lease, {age:.0f} s old"
    pid = info.get("pid")
    same_ns = info.get("pidns", "") == _pid_namespace() and info.get("pidns")
    if info.get("host") == platform.node() and same_ns and isinstance(pid, int) and not pid_alive(pid):
        return f"process {pid} on {info['host']} is gone"
    if age > limit:
        return f"no heartbeat for {age:.0f} s (limit {limit:g} s)"
    return None


def break_stale(path: Path, observed: dict[str, Any]) -> bool:
    """Remove the stale lease ``observed`` at ``path``; False if it changed meanwhile (someone else
    broke it, or its holder refreshed it), in which case nothing of theirs is removed."""
    path = Path(path)
    moved = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.stale")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return False
    got = read_lease(moved) or {}
    same = got.get("token") == observed.get("token") and (
        observed.get("token") or got.get("_mtime") == observed.get("_mtime")
    )
    if not same:  # we moved a lease taken after we looked: give it back
        with contextlib.suppress(FileExistsError):
            os.link(moved, path)
        moved.unlink(missing_ok=True)
        return False
    moved.unlink(missing_ok=True)
    return True


_ACTIVE: dict[Path, Lease] = {}
_ACTIVE_LOCK = threading.Lock()


def active_lease(path: Path) -> Lease | None:
    """The lease this process holds on ``path``, if any."""
    with _ACTIVE_LOCK:
        return _ACTIVE.get(Path(path).absolute())


class Lease:
    """An exclusive, heart-beaten claim on ``path`` (see the module docstring)."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = Path(path)
        self.info = info
        self.token: str = info["token"]
        self.lost = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def try_acquire(cls, path: Path, **fields: Any) -> Lease | None:
        """Create the lease atomically; None if someone holds ``path`` already."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        info = {
            "token": uuid.uuid4().hex,
            "host": platform.node(),
            "pid": os.getpid(),
            "pidns": _pid_namespace(),
            "started": _now_iso(),
            "updated": _now_iso(),
            "updated_unix": now,
            **fields,
        }
        tmp = path.with_name(f".{path.name}.{info['token'][:12]}.tmp")
        atomic_write_json(tmp, info)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
        except OSError:  # a file system without hard links: exclusive create, then fill it
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "w") as f:
                f.write(tmp.read_text())
        finally:
            tmp.unlink(missing_ok=True)
        lease = cls(path, info)
        lease._start()
        return lease

    def _start(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE[self.path.absolute()] = self
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_interval()):
            try:
                self.refresh()
            except LostLeaseError:
                return
            except OSError:  # a transient file-system error: try again at the next beat
                continue

    def still_ours(self) -> bool:
        cur = read_lease(self.path)
        return cur is not None and cur.get("token") == self.token

    def refresh(self, **fields: Any) -> None:
        """Rewrite the lease with a new ``updated`` time (and ``fields``); raises
        ``LostLeaseError`` if it was taken over."""
        with self._lock:
            if self.lost or not self.still_ours():
                self.lost = True
                raise LostLeaseError(f"{self.path}: this worker's lease was taken over by another worker")
            self.info.update(fields, updated=_now_iso(), updated_unix=time.time())
            atomic_write_json(self.path, self.info)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.path.absolute(), None)
        with self._lock:
            if not self.lost and self.still_ours():
                self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(path: Path, what: str = "", poll: float | None = None) -> Iterator[Lease]:
    """Hold the lease on ``path`` while the block runs: wait while a live worker holds it, take it
    over when its holder is gone (stale), release it afterwards (also on errors)."""
    path = Path(path)
    poll = min(1.0, heartbeat_interval() / 2) if poll is None else poll
    while True:
        lease = Lease.try_acquire(path, what=what)
        if lease is not None:
            break
        info = read_lease(path)
        if info is not None and lease_stale(info) is not None:
            break_stale(path, info)
            continue
        time.sleep(poll)
    try:
        yield lease
    finally:
        lease.release()


# --------------------------------------------------------------------------------- cell state


@dataclass
class CellState:
    state: str  # one of STATES
    rounds_done: int
    n_rounds: int | None
    lease: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    reason: str = ""  # why stale

    def detail(self) -> str:
        if self.state in ("running", "stale") and self.lease:
            who = f"{self.lease.get('host', '?')} pid {self.lease.get('pid', '?')}"
            rnd = self.lease.get("round")
            at = f", round {rnd}" if rnd is not None else ""
            if self.state == "stale":
                return f"{who}{at}: {self.reason}"
            return f"{who}{at}, heartbeat {lease_age(self.lease):.0f} s ago"
        if self.state == "failed" and self.failure:
            return str(self.failure.get("error", "")).strip()
        return ""


def rounds_done(root: Path) -> int:
    r = 0
    while (Path(root) / f"round{r}" / "DONE").is_file():
        r += 1
    return r


def cell_state(root: Path, n_rounds: int | None = None, stale_after: float | None = None) -> CellState:
    """The state of the run folder ``root`` (which need not exist: then ``planned``)."""
    root = Path(root)
    k = rounds_done(root)
    if (root / "DONE").is_file():
        return CellState("done", k, n_rounds)
    lease = read_lease(root / "RUNNING")
    if lease is not None:
        why = lease_stale(lease, stale_after)
        if why is None:
            return CellState("running", k, n_rounds, lease)
        return CellState("stale", k, n_rounds, lease, reason=why)
    if (root / "FAILED").is_file():
        try:
            failure = json.loads((root / "FAILED").read_text())
        except (json.JSONDecodeError, OSError):
            failure = {"error": "(FAILED is unreadable)"}
        return CellState("failed", k, n_rounds, failure=failure)
    return CellState("planned", k, n_rounds)


def claim_cell(
    root: Path, retry_failed: bool = False, launcher: str = "", stale_after: float | None = None
) -> tuple[Lease | None, str]:
    """Try to make this process the cell's runner. Returns (lease, "claimed"), or (None, why not:
    "done", "running" (a live worker has it) or "failed" (without ``retry_failed``))."""
    root = Path(root)
    for _ in range(20):
        st = cell_state(root, stale_after=stale_after)
        if st.state in ("done", "running"):
            return None, st.state
        if st.state == "failed" and not retry_failed:
            return None, "failed"
        if st.state == "stale":
            break_stale(root / "RUNNING", st.lease or {})
            continue
        lease = Lease.try_acquire(root / "RUNNING", launcher=launcher, round=None)
        if lease is None:
            continue
        # the state may have moved between the look and the claim
        if (root / "DONE").is_file():
            lease.release()
            return None, "done"
        if (root / "FAILED").is_file():
            if not retry_failed:
                lease.release()
                return None, "failed"
            _archive_failure(root)
        _append_attempt(root, lease, launcher)
        return lease, "claimed"
    return None, "running"


def _archive_failure(root: Path) -> None:
    n = 1
    while (root / f"FAILED.{n}").exists():
        n += 1
    os.replace(root / "FAILED", root / f"FAILED.{n}")
    if (root / "traceback.txt").is_file():
        os.replace(root / "traceback.txt", root / f"traceback.{n}.txt")


def _append_attempt(root: Path, lease: Lease, launcher: str) -> None:
    """One line per claim in ``attempts.jsonl`` (only the lease holder writes it)."""
    line = json.dumps(
        {k: lease.info.get(k) for k in ("token", "host", "pid", "started")} | {"launcher": launcher},
        sort_keys=True,
    )
    path = root / "attempts.jsonl"
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, old + line + "\n")


def record_failure(root: Path, exc: BaseException, lease: Lease | None) -> dict[str, Any]:
    """Write ``FAILED`` (JSON: the error line, the traceback, where and when) and ``traceback.txt``."""
    tb = "".join(traceback.format_exception(exc))
    last = traceback.format_exception_only(exc)[-1].strip()
    info = {
        "error": last,
        "traceback": tb,
        "host": platform.node(),
        "pid": os.getpid(),
        "round": (lease.info.get("round") if lease else None),
        "time": _now_iso(),
    }
    atomic_write_text(Path(root) / "traceback.txt", tb)
    atomic_write_json(Path(root) / "FAILED", info)
    return info


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))

    def add(self, state: str) -> None:
        self.counts[state] += 1

    def line(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{self.counts[s]} {s}" for s in STATES)
        return f"{total} cells: {parts}"
