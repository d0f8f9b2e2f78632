"""Writers of the Caltech Pedestrian formats, for tests only: a Norpix ``.seq`` video (the layout
``domains.pedestrian.read_seq_index`` reads) and a ``.vbb`` annotation file (the MATLAB struct
``domains.pedestrian.parse_vbb`` reads). The benchmark itself only reads these formats; these build
small real-format trees for the adapter's tests and the bad-input corpus (``bad_trees``)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from domains.pedestrian import SEQ_HEADER_BYTES, SEQ_MAGIC


def write_seq(path: str | Path, jpegs: list[bytes], width: int, height: int) -> None:
    """Write a Norpix ``.seq`` file holding ``jpegs`` (the layout ``read_seq_index`` reads)."""
    header = bytearray(SEQ_HEADER_BYTES)
    struct.pack_into("<I", header, 0, SEQ_MAGIC)
    name = "Norpix seq".encode("utf-16-le")
    header[4 : 4 + len(name)] = name
    struct.pack_into("<ii", header, 28, 3, SEQ_HEADER_BYTES)  # version, header size
    struct.pack_into("<IIIIII", header, 548, width, height, 8, 8, width * height * 3, 102)  # 102 = JPEG
    struct.pack_into("<I", header, 572, len(jpegs))
    struct.pack_into("<d", header, 584, 30.0)
    with open(path, "wb") as f:
        f.write(bytes(header))
        for k, data in enumerate(jpegs):
            f.write(struct.pack("<I", len(data) + 4))
            f.write(data)
            f.write(struct.pack("<IHH", k // 30, (k % 30) * 33, 0))


def write_vbb(path: str | Path, n_frame: int, frames: list[list[dict[str, Any]]], labels: list[str]) -> None:
    """Write a Caltech ``.vbb`` (MATLAB struct ``A``): ``frames[i]`` lists the objects of frame i as
    ``{"id": 1-based object id, "pos": [l, t, w, h], "occl": 0/1, "posv": [l, t, w, h]}``;
    ``labels[id - 1]`` is the object's ``objLbl``."""
    from scipy.io import savemat

    dt = [("id", object), ("pos", object), ("occl", object), ("lock", object), ("posv", object)]
    obj_lists = np.empty((1, n_frame), dtype=object)
    for i in range(n_frame):
        objs = frames[i] if i < len(frames) else []
        arr = np.zeros((1, len(objs)), dtype=dt)
        for j, o in enumerate(objs):
            arr[0, j] = (
                np.array([[o["id"]]], np.float64),
                np.array([o["pos"]], np.float64),
                np.array([[o.get("occl", 0)]], np.float64),
                np.array([[0]], np.float64),
                np.array([o.get("posv", [0, 0, 0, 0])], np.float64),
            )
        obj_lists[0, i] = arr
    lbl = np.empty((1, len(labels)), dtype=object)
    for j, name in enumerate(labels):
        lbl[0, j] = name
    a = {
        "nFrame": np.array([[n_frame]], np.float64),
        "objLists": obj_lists,
        "maxObj": np.array([[len(labels)]], np.float64),
        "objInit": np.zeros((1, len(labels))),
        "objLbl": lbl,
        "objStr": np.ones((1, len(labels))),
        "objEnd": np.full((1, len(labels)), n_frame, np.float64),
        "objHide": np.zeros((1, len(labels))),
        "altered": np.array([[0]]),
        "log": np.array([[0]]),
        "logLen": np.array([[0]]),
    }
    savemat(str(path), {"A": a}, do_compression=True)
