"""Read-only and full output folders. The tests run as any user (root
ignores permission bits, and mounting a small tmpfs needs privileges), so the failure is injected
where the bytes go to disk: ``os.fsync`` of an atomic write (a full disk reports ENOSPC at write or
fsync time), ``tempfile.mkstemp`` (a read-only folder refuses the create) and ``torch.save`` (a model
checkpoint half written when the disk fills). Each run must end in one line on stderr, exit 2, leave
no temp file behind, and the next run, once space returns, must give records identical to an
uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from minimatrix import mini_matrix

from benchmark.cli import main
from benchmark.results import strip_volatile

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")

MATRIX = mini_matrix("w")


def _run(matrix: Path, out: Path) -> list[str]:
    return ["run", str(matrix), "--out", str(out), "--launcher", "serial", "--quiet"]


def _records(out: Path) -> list[dict]:
    recs = [json.loads(x) for f in sorted(out.rglob("results.jsonl")) for x in f.read_text().splitlines()]
    return [strip_volatile(r) for r in recs]


def _temps(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".") and "tmp" in p.name]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[dict]]:
    """An uninterrupted run: the records the interrupted runs must end with."""
    d = tmp_path_factory.mktemp("ref")
    (d / "m.toml").write_text(MATRIX)
    assert main(_run(d / "m.toml", d / "out")) == 0
    recs = _records(d / "out")
    assert len(recs) == 2
    return d / "m.toml", recs


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def disk_full_at_fsync(monkeypatch, where: str) -> None:
    real = os.fsync

    def fsync(fd):
        path = _fd_path(fd)
        if where in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def read_only_at_create(monkeypatch, where: str) -> None:
    real = tempfile.mkstemp

    def mkstemp(*a, **k):
        d = str(k.get("dir", ""))
        if where in d:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(d, "x"))
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def disk_full_in_torch_save(monkeypatch, where: str) -> None:
    import torch

    real = torch.save

    def save(obj, f, *a, **k):
        if where in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")  # what a full disk leaves
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize(
    "inject, where, message",
    [
        (disk_full_at_fsync, "round1/.record.json", "No space left on device"),
        (disk_full_at_fsync, "results.jsonl", "No space left on device"),
        (disk_full_at_fsync, "leaderboards/curves/.dota.png", "No space left on device"),
        (read_only_at_create, "round1", "Read-only file system"),
        (read_only_at_create, "leaderboards", "Read-only file system"),
        (disk_full_in_torch_save, "model.pt", "No space left on device"),
    ],
    ids=["record", "results.jsonl", "curves png", "read-only round", "read-only leaderboards", "checkpoint"],
)
def test_full_or_read_only_output(inject, where, message, reference, tmp_path: Path, capsys, monkeypatch):
    matrix, expected = reference
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        inject(m, where)
        rc = main(_run(matrix, out))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelbudget: error: ") and message in lines[0], err
    assert _temps(out) == [], "no temp file left behind"
    # space returns: the same command finishes the matrix, with the records of an uninterrupted run
    assert main(_run(matrix, out)) == 0
    assert _records(out) == expected
    assert _temps(out) == []
