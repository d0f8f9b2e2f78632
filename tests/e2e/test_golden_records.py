"""Golden records: a short real run of every trainer of the default matrix, compared exactly.

``tests/golden/records/matrix.toml`` (the seven trainers of ``benchmark/matrices/default.toml``:
supervised+random, supervised+entropy, mean_teacher+random, eucl, dil, sar_source_free,
triple_ema; 2 rounds of 12 iterations, 1 seed, synthetic DOTA (tiny, oriented head) and synthetic
sonar (tiny, horizontal head, with a source split: the source checkpoint and SAR's discriminator))
runs through the real protocol (``runner.prepare`` and ``protocol.run_cell``, one thread). Per cell
and round the test keeps the record (metrics, per-class AP, selection sizes, labelled-set hash, the
trainer's ``train_stats``, the source checkpoint's hash), the acquired ids in order, and every loss
the trainers log (``train_progress``: every 10 iterations and at the end, the source phase's
included) and compares them with ``tests/golden/records/expected.json`` with ``==``: a speed fix
that claims to be exact must leave every float bit-identical. Timings, provenance, run ids and
code versions (``*_version``, which hash the source code) are left out.

When a deliberate result-changing commit lands, regenerate the fixture in that commit and say
in its message why the results changed::

    export OMP_NUM_THREADS=1
    PYTHONPATH=. python tests/e2e/test_golden_records.py --write

(about a minute on one core; the command writes ``tests/golden/records/expected.json``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "records"
MATRIX = GOLDEN / "matrix.toml"
EXPECTED = GOLDEN / "expected.json"

# record fields that depend on the code's text, the clock or the machine, not on the results
VOLATILE = {"timing", "provenance", "run_id", "method_version", "strategy_version", "matrix"}


def _stable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(rec.items()) if k not in VOLATILE and not k.endswith("_version")}


def golden_records(out: Path) -> dict[str, Any]:
    """Run the golden matrix into ``out`` (one thread, serially, in the matrix's cell order) and
    return ``{cell: {"rounds": [...], "source_losses": [...]}}``."""
    import torch

    from benchmark.data import load_domain_data
    from benchmark.protocol import run_cell, run_path
    from benchmark.runner import prepare
    from benchmark.spec import load_matrix

    matrix = load_matrix(str(MATRIX))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cells = prepare(matrix, out, progress=False)
        result: dict[str, Any] = {}
        for cell in cells:
            data = load_domain_data(cell.domain, progress=False)
            logged: list[dict[str, Any]] = []
            rounds: list[dict[str, Any]] = []

            def progress(it: int, total: int, losses: dict[str, float], logged=logged) -> None:
                logged.append({"it": it, "of": total, **{k: float(v) for k, v in sorted(losses.items())}})

            def on_round(cell_, r: int, rec: dict[str, Any], logged=logged, rounds=rounds) -> None:
                rounds.append({"record": _stable(rec), "losses": list(logged)})
                logged.clear()

            recs = run_cell(cell, out, data, train_progress=progress, on_round=on_round)
            assert len(recs) == len(rounds) == len(cell.budgets)
            rd = run_path(out, cell)
            for r, entry in enumerate(rounds):
                acq = rd / f"round{r}" / "acquired.ids"
                entry["acquired"] = acq.read_text().split() if acq.exists() else []
            key = f"{cell.domain.name}/{cell.trainer}+{cell.strategy}/seed{cell.seed}"
            result[key] = {"rounds": rounds}
        return result
    finally:
        torch.set_num_threads(old_threads)


def _normalise(obj: Any) -> Any:
    """What a JSON round trip makes of ``obj`` (tuples become lists; floats keep every bit)."""
    return json.loads(json.dumps(obj))


def _first_difference(got: Any, want: Any, path: str = "") -> str | None:
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            if k not in got or k not in want:
                return f"{path}/{k}: only in {'expected' if k in want else 'this run'}"
            d = _first_difference(got[k], want[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            d = _first_difference(g, w, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if got == want else f"{path}: {got!r} != expected {want!r}"


@pytest.mark.slow
def test_golden_records_are_bit_identical(tmp_path):
    assert EXPECTED.exists(), f"{EXPECTED} is missing: generate it (see this module's docstring)"
    want = json.loads(EXPECTED.read_text())
    got = _normalise(golden_records(tmp_path / "runs"))
    diff = _first_difference(got, want)
    assert diff is None, (
        f"the golden records changed ({diff}). If the change is deliberate, regenerate "
        f"{EXPECTED.relative_to(ROOT)} as this module's docstring says and say why in the commit."
    )
    assert got == want


def test_stable_fields_drop_only_volatile_ones():
    rec = {
        "metrics": {"mAP50": 0.5},
        "method_version": "a",
        "strategy_version": "b",
        "dataset_version": "c",
        "timing": {"train_s": 1.0},
        "provenance": {},
        "run_id": "x",
        "matrix": "m",
        "train_stats": {"keep_rate": 0.9},
    }
    assert _stable(rec) == {"metrics": {"mAP50": 0.5}, "train_stats": {"keep_rate": 0.9}}
    one_ulp = _first_difference({"a": [1.0, 2.0]}, {"a": [1.0, 2.0000000000000004]})
    assert one_ulp == "/a[1]: 2.0 != expected 2.0000000000000004"


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        print("usage: python tests/e2e/test_golden_records.py --write", file=sys.stderr)
        return 2
    os.environ.setdefault("LABELBUDGET_CACHE", str(Path(tempfile.gettempdir()) / "lbcache-golden-records"))
    with tempfile.TemporaryDirectory() as tmp:
        got = _normalise(golden_records(Path(tmp) / "runs"))
    EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED} ({len(got)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
