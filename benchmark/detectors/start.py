"""The detector's starting weights: random initialisation, or the shared pretrained start.

``[detector] start`` in a matrix (``docs/protocol.md#starting-weights``: every method starts from the
same shared pretrained weights, the CPU-scale counterpart of an ImageNet backbone):

* ``"random"`` (the default): the seed's random initialisation (``seed_hash(seed, "weights")``);
* ``"pretrained"``: the checkpoint shipped in the package, ``weights/tiny_fcos_xs_synthetic.pt``,
  trained by ``labelbudget pretrain`` on a synthetic corpus of generic shapes disjoint from every
  domain's data (``benchmark.pretrain``; its sidecar ``.json`` holds the command, seed, corpus,
  schedule and loss curve);
* a path to a checkpoint written by ``labelbudget pretrain --out`` (a re-derived or longer run).

Loading: the detector is first built with the seed's random initialisation, then every checkpoint
tensor is copied into the parameter or buffer of the same name and shape: backbone, FPN, head towers,
box and centre-ness outputs, FPN-level scales, BatchNorm statistics. The class output layer
(``head.cls``) is never transferred (it depends on the domain's classes) and keeps its seeded
random initialisation and focal-loss prior; an oriented detector's angle output (``head.angle``)
has no counterpart in the horizontal checkpoint and stays random too. Any other tensor that is
missing or has another shape is an error naming it (a checkpoint of another preset, or changed
widths), never a silent partial load. Tensors are stored as float16 to keep the file small and cast
back to the model's dtype on loading.

The matrix loader (``benchmark.spec``) fills in ``start_sha256``, the sha256 of the checkpoint file,
so the run id, the round-0 and source-checkpoint cache keys and every record name the exact weights
a run started from; a ``start_sha256`` given in the matrix pins the file (a mismatch is an error).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.base import SpecError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"tiny_fcos_xs": WEIGHTS_DIR / "tiny_fcos_xs_synthetic.pt"}
CHECKPOINT_FORMAT = "labelbudget-start/1"
START_KEYS = ("start", "start_sha256")  # detector options that choose the starting weights
NOT_TRANSFERRED = ("head.cls.",)  # depends on the domain's classes
MODEL_ONLY = ("head.cls.", "head.angle.")  # may be absent from a checkpoint


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (checkpoints: the pretrained start, source checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def start_path(name: str, start: Any) -> Path | None:
    """The checkpoint file of ``start`` for detector preset ``name``: None for ``"random"``."""
    if start is None or start == "random":
        return None
    if not isinstance(start, str) or not start:
        raise SpecError(
            f'[detector] start must be "random", "pretrained" or a checkpoint path, got {start!r}'
        )
    if start == "pretrained":
        if name not in SHIPPED:
            raise SpecError(
                f'[detector] start = "pretrained": the package ships a pretrained start for '
                f"{', '.join(SHIPPED)} only, not {name}; train one with `labelbudget pretrain --detector "
                f'{name} --out FILE.pt` and set start = "FILE.pt"'
            )
        path = SHIPPED[name]
        if not path.is_file():
            raise SpecError(
                f"the shipped pretrained start {path} is missing (a broken install?); re-derive it with "
                f"`labelbudget pretrain --out {path}`"
            )
        return path
    path = Path(start).expanduser()
    if not path.is_file():
        raise SpecError(
            f"[detector] start: the checkpoint {path} does not exist (write one with `labelbudget pretrain`)"
        )
    return path


def check_start(name: str, options: dict[str, Any]) -> str | None:
    """Validate ``start`` / ``start_sha256``; the checkpoint's sha256, or None for a random start."""
    path = start_path(name, options.get("start"))
    pinned = options.get("start_sha256")
    if path is None:
        if pinned is not None:
            raise SpecError(
                '[detector] start_sha256 pins a checkpoint; it needs start = "pretrained" or a path'
            )
        return None
    sha = file_sha256(path)
    if pinned is not None and pinned != sha:
        raise SpecError(
            f"[detector] start_sha256 = {pinned!r} but {path} has sha256 {sha}: the checkpoint changed; "
            f"update the pin, or restore the file"
        )
    return sha


def resolve_start(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The detector options with the start made explicit for run ids and records: ``start =
    "random"`` is dropped (the default; run ids stay those of a matrix that does not name it), a
    pretrained start gains ``start_sha256``."""
    sha = check_start(name, options)
    out = {k: v for k, v in options.items() if k not in START_KEYS}
    if sha is not None:
        out.update(start=options["start"], start_sha256=sha)
    return out


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip / pickle errors of a corrupt file
        raise SpecError(f"{path}: not a readable torch checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "state" not in ckpt:
        raise SpecError(
            f"{path}: not a pretrained start (expected format {CHECKPOINT_FORMAT!r}, written by "
            "`labelbudget pretrain`)"
        )
    return ckpt


def load_start(model: nn.Module, path: Path) -> dict[str, list[str]]:
    """Copy a pretrained start into ``model`` (module docstring); returns the names transferred and
    the model's tensors kept from its own initialisation."""
    state = read_checkpoint(path)["state"]
    own = model.state_dict()
    bad = []
    for k, v in state.items():
        if k.startswith(NOT_TRANSFERRED):
            continue
        if k not in own:
            bad.append(f"{k} (not in the model)")
        elif tuple(own[k].shape) != tuple(v.shape):
            bad.append(f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})")
    missing = [k for k in own if k not in state and not k.startswith(MODEL_ONLY)]
    bad += [f"{k} (not in the checkpoint)" for k in missing]
    if bad:
        shown = "; ".join(bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise SpecError(f"{path}: does not fit this detector ({shown}); was it trained for another preset?")
    moved = sorted(k for k in state if not k.startswith(NOT_TRANSFERRED))
    with torch.no_grad():
        for k in moved:
            own[k].copy_(state[k].to(own[k].dtype))
    return {"transferred": moved, "kept": sorted(k for k in own if k not in set(moved))}


def save_start(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model``'s weights as a pretrained start (floating tensors as float16)."""
    state = {
        k: (v.detach().cpu().to(torch.float16) if v.dtype.is_floating_point else v.detach().cpu()).clone()
        for k, v in model.state_dict().items()
    }
    buf = io.BytesIO()  # torch.save names the archive after a file: in memory its bytes do not
    torch.save({"format": CHECKPOINT_FORMAT, "state": state, **meta}, buf)  # depend on the path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
