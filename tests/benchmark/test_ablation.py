"""``labelbudget ablate``: variants from ``Method.components``, paired table, doc markers."""

from __future__ import annotations

import json

import pytest

from baselines.base import METHODS
from baselines.supervised import Supervised
from benchmark.ablation import BEGIN, END, markdown, run_ablation, variants, write_into_doc
from benchmark.cli import _csv
from domains.base import SpecError


class _Probe(Supervised):
    """A supervised trainer whose vertical flips are its one ablatable component (test only)."""

    name = "_ablation_probe"
    components = {"vertical flips": "vertical_flip"}
    designed_for = "dota"


@pytest.fixture
def probe():
    METHODS._load()
    METHODS._items["_ablation_probe"] = _Probe
    yield "_ablation_probe"
    METHODS._items.pop("_ablation_probe", None)


def test_variants_and_errors(probe):
    vs = variants(probe)
    assert [v.trainer for v in vs] == ["supervised", probe, f"{probe}[vertical_flip=false]"]
    with pytest.raises(SpecError, match="no components"):
        variants("supervised")


def test_csv_keeps_bracketed_options_together():
    assert _csv("a[x=1,y=2]+random, b") == ["a[x=1,y=2]+random", "b"]


@pytest.mark.slow
def test_ablation_runs_and_writes_doc(probe, tmp_path):
    res = run_ablation(
        probe,
        matrix="tiny",
        seeds=[0, 1],
        out=tmp_path / "runs",
        launcher="serial",
        progress=False,
        share_with=tmp_path / "matrix_runs",
    )
    # round-0 models land in the shared cache of the matrix's runs folder
    assert (tmp_path / "runs" / "_cache").is_symlink()
    assert len(list((tmp_path / "matrix_runs" / "_cache" / "round0").glob("*/DONE"))) == 6
    rows = {r["trainer"]: r for r in res["rows"]}
    assert set(rows) == {"supervised", probe, f"{probe}[vertical_flip=false]"}
    assert res["setup"]["budget"] == 8 and res["setup"]["seeds"] == [0, 1]
    # the switched-off variant really ran with the switch off
    recs = [
        json.loads(x) for f in (tmp_path / "runs").rglob("results.jsonl") for x in f.read_text().splitlines()
    ]
    off = [r for r in recs if r["trainer"] == f"{probe}[vertical_flip=false]"]
    assert len(off) == 2 and all(r["hparams"]["trainer"]["vertical_flip"] is False for r in off)
    # paired differences: the full method against itself is exactly zero
    assert rows[probe]["vs_full"]["mean"] == 0.0
    sup = rows["supervised"]["per_seed"]
    full = rows[probe]["per_seed"]
    assert rows[probe]["vs_supervised"]["mean"] == pytest.approx(sum(full[s] - sup[s] for s in (0, 1)) / 2)
    doc = tmp_path / "m.md"
    doc.write_text(f"# card\n\n{BEGIN}\nold\n{END}\n\ntail\n")
    table = markdown(res, "labelbudget ablate _ablation_probe --matrix tiny")
    write_into_doc(doc, table)
    text = doc.read_text()
    assert "old" not in text and text.startswith("# card") and text.endswith("tail\n")
    assert "without vertical flips" in text and "labelbudget ablate _ablation_probe" in text
    with pytest.raises(SpecError, match="markers"):
        (tmp_path / "bare.md").write_text("no markers")
        write_into_doc(tmp_path / "bare.md", table)


def test_trainer_options_in_matrix():
    from benchmark.spec import load_matrix, parse_trainer

    assert parse_trainer("mean_teacher[threshold=0.8, cls_only=false]") == (
        "mean_teacher",
        {"threshold": 0.8, "cls_only": False},
    )
    m = load_matrix("tiny", methods=["supervised[vertical_flip=false]+entropy"])
    assert {c.trainer for c in m.cells} == {"supervised[vertical_flip=false]"}
    assert m.cells[0].method == "supervised[vertical_flip=false]+entropy"
    with pytest.raises(SpecError, match="unknown hyper-parameter"):
        load_matrix("tiny", methods=["supervised[nope=1]"])
    with pytest.raises(SpecError, match="key=value"):
        parse_trainer("supervised[oops]")


def test_summary_direction_is_the_primary_metrics(tmp_path):
    """MR-2 (pedestrian) is lower-is-better: the table says so (the direction is read per metric)."""
    import json

    from benchmark.ablation import Variant, summarise
    from benchmark.spec import load_matrix

    vs = [Variant("supervised", "supervised", None), Variant("full", "eucl", None)]
    cells = load_matrix("tiny", methods=["supervised", "eucl"], seeds=[0, 1]).cells
    from benchmark.records import SCHEMA_VERSION

    mr2 = "MR-2 Reasonable"
    lines = [
        {"schema_version": SCHEMA_VERSION, "run_id": c.run_id, "matrix": "tiny", "domain": "pedestrian",
         "dataset_version": "v", "method": c.method, "trainer": c.trainer, "strategy": c.strategy,
         "paradigm": {"trainer": "ssl", "strategy": "passive"}, "method_version": "m",
         "strategy_version": "s",
         "seed": c.seed, "round": 0, "budget_unit": "images", "budget_target": 8, "n_labelled": 8,
         "n_labelled_boxes": 20, "primary_metric": mr2, "higher_is_better": {mr2: False, "AP50": True},
         "metrics": {mr2: 0.5 - 0.1 * c.seed, "AP50": 0.3}, "timing": {}, "provenance": {}}
        for c in cells
    ]  # fmt: skip
    # a line that is not a record is skipped (and named if the table were incomplete)
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{oops\n")
    from benchmark.ablation import markdown

    s = summarise(tmp_path, cells, vs)
    assert s["setup"]["higher_is_better"] is False
    assert "(lower is better)" in markdown(s, "labelbudget ablate eucl")
    # a record that does not follow the schema is not used; the error names its file and line
    bad = dict(lines[0], metrics={mr2: "high"})
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(x) for x in [bad, *lines[1:]]) + "\n")
    with pytest.raises(
        SpecError, match=r"no record for .*results.jsonl:1: metric 'MR-2 Reasonable' is not a number"
    ):
        summarise(tmp_path, cells, vs)
