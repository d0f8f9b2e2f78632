"""Nothing lost, nothing escapes: ``data synth`` never deletes a user's
files, and names and paths read from files (domain names in records, matrix names, COCO file names,
CrowdHuman IDs, sonar split ids) cannot make a command read or write outside its roots. Symlinks
inside a dataset root are followed (the user's own layout)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bad_trees import build_coco, build_crowdhuman, build_sonar, ch_line, coco_doc, png

from benchmark.cli import main
from domains.base import AnnotationError, SpecError

GOLDEN = Path(__file__).parents[1] / "golden" / "sweep"


# ----------------------------------------------------------------------------------- data synth


def test_synth_never_deletes_user_files(tmp_path: Path, capsys, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("three years of work\n")
    (out / "data").mkdir()
    (out / "data" / "x.bin").write_bytes(b"\x00\x01")
    assert main(["data", "synth", "sonar", str(out), "--size", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not empty" in err and "refusing" in err
    assert (out / "thesis.tex").read_text() == "three years of work\n"
    assert (out / "data" / "x.bin").read_bytes() == b"\x00\x01"
    # --force does not change that: it only replaces a tree this tool wrote
    assert main(["data", "synth", "sonar", str(out), "--size", "tiny", "--force"]) == 2
    assert (out / "thesis.tex").is_file() and sorted(p.name for p in out.iterdir()) == ["data", "thesis.tex"]
    # `data synth sonar .` in a folder with a file: refused, nothing deleted, no temp folder left
    monkeypatch.chdir(out)
    assert main(["data", "synth", "sonar", ".", "--size", "tiny"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["data", "thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_synth_replaces_only_its_own_trees(tmp_path: Path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "sonar", str(out), "--size", "tiny"]) == 0
    assert (out / ".labelbudget-synthetic").is_file()
    # the same domain again: replaced (a re-synth), no --force needed
    assert main(["data", "synth", "sonar", str(out), "--size", "tiny", "--seed", "1"]) == 0
    # another domain: only with --force
    assert main(["data", "synth", "pedestrian", str(out), "--size", "tiny"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "Annotations").is_dir()
    assert main(["data", "synth", "pedestrian", str(out), "--size", "tiny", "--force"]) == 0
    assert (out / "gtBboxCityPersons").is_dir() and not (out / "Annotations").exists()
    # an empty folder is fine; a file is not a folder
    (tmp_path / "empty").mkdir()
    assert main(["data", "synth", "sonar", str(tmp_path / "empty"), "--size", "tiny"]) == 0
    (tmp_path / "f").write_text("x")
    assert main(["data", "synth", "sonar", str(tmp_path / "f"), "--size", "tiny"]) == 2
    assert (tmp_path / "f").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_atomic_tree_refuses_a_foreign_folder(tmp_path: Path):
    from domains.synthetic.cache import atomic_tree

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("k")
    with pytest.raises(SpecError, match="refusing"), atomic_tree(tmp_path / "x", "dota"):
        pass
    assert (tmp_path / "x" / "keep").read_text() == "k"


# ---------------------------------------------------------------------------------- leaderboard


def _craft_runs(tmp_path: Path, domain: str) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN, runs / "real")
    shutil.copytree(GOLDEN, runs / "crafted")
    for f in (runs / "crafted").rglob("results.jsonl"):
        recs = [json.loads(x) for x in f.read_text().splitlines()]
        f.write_text("".join(json.dumps(dict(r, domain=domain)) + "\n" for r in recs))
    return runs


@pytest.mark.parametrize("domain", ["../../../../lb_escaped", "/tmp/lb_escaped_abs", ".hidden", "a/b"])
def test_leaderboard_domain_names_cannot_escape(domain: str, tmp_path: Path, capsys):
    work = tmp_path / "deep" / "er" / "still"
    runs = _craft_runs(work, domain)
    out = work / "lb"
    assert main(["leaderboard", "--runs", str(runs), "--out", str(out), "--no-version-check"]) == 0
    printed = capsys.readouterr().out
    assert "is not a valid name" in printed  # the crafted records are reported, not used
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"dota.csv", "dota.md", "overall.md", "curves/dota.png"}
    assert not list(tmp_path.rglob("*lb_escaped*")) and not Path("/tmp/lb_escaped_abs.md").exists()


def test_leaderboard_only_crafted_records_is_one_line_error(tmp_path: Path, capsys):
    runs = _craft_runs(tmp_path, "../x")
    shutil.rmtree(runs / "real")
    assert (
        main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "lb"), "--no-version-check"]) == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "lb").exists() and not (tmp_path / "x.md").exists()


def test_matrix_name_cannot_escape_runs(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = tmp_path / "m.toml"
    m.write_text('name = "../../../escaped"\nmethods = ["supervised"]\n[domains.dota]\n')
    assert main(["run", str(m), "--quiet"]) == 2
    assert "matrix name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml"]


# ------------------------------------------------------------------------------ dataset names


def _coco(tmp_path: Path):
    root = tmp_path / "root"
    build_coco(root)
    return root, coco_doc, png


@pytest.mark.parametrize(
    "file_name", ["../outside.png", "images/../../outside.png", str(Path("/")) + "OUTSIDE", "~/outside.png"]
)
def test_coco_file_name_outside_the_root_is_refused(file_name: str, tmp_path: Path):
    from domains.coco import COCODomain

    root, coco_doc, png = _coco(tmp_path)
    png(tmp_path / "outside.png", 48, 32)  # exists: reading it would "work" without the check
    file_name = file_name.replace("/OUTSIDE", str(tmp_path / "outside.png"))
    doc = coco_doc([file_name], first_id=10)
    (root / "annotations" / "val.json").write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match="inside the dataset root") as ei:
        COCODomain().load(root, "test")
    assert ei.value.path.endswith("val.json")


def test_symlinks_inside_the_root_are_followed(tmp_path: Path):
    """An image folder that is a symlink to another disk is the user's own layout: fine."""
    from domains.coco import COCODomain

    root, coco_doc, png = _coco(tmp_path)
    elsewhere = tmp_path / "other_disk"
    png(elsewhere / "e.png", 48, 32)
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "annotations" / "val.json").write_text(json.dumps(coco_doc(["linked/e.png"], first_id=10)))
    ds = COCODomain().load(root, "test")
    assert ds.ids == ["linked/e"] and Path(ds[0].image_path).resolve() == (elsewhere / "e.png").resolve()


def test_crowdhuman_ids_and_sonar_ids_stay_inside(tmp_path: Path):
    from domains.pedestrian import Pedestrian
    from domains.sonar import Sonar

    root = tmp_path / "ch"
    build_crowdhuman(root)
    (tmp_path / "x.jpg").write_bytes((root / "Images" / next((root / "Images").iterdir()).name).read_bytes())
    for bad in ("../x", "../../" + str(tmp_path).lstrip("/") + "/x", str(tmp_path / "x")):
        (root / "annotation_val.odgt").write_text(ch_line(bad) + "\n")
        with pytest.raises(AnnotationError, match="annotation_val.odgt:1"):
            Pedestrian(format="crowdhuman").load(root, "test")
    sroot = tmp_path / "sonar"
    build_sonar(sroot)
    png(tmp_path / "x.png", 32, 32, "L")
    (tmp_path / "x.xml").write_text((sroot / "Annotations" / "B1.xml").read_text())
    (sroot / "ImageSets" / "Main" / "test.txt").write_text("B1\n../../x\n")
    with pytest.raises(AnnotationError, match=r"test.txt:2: id '../../x'"):
        Sonar().load(sroot, "test")
    assert Sonar().load(sroot, "test", lenient=True).ids == ["B1"]
