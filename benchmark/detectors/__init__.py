"""Detector factory: one interface (``benchmark.detectors.base``) for every method of a matrix.

Presets (``[detector] name = ...`` in a matrix):

=================  ==========  ===============================================================
name               params      use
=================  ==========  ===============================================================
``tiny_fcos``      0.75 M      CPU benchmark detector (synthetic data, 128-256 px)
``tiny_fcos_xs``   0.17 M      faster CPU variant: the smoke and default matrices' detector
``fcos_r50``       32 M        torchvision ResNet-50 + FPN; ``pretrained = true`` starts from the
                               ImageNet backbone (a local file, see below); for GPUs and real data
=================  ==========  ===============================================================

ImageNet weights of ``fcos_r50`` (``pretrained = true``): nothing is downloaded during a run. The
backbone comes from ``[detector] weights = "PATH"`` (torchvision's ``resnet50-11ad3fa6.pth``, the
``ResNet50_Weights.IMAGENET1K_V2`` state dict), else from torch hub's cache
(``$TORCH_HOME/hub/checkpoints/resnet50-11ad3fa6.pth``) when the file is already there, loaded through
torchvision's weights enum. ``download = true`` lets torchvision fetch it into that cache while the
matrix is validated (a machine with internet), before any training. A missing file fails matrix
validation with one line naming it.

Starting weights (``benchmark.detectors.start``): ``[detector] start = "random"`` (the default: the
seed's initialisation), ``"pretrained"`` (the shared pretrained start shipped for ``tiny_fcos_xs``,
trained by ``labelbudget pretrain`` on a synthetic corpus disjoint from every domain: every tensor but
the class output layer is loaded on top of the seed's initialisation) or a checkpoint path.

Every preset takes ``oriented = true`` (``[detector] oriented = true`` in a matrix, or
``build_detector(name, C, oriented=True)``), or ``oriented = "auto"``: oriented on domains whose
``box_type`` is ``"obb"`` (DOTA), horizontal elsewhere (the setting for a matrix that mixes
domains: horizontal-box domains then train exactly the horizontal detector). Rotated boxes
(Rotated FCOS head, ProbIoU + angle + enclosing-box GIoU loss, ``Prediction.polygons``; see
``benchmark.detectors.fcos``). Off by default.
On DOTA an oriented detector's records have Task1 (``mAP50-task1``) as their primary metric, Task2
(``mAP50``) beside it. Oriented options: ``angle_loss_weight`` (0.5), ``hull_loss_weight`` (1.0),
``rotate90`` (true: training views turn by multiples of 90 degrees).

The tiny presets sample positives within 2.5 strides of a box centre (FCOS uses 1.5): with
objects of 8-40 px at stride 8 that gives small objects more than one positive location, and it
learned measurably faster on the synthetic data (mAP50 0.33 vs 0.30 after 260 iterations).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark.detectors.base import Batch, Prediction, images_to_tensors, make_batch
from benchmark.detectors.fcos import FCOS, FCOSConfig
from benchmark.detectors.start import START_KEYS, check_start, load_start, start_path
from domains.base import SpecError

PRESETS: dict[str, dict[str, Any]] = {
    "tiny_fcos": {
        "backbone": "tiny",
        "widths": (16, 32, 64, 96, 128),
        "fpn_channels": 64,
        "head_convs": 2,
        "center_radius": 2.5,
    },
    "tiny_fcos_xs": {
        "backbone": "tiny",
        "widths": (8, 16, 32, 48, 64),
        "fpn_channels": 32,
        "head_convs": 2,
        "center_radius": 2.5,
        "patchify_stem": True,
    },
    "fcos_r50": {
        "backbone": "resnet50",
        "fpn_channels": 256,
        "head_convs": 4,
        "size_ranges": (0.0, 64.0, 128.0, float("inf")),
    },
}


WEIGHT_KEYS = ("weights", "download", *START_KEYS)  # detector options that are not FCOSConfig fields


def detector_options(name: str) -> list[str]:
    """The options a ``[detector]`` table may set for preset ``name`` (besides ``name``)."""
    if name not in PRESETS:
        raise SpecError(f"unknown detector {name!r}; presets: {', '.join(PRESETS)}")
    fields = set(FCOSConfig.__dataclass_fields__) - {"num_classes"}
    return sorted(fields | set(WEIGHT_KEYS))


def hub_weights_file() -> Path:
    """Where torch hub keeps torchvision's ImageNet ResNet-50 (``IMAGENET1K_V2``) weights."""
    import os

    import torch
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights.IMAGENET1K_V2.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def check_weights(name: str, options: dict[str, Any]) -> Path | None:
    """Validate a detector's weight options before anything trains: ``None`` when no file is needed,
    else the local ImageNet weights file (``weights = PATH``, or the torch hub cache). Raises
    ``SpecError`` with one line naming the file to provide. With ``download = true`` and no cached
    file, torchvision's weights enum downloads it now (into the hub cache)."""
    bad = set(options) - set(detector_options(name))
    if bad:
        raise SpecError(
            f"unknown detector option(s) {sorted(bad)} for {name}; known: {', '.join(detector_options(name))}"
        )
    check_start(name, options)  # [detector] start: "random" | "pretrained" | a checkpoint path
    pretrained = options.get("pretrained", PRESETS[name].get("pretrained", False))
    if not isinstance(pretrained, bool):
        raise SpecError(f"[detector] pretrained must be true or false, got {pretrained!r}")
    backbone = options.get("backbone", PRESETS[name].get("backbone"))
    weights = options.get("weights")
    if weights is not None and not isinstance(weights, str):
        raise SpecError(f"[detector] weights must be a file path (a string), got {weights!r}")
    if not pretrained or backbone != "resnet50":
        if weights is not None:
            raise SpecError(
                f"[detector] weights is only used by a resnet50 backbone with pretrained = true ({name})"
            )
        return None
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise SpecError(
                f"{name}: the ImageNet weights file {p} ([detector] weights) does not exist; provide "
                f"torchvision's resnet50-11ad3fa6.pth there"
            )
        return p
    cached = hub_weights_file()
    if cached.is_file():
        return cached
    if options.get("download") is True:
        from torchvision.models import ResNet50_Weights

        try:
            ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True)
        except Exception as exc:  # urllib / hash errors: one line, before any training
            raise SpecError(
                f"{name}: downloading {ResNet50_Weights.IMAGENET1K_V2.url} failed ({exc})"
            ) from None
        return cached
    raise SpecError(
        f"{name} with pretrained = true needs the ImageNet weights file {cached} (torchvision's "
        f'ResNet50_Weights.IMAGENET1K_V2); copy it there, or set [detector] weights = "PATH", or allow '
        f"the download with [detector] download = true"
    )


def _load_backbone(model: FCOS, path: Path) -> None:
    """Load a torchvision ResNet-50 state dict (``resnet50-*.pth``) into ``model``'s backbone."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a corrupt file
        raise SpecError(f"{path}: not a readable torch weights file ({exc})") from None
    rename = {"conv1.": "stem.0.", "bn1.": "stem.1.", "layer1.": "stem.4.", "layer2.": "layers.0.",
              "layer3.": "layers.1.", "layer4.": "layers.2."}  # fmt: skip
    mapped = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        pre = next((p for p in rename if k.startswith(p)), None)
        if pre is None:
            raise SpecError(f"{path}: unexpected key {k!r} (expected torchvision's ResNet-50 state dict)")
        mapped[rename[pre] + k[len(pre) :]] = v
    try:
        model.backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise SpecError(f"{path}: does not fit the ResNet-50 backbone ({str(exc).splitlines()[0]})") from None


def build_detector(name: str, num_classes: int, box_type: str | None = None, **overrides: Any) -> FCOS:
    """Build a detector preset; ``overrides`` set ``FCOSConfig`` fields (e.g. ``score_thresh``) and
    ``weights`` / ``download`` (``check_weights``). ``oriented = "auto"`` is oriented exactly when the
    domain's ``box_type`` is ``"obb"`` (DOTA), so one matrix-wide ``[detector]`` table serves oriented
    and horizontal domains alike."""
    if name not in PRESETS:
        raise SpecError(f"unknown detector {name!r}; presets: {', '.join(PRESETS)}")
    oriented = overrides.get("oriented")
    if oriented == "auto":
        if box_type is None:
            raise SpecError('detector option oriented = "auto" needs the domain\'s box type')
        overrides = {**overrides, "oriented": box_type == "obb"}
    elif oriented is not None and not isinstance(oriented, bool):
        raise SpecError(f'detector option oriented must be true, false or "auto", got {oriented!r}')
    cfg = FCOSConfig(num_classes=num_classes, **PRESETS[name])
    fields = set(FCOSConfig.__dataclass_fields__)
    bad = set(overrides) - fields - set(WEIGHT_KEYS)
    if bad:
        raise SpecError(f"unknown detector option(s) {sorted(bad)}; known: {', '.join(sorted(fields))}")
    path = check_weights(name, overrides)
    cfg_over = {
        k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if k not in WEIGHT_KEYS
    }
    cfg = replace(cfg, **cfg_over)
    if path is not None and path != hub_weights_file():
        model = FCOS(replace(cfg, pretrained=False))  # an explicit file: loaded here, nothing fetched
        _load_backbone(model, path)
    else:
        model = FCOS(cfg)  # the hub cache file: torchvision's weights enum loads it (no network)
    start = start_path(name, overrides.get("start"))
    if start is not None:  # the shared pretrained start (benchmark.detectors.start); head.cls stays
        load_start(model, start)
    return model


__all__ = [
    "Batch",
    "FCOS",
    "FCOSConfig",
    "PRESETS",
    "Prediction",
    "build_detector",
    "check_weights",
    "detector_options",
    "images_to_tensors",
    "make_batch",
]
