"""The round record: one self-describing JSON object per run and round.

``benchmark.protocol`` builds one (``RoundRecord.build``) when a round finishes and writes it to
``round<r>/record.json`` and ``results.jsonl`` (``RoundRecord.to_json``); the leaderboard and the
ablation read them back (``read_results`` / ``load_results``, which check each line against the
schema and name the file and line of a bad one). The fields of ``RoundRecord`` are the schema: a
field without a default is required, one with a default (None) may be absent from records written
before it existed or by hand; a present field must have the declared type. Unknown keys (a newer
writer's fields) are kept, never an error.

Adding a field is one line in ``RoundRecord`` (with a default, so older records still load); give
its value in ``RoundRecord.build`` -- a field of the run's start (``init``, ``source_checkpoint``,
...) is taken from the ``start`` mapping by name, so it needs no other change.

``SCHEMA_VERSION`` is the record format's version; a reader accepts records of this version only
(``validate``). It is not the cell spec's ``benchmark.spec.SCHEMA_VERSION``, which is part of every
run id.
"""

from __future__ import annotations

import json
import numbers
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.results import git_commit, ids_sha256, package_versions
from domains.base import SpecError

SCHEMA_VERSION = 1

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class RecordError(SpecError):
    """A record that does not follow the schema (the message names where it was read)."""


@dataclass(kw_only=True)
class RoundRecord:
    """One round of one run, its fields in the order the protocol has always written them. A field
    without a default is required (the leaderboard needs it); one with a default may be missing
    from old or hand-written records. ``extra``: the keys of a read record this code does not know."""

    schema_version: int
    run_id: str
    matrix: str
    domain: str
    domain_options: dict[str, Any] | None = None
    data: dict[str, Any] | None = None  # the data label (synthetic size/seed, or real root/dataset)
    dataset_version: str
    label_unit: str | None = None
    method: str  # "<trainer>+<strategy>"
    trainer: str
    strategy: str
    paradigm: dict[str, Any]  # {"trainer": supervised|ssl|sfda, "strategy": passive|al}
    method_version: str
    strategy_version: str
    hparams: dict[str, Any] | None = None  # {"trainer": {...}, "strategy": {...}}
    seed: int
    seeds: dict[str, Any] | None = None  # this round's seeds by purpose (``benchmark.spec.Seeds``)
    round: int
    n_rounds: int | None = None
    budget_unit: str  # images | boxes
    budget_target: int
    n_labelled: int
    n_labelled_units: int | None = None
    n_labelled_boxes: int
    labelled_sha256: str | None = None
    n_acquired: int | None = None
    metrics: dict[str, Any]  # name -> value
    primary_metric: str
    higher_is_better: dict[str, Any]  # metric name -> bool
    per_class: dict[str, Any] | None = None
    long_tail: dict[str, Any] | None = None
    metric_impl: dict[str, Any] | None = None
    eval_split: str | None = None
    n_test: int | None = None
    # the same model scored on the pool's held-out validation part (``benchmark.data``), when the
    # matrix has one: {"n": images, "metrics": {...}, "primary": name}; defaults are chosen on it
    validation: dict[str, Any] | None = None
    detector: str | None = None
    detector_options: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    threads: int | None = None
    warm_start: bool | None = None
    reference: bool | None = None
    init: str | None = None  # "scratch" | "pretrained" (the shared start) | "source"
    source_checkpoint: str | None = None  # sha256 of the source checkpoint, if any
    train_stats: dict[str, Any] | None = None
    timing: dict[str, Any]  # volatile: seconds, reuse flags, memory
    provenance: dict[str, Any]  # volatile: commit, packages, device, launcher, finished_at
    # not a field of the JSON object: the keys of a read record this code does not know
    extra: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"json": False})

    # ------------------------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        cell: Any,
        method: Any,
        strategy: Any,
        *,
        round: int,
        n_rounds: int,
        target: int,
        pool: Any,
        label_unit: str,
        n_test: int,
        labelled: list[str],
        acquired: list[str],
        evaluation: Mapping[str, Any],
        start: Mapping[str, Any],
        train_stats: dict[str, Any],
        timing: dict[str, Any],
        provenance: dict[str, Any],
        validation: dict[str, Any] | None = None,
    ) -> RoundRecord:
        """The record of round ``round`` of ``cell`` (a ``benchmark.spec.Cell``): ``method`` /
        ``strategy`` the run's trainer and strategy objects; ``pool`` the labelled pool
        (``DomainDataset``) and ``labelled`` / ``acquired`` its ids this round trained on / picked;
        ``label_unit`` the domain's labelling unit; ``n_test`` the test split's size; ``evaluation``
        what ``benchmark.evaluation.evaluate_domain`` returned; ``start`` the start fields
        (``benchmark.source.source_record``: every key that names a field is taken)."""
        known = {f.name for f in fields(cls)}
        return cls(
            schema_version=SCHEMA_VERSION,
            run_id=cell.run_id,
            matrix=cell.matrix,
            domain=cell.domain.name,
            domain_options=cell.domain.options,
            data=cell.domain.data_label(),
            dataset_version=cell.dataset_version,
            label_unit=label_unit,
            method=cell.method,
            trainer=cell.trainer,
            strategy=cell.strategy,
            paradigm={"trainer": method.paradigm, "strategy": strategy.paradigm},
            method_version=method.version(),
            strategy_version=strategy.version(),
            hparams={"trainer": method.hp, "strategy": strategy.hp},
            seed=cell.seed,
            seeds=cell.seeds.of_round(round),
            round=round,
            n_rounds=n_rounds,
            budget_unit=cell.budget_unit,
            budget_target=target,
            n_labelled=len(labelled),
            n_labelled_units=len({pool.unit_of(i) for i in labelled}),
            n_labelled_boxes=pool.unit_boxes(labelled),
            labelled_sha256=ids_sha256(labelled),
            n_acquired=len(acquired),
            metrics=evaluation["metrics"],
            primary_metric=evaluation["primary"],
            higher_is_better=evaluation["higher_is_better"],
            per_class=evaluation["per_class"],
            long_tail=evaluation.get("long_tail", {}),
            metric_impl=evaluation["impl"],
            eval_split="test",
            n_test=n_test,
            validation=validation,
            detector=cell.detector,
            detector_options=cell.detector_options,
            schedule=cell.canonical()["schedule"],
            threads=cell.threads,
            warm_start=cell.warm_start,
            reference=cell.reference,
            train_stats=train_stats,
            timing=timing,
            provenance=provenance,
            **{k: v for k, v in start.items() if k in known},
        )

    # ------------------------------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        """The JSON object (every field, then the unknown keys it was read with)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_json(cls, obj: Any, where: str = "record") -> RoundRecord:
        """The record of a parsed JSON object; ``RecordError`` (naming ``where``, e.g.
        ``path:line``) if it does not follow the schema."""
        why = validate(obj)
        if why is not None:
            raise RecordError(f"{where}: {why}")
        names = _json_fields()
        return cls(
            **{k: v for k, v in obj.items() if k in names},
            extra={k: v for k, v in obj.items() if k not in names},
        )

    def check(self, where: str = "record") -> RoundRecord:
        """``self``, or ``RecordError`` if it would not load back (``validate`` of ``to_json``)."""
        why = validate(self.to_json())
        if why is not None:
            raise RecordError(f"{where}: {why}")
        return self


# ----------------------------------------------------------------------------------- validation


@cache
def _json_fields() -> dict[str, tuple[tuple[type, ...], bool]]:
    """Field name -> (accepted types, required) of every JSON field of ``RoundRecord``."""
    hints = typing.get_type_hints(RoundRecord)
    out = {}
    for f in fields(RoundRecord):
        if not f.metadata.get("json", True):
            continue
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = tuple(_JSON_TYPE[typing.get_origin(a) or a] for a in args if a is not type(None))
        out[f.name] = (kinds, f.default is MISSING and f.default_factory is MISSING)
    return out


# a declared type -> the Python values that stand for it (ints and floats as numbers, never bools)
_JSON_TYPE: dict[Any, type] = {
    int: numbers.Integral,
    float: numbers.Real,
    str: str,
    bool: bool,
    dict: dict,
    list: list,
}
_TYPE_NAME = {numbers.Integral: "int", numbers.Real: "float"}


def _type_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def validate(obj: Any) -> str | None:
    """Why ``obj`` (a parsed JSON object) is not a round record of this schema, or None: the schema
    version, each field's presence and type, and the cross-field rules (a domain name fit for a file
    name, the budget unit, numeric metrics with a direction each, the primary metric among them,
    ``method == trainer+strategy``)."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    if obj.get("schema_version") != SCHEMA_VERSION:
        return f"schema version {obj.get('schema_version')!r} != {SCHEMA_VERSION}"
    for key, (kinds, required) in _json_fields().items():
        if key not in obj or (obj[key] is None and not required):
            if required:
                return f"field {key!r} missing"
            continue
        if not _type_ok(obj[key], kinds):
            expected = _TYPE_NAME.get(kinds[0], kinds[0].__name__)
            return f"field {key!r} is {type(obj[key]).__name__}, expected {expected}"
    if not _SAFE_NAME.fullmatch(obj["domain"]):  # it names output files: <out>/<domain>.md
        return f"domain {obj['domain'][:80]!r} is not a valid name ([A-Za-z0-9_.-]+, no leading dot)"
    if obj["budget_unit"] not in ("images", "boxes"):
        return f"budget_unit {obj['budget_unit']!r} is neither 'images' nor 'boxes'"
    if not obj["metrics"]:
        return "no metrics"
    for name, value in obj["metrics"].items():
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return f"metric {name!r} is not a number"
        if not isinstance(obj["higher_is_better"].get(name), bool):
            return f"higher_is_better of metric {name!r} missing"
    if obj["primary_metric"] not in obj["metrics"]:
        return f"primary metric {obj['primary_metric']!r} not among the metrics"
    if obj["method"] != f"{obj['trainer']}+{obj['strategy']}":
        return f"method {obj['method']!r} is not trainer+strategy"
    return None


# ------------------------------------------------------------------------------------- reading


def read_results(path: Path, name: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The valid records of one ``results.jsonl`` (as JSON objects, in file order) and the problems
    of the other lines (``name:line: reason``; ``name`` defaults to the path)."""
    name = str(path) if name is None else name
    records, problems = [], []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{name}:{i}: not JSON ({exc})")
            continue
        why = validate(obj)
        if why is not None:
            problems.append(f"{name}:{i}: {why}")
            continue
        records.append(obj)
    return records, problems


def load_results(runs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every valid record of every ``results.jsonl`` under ``runs`` (files in sorted order) and the
    problems found (paths relative to ``runs``)."""
    runs = Path(runs)
    records, problems = [], []
    for f in sorted(runs.rglob("results.jsonl")):
        recs, probs = read_results(f, f.relative_to(runs).as_posix())
        records += recs
        problems += probs
    return records, problems


def read_record(path: Path) -> dict[str, Any]:
    """One ``record.json`` (a finished round's record, read back on resume); ``RecordError`` naming
    the file if it is not JSON or not a record."""
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not JSON ({exc})") from None
    RoundRecord.from_json(obj, str(path))  # raises if it does not follow the schema
    return obj


# ------------------------------------------------------------------------------ record pieces


def provenance(device_name: str, launcher: str) -> dict[str, Any]:
    """The record's ``provenance``: commit, packages, device, launcher and when the round finished."""
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "device": device_name,
        "launcher": launcher,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ"),
    }
