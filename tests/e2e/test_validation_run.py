"""End to end: a warm-started run with a validation part scores every round on it, never labels it,
shares round 0 between the runs of a seed, and the leaderboard can be built on it."""

from __future__ import annotations

import json

from minimatrix import mini_matrix

from benchmark.cli import main
from benchmark.data import load_domain_data
from benchmark.spec import DomainSetup


def test_validation_run(tmp_path, dota_tiny_root):
    text = mini_matrix("val").replace(
        'methods = ["supervised+random"]', 'methods = ["supervised+random", "supervised+entropy"]'
    )
    path = tmp_path / "m.toml"
    path.write_text("validation = 0.2\nwarm_start = true\n" + text)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--launcher", "serial"]) == 0
    val_ids = set(load_domain_data(DomainSetup("dota", synthetic_size="tiny", validation=0.2)).val.ids)
    recs = [json.loads(x) for f in sorted(out.glob("dota/*/seed0/*/results.jsonl")) for x in f.open()]
    assert len(recs) == 4
    for r in recs:
        assert (
            r["validation"]["n"] == len(val_ids) and r["validation"]["primary"] in r["validation"]["metrics"]
        )
        assert r["warm_start"] is True
    for f in out.glob("dota/*/seed0/*/round*/labelled.ids"):
        assert val_ids.isdisjoint(f.read_text().split())
    for f in out.glob("dota/*/seed0/*/round*/acquired.ids"):
        assert val_ids.isdisjoint(f.read_text().split())
    # round 0 is trained once for the two runs of the seed, warm start or not
    assert sorted(r["timing"]["round0_reused"] for r in recs if r["round"] == 0) == [False, True]
    assert (
        main(["leaderboard", "--runs", str(out), "--out", str(tmp_path / "lb"), "--split", "validation"]) == 0
    )
    assert (tmp_path / "lb" / "dota.md").is_file()
