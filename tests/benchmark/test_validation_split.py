"""The labelled validation part held out of the pool (``validation`` in a matrix): disjoint from the
pool by group, the same for every seed, scored every round, and the leaderboard's ``--split
validation`` view of it."""

from __future__ import annotations

import pytest
from minimatrix import mini_matrix

from benchmark.data import load_domain_data, split_validation
from benchmark.leaderboard.write import validation_view
from benchmark.spec import DomainSetup, load_matrix
from domains.base import DomainDataset, SpecError


@pytest.fixture(scope="module")
def dota_pool(dota_tiny_root):
    return load_domain_data(DomainSetup("dota", synthetic_size="tiny")).pool


def test_split_is_by_group_disjoint_and_fixed(dota_pool):
    pool, val = split_validation(dota_pool, 0.25)
    groups = {s.group for s in dota_pool}
    assert {s.group for s in pool}.isdisjoint({s.group for s in val})
    assert len(pool) + len(val) == len(dota_pool)
    assert len({s.group for s in val}) == max(1, round(0.25 * len(groups)))
    again_pool, again_val = split_validation(dota_pool, 0.25)
    assert again_val.ids == val.ids and again_pool.ids == pool.ids
    assert val.version != pool.version and pool.version != dota_pool.version
    # DOTA's scene-level protocol scores each part against its own whole scenes
    assert {sc.group for sc in val.scenes} == {s.group for s in val}
    assert {sc.group for sc in pool.scenes} == {s.group for s in pool}


def test_a_share_that_leaves_no_pool_is_an_error(dota_pool):
    one = dota_pool[0].group
    single = DomainDataset("dota", "pool", dota_pool.classes, [s for s in dota_pool if s.group == one])
    with pytest.raises(SpecError, match="leaves no pool"):
        split_validation(single, 0.1)


def test_loaded_data_holds_the_part_out(dota_tiny_root):
    plain = load_domain_data(DomainSetup("dota", synthetic_size="tiny"))
    data = load_domain_data(DomainSetup("dota", synthetic_size="tiny", validation=0.2))
    assert data.val is not None and plain.val is None
    assert set(data.pool.ids).isdisjoint(data.val.ids)
    assert set(data.pool.ids) | set(data.val.ids) == set(plain.pool.ids)
    assert data.version != plain.version  # records of the two never mix
    sid = data.val.ids[0]
    assert data.images[sid].shape[0] == 3  # the image store serves the validation part too


@pytest.mark.parametrize("bad", ["0.5", "-0.1", "true", '"10%"'])
def test_matrix_rejects_bad_shares(tmp_path, bad):
    path = tmp_path / "m.toml"
    path.write_text(f"validation = {bad}\n" + mini_matrix())
    with pytest.raises(SpecError, match="validation of dota"):
        load_matrix(str(path))


def test_run_ids_change_only_with_a_validation_part(tmp_path):
    a, b, c = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    a.write_text(mini_matrix())
    b.write_text("validation = 0.0\n" + mini_matrix())
    c.write_text("validation = 0.2\n" + mini_matrix())
    ids = [load_matrix(str(p)).cells[0].run_id for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert load_matrix(str(c)).cells[0].domain.data_label()["validation"] == 0.2


def test_validation_view_swaps_in_the_validation_scores():
    rec = {
        "domain": "d",
        "method": "m+s",
        "seed": 0,
        "round": 0,
        "metrics": {"mAP50": 0.9},
        "primary_metric": "mAP50",
        "per_class": {"a": 1.0},
        "validation": {"n": 7, "metrics": {"mAP50": 0.4}, "primary": "mAP50"},
    }
    out, skipped = validation_view([rec, {**rec, "round": 1, "validation": None}])
    assert len(out) == 1 and out[0]["metrics"] == {"mAP50": 0.4} and out[0]["eval_split"] == "validation"
    assert out[0]["per_class"] == {} and out[0]["n_test"] == 7
    assert len(skipped) == 1 and "round 1" in skipped[0]
