"""No network: with every socket refused, the ``full`` matrix is validated
(and its missing ImageNet weights file reported in one line, before any data is read or any training
starts) and a tiny run finishes. ``fcos_r50`` takes its backbone from ``[detector] weights = PATH``
or from torch hub's cache, never from the internet during a run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from domains.base import SpecError


@pytest.fixture()
def offline(monkeypatch, tmp_path: Path) -> Path:
    """Every socket refused (stricter than the suite's connect guard); an empty torch hub cache."""

    def refuse(*a, **k):
        raise OSError("network use in an offline test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_full_matrix_validation_reports_the_weights_file(offline: Path, tmp_path: Path, capsys, monkeypatch):
    from benchmark.detectors import hub_weights_file
    from benchmark.spec import load_matrix

    expected = hub_weights_file()
    assert str(expected).startswith(str(offline))
    with pytest.raises(SpecError, match="resnet50-11ad3fa6.pth") as ei:
        load_matrix("full")
    assert str(expected) in str(ei.value) and "\n" not in str(ei.value)
    # through the CLI: one line, exit 2, nothing written (no data read, no training)
    out = tmp_path / "runs"
    assert main(["run", "full", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(expected) in err[0]
    assert not out.exists()


def _resnet50_file(path: Path) -> dict[str, torch.Tensor]:
    from torchvision.models import resnet50

    gen = torch.Generator().manual_seed(0)
    state = resnet50().state_dict()
    state = {
        k: (torch.rand(v.shape, generator=gen) if v.is_floating_point() else v) for k, v in state.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_local_weights_file_and_hub_cache(offline: Path, tmp_path: Path):
    from benchmark.detectors import build_detector, check_weights, hub_weights_file
    from benchmark.spec import load_matrix

    weights = tmp_path / "w" / "resnet50-11ad3fa6.pth"
    state = _resnet50_file(weights)
    # [detector] weights = PATH: validated, and the backbone loads exactly that file
    m = tmp_path / "m.toml"
    m.write_text(
        'methods = ["supervised"]\nbudgets = [8]\n[detector]\nname = "fcos_r50"\npretrained = true\n'
        f'weights = "{weights}"\n[domains.dota]\n'
    )
    matrix = load_matrix(str(m))
    assert (
        "/" not in matrix.cells[0].canonical()["detector_options"]["weights"]
    )  # no absolute path in run ids
    model = build_detector("fcos_r50", 3, pretrained=True, weights=str(weights))
    torch.testing.assert_close(model.backbone.stem[0].weight, state["conv1.weight"])
    torch.testing.assert_close(model.backbone.layers[2][0].conv1.weight, state["layer4.0.conv1.weight"])
    # the file already in torch hub's cache: torchvision's weights enum loads it, no network
    hub_weights_file().parent.mkdir(parents=True)
    weights.rename(hub_weights_file())
    assert check_weights("fcos_r50", {"pretrained": True}) == hub_weights_file()
    roots = {d: str(tmp_path / d) for d in ("dota", "sonar", "foggy_cityscapes", "pedestrian")}
    load_matrix("full", data_roots=roots)  # validates now (the real-data roots are checked on loading)
    model = build_detector("fcos_r50", 3, pretrained=True)
    torch.testing.assert_close(model.backbone.stem[0].weight, state["conv1.weight"])
    # a file that is not a ResNet-50 state dict: one line naming it
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SpecError, match="bad.pth"):
        build_detector("fcos_r50", 3, pretrained=True, weights=str(bad))


def test_download_fails_in_one_line_before_training(offline: Path):
    from benchmark.detectors import check_weights

    with pytest.raises(SpecError, match="downloading .*resnet50-11ad3fa6.pth failed"):
        check_weights("fcos_r50", {"pretrained": True, "download": True})


@pytest.mark.slow
def test_tiny_run_without_network(offline: Path, tmp_path: Path, capsys):
    m = tmp_path / "m.toml"
    m.write_text(
        'name = "o"\nmethods = ["supervised+random"]\nseeds = [0]\nbudgets = [8]\n'
        '[detector]\nname = "tiny_fcos_xs"\n[schedule]\niterations = 2\nbatch_size = 2\n'
        '[domains.dota]\nsynthetic_size = "tiny"\n'
    )
    out = tmp_path / "runs"
    assert main(["run", str(m), "--out", str(out), "--launcher", "serial", "--quiet"]) == 0
    assert len(list(out.rglob("results.jsonl"))) == 1
