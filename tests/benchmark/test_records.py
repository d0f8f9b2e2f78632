"""The round record (``benchmark.records``): the schema the protocol writes and every reader checks,
its errors (naming file and line), and the one seed derivation (``benchmark.spec.Seeds``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from baselines.base import METHODS, STRATEGIES
from benchmark.records import (
    SCHEMA_VERSION,
    RecordError,
    RoundRecord,
    load_results,
    read_record,
    read_results,
    validate,
)
from benchmark.spec import Seeds, load_matrix, seed_hash

GOLDEN = Path(__file__).parents[1] / "golden" / "sweep"

# the keys of a record as the protocol has always written them, in order
PROTOCOL_KEYS = [
    "schema_version", "run_id", "matrix", "domain", "domain_options", "data", "dataset_version",
    "label_unit", "method", "trainer", "strategy", "paradigm", "method_version", "strategy_version",
    "hparams", "seed", "seeds", "round", "n_rounds", "budget_unit", "budget_target", "n_labelled",
    "n_labelled_units", "n_labelled_boxes", "labelled_sha256", "n_acquired", "metrics", "primary_metric",
    "higher_is_better", "per_class", "long_tail", "metric_impl", "eval_split", "n_test", "validation",
    "detector", "detector_options", "schedule", "threads", "warm_start", "reference", "init",
    "source_checkpoint", "train_stats", "timing", "provenance",
]  # fmt: skip


def golden_record(seed: int = 0, rnd: int = 0) -> dict:
    path = next(GOLDEN.glob(f"dota/supervised+random/seed{seed}/*/round{rnd}/record.json"))
    return json.loads(path.read_text())


class FakePool:
    """Three single-image units with 2, 3 and 4 boxes."""

    boxes = {"a": 2, "b": 3, "c": 4}

    def unit_of(self, sid: str) -> str:
        return sid

    def unit_boxes(self, ids: list[str]) -> int:
        return sum(self.boxes[i] for i in set(ids))


def built(**start) -> RoundRecord:
    cell = load_matrix("tiny", methods=["supervised+random"]).cells[0]
    start = start or {
        "init": "scratch",
        "source_checkpoint": None,
        "source_train_s": 0.0,
        "source_reused": False,
    }
    evaluation = {
        "metrics": {"mAP50": 0.25, "mAP50-95": 0.1},
        "primary": "mAP50",
        "higher_is_better": {"mAP50": True, "mAP50-95": True},
        "per_class": {"plane": {"AP50": 0.25}},
        "impl": {"mAP50": "x", "mAP50-95": "y"},
    }
    return RoundRecord.build(
        cell,
        METHODS.get("supervised")(),
        STRATEGIES.get("random")(),
        round=1,
        n_rounds=2,
        target=16,
        pool=FakePool(),
        label_unit="patch",
        n_test=24,
        labelled=["a", "b"],
        acquired=["c"],
        evaluation=evaluation,
        start=start,
        train_stats={},
        timing={"train_s": 1.0},
        provenance={"device": "cpu"},
    )


def test_build_writes_the_protocols_keys_in_its_order():
    rec = built().check()
    obj = rec.to_json()
    assert list(obj) == PROTOCOL_KEYS
    assert obj["schema_version"] == SCHEMA_VERSION
    assert (obj["n_labelled"], obj["n_labelled_units"], obj["n_labelled_boxes"], obj["n_acquired"]) == (
        2,
        2,
        5,
        1,
    )
    assert obj["seeds"] == Seeds(0).of_round(1)
    assert obj["long_tail"] == {} and obj["init"] == "scratch" and obj["source_checkpoint"] is None
    assert "source_train_s" not in obj  # a start key that names no field goes to the timing, not here
    assert validate(obj) is None
    assert RoundRecord.from_json(json.loads(json.dumps(obj))) == rec


def test_start_fields_are_taken_by_name():
    rec = built(init="source", source_checkpoint="ab" * 32, source_train_s=3.0)
    assert (rec.init, rec.source_checkpoint) == ("source", "ab" * 32)


def test_golden_records_round_trip_and_unknown_keys_are_kept():
    obj = golden_record()
    rec = RoundRecord.from_json(obj, "golden")
    out = rec.to_json()
    assert {k: out[k] for k in obj} == obj  # older records lack some optional fields: None in the object
    assert out["train_stats"] is None and out["init"] is None
    newer = {**obj, "detector_checkpoint": {"sha256": "x"}}
    again = RoundRecord.from_json(newer)
    assert again.extra == {"detector_checkpoint": {"sha256": "x"}}
    assert again.to_json()["detector_checkpoint"] == {"sha256": "x"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"schema_version": 2}, "schema version 2 != 1"),
        ({"seed": "0"}, "field 'seed' is str, expected int"),
        ({"n_labelled": True}, "field 'n_labelled' is bool, expected int"),
        ({"metrics": {}}, "no metrics"),
        ({"metrics": {"mAP50": "high", "mAP50-95": 0.1}}, "metric 'mAP50' is not a number"),
        ({"higher_is_better": {"mAP50": True}}, "higher_is_better of metric 'mAP50-95' missing"),
        ({"primary_metric": "AP"}, "primary metric 'AP' not among the metrics"),
        ({"method": "supervised+entropy"}, "method 'supervised+entropy' is not trainer+strategy"),
        ({"domain": "../x"}, "domain '../x' is not a valid name"),
        ({"budget_unit": "pixels"}, "budget_unit 'pixels' is neither 'images' nor 'boxes'"),
        ({"reference": "yes"}, "field 'reference' is str, expected bool"),  # an optional field, present
        ({"n_test": 2.5}, "field 'n_test' is float, expected int"),
    ],
)
def test_validate_says_why(change, why):
    obj = {**golden_record(), **change}
    assert why in validate(obj)
    with pytest.raises(RecordError, match=f"^somewhere:3: {re.escape(why)}"):
        RoundRecord.from_json(obj, "somewhere:3")


def test_optional_fields_may_be_missing_or_null_required_ones_not():
    obj = golden_record()
    assert validate({k: v for k, v in obj.items() if k not in ("per_class", "hparams")}) is None
    assert validate({**obj, "source_checkpoint": None, "reference": None}) is None
    assert validate({k: v for k, v in obj.items() if k != "timing"}) == "field 'timing' missing"
    assert validate({**obj, "timing": None}) == "field 'timing' is NoneType, expected dict"
    assert validate([obj]) == "not a JSON object"


def test_readers_name_file_and_line(tmp_path):
    good = golden_record()
    run = tmp_path / "runs" / "dota" / "r1"
    run.mkdir(parents=True)
    lines = [
        json.dumps(good),
        "",
        "{not json",
        json.dumps({**good, "round": "1"}),
        json.dumps({**good, "round": 1}),
    ]
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    recs, problems = read_results(run / "results.jsonl", "r1.jsonl")
    assert [r["round"] for r in recs] == [0, 1]
    assert problems[0].startswith("r1.jsonl:3: not JSON")
    assert problems[1] == "r1.jsonl:4: field 'round' is str, expected int"
    recs, problems = load_results(tmp_path / "runs")
    assert len(recs) == 2 and problems[1].startswith("dota/r1/results.jsonl:4: ")
    # a finished round's record.json read back on resume
    (run / "record.json").write_text(json.dumps({**good, "metrics": {}}))
    with pytest.raises(RecordError, match=r"record\.json: no metrics"):
        read_record(run / "record.json")
    (run / "record.json").write_text("{")
    with pytest.raises(RecordError, match=r"record\.json: not JSON"):
        read_record(run / "record.json")
    (run / "record.json").write_text(json.dumps(good))
    assert read_record(run / "record.json") == good


def test_seeds_are_derived_once_and_match_the_records():
    s = Seeds(3)
    assert (s.init, s.weights, s.source) == tuple(seed_hash(3, p) for p in ("init", "weights", "source"))
    assert (s.train(2), s.query(2)) == (seed_hash(3, "train", 2), seed_hash(3, "query", 2))
    assert s.train(0) != s.train(1) != s.query(1)
    # the golden sweep's records were written with the seeds derived before ``Seeds`` existed
    for seed, rnd in ((0, 0), (1, 1), (2, 2)):
        assert Seeds(seed).of_round(rnd) == golden_record(seed, rnd)["seeds"]
    assert load_matrix("tiny").cells[0].seeds == Seeds(0)
