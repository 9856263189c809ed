"""LeCun's IDX format (MNIST, Fashion-MNIST): reading a file, finding an images + labels pair in folders."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .base import DatasetError

__all__ = ["read_idx", "find_idx", "find_idx_pair"]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format, optionally gzipped): uint8 labels (2049) or images (2051).

    Not torchvision's ``datasets.mnist.read_image_file``: (0.29) it opens files without gzip while the Debian
    package ships ``.gz`` only, and checks them with ``assert``s, where this names the file and the fault.
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 8:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    ndim = {2049: 1, 2051: 3}.get(magic)
    if ndim is None:
        raise DatasetError(f"{path}: bad IDX magic number {magic} (expected 2049 labels or 2051 images)")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} ({header + int(np.prod(dims))} bytes), "
                           f"file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(dirs: list[Path], stem: str) -> Path | None:
    """First ``<dir>/<stem>.gz`` or ``<dir>/<stem>`` that exists."""
    for d in dirs:
        for cand in (d / f"{stem}.gz", d / stem):
            if cand.exists():
                return cand
    return None


def find_idx_pair(dirs: list[Path], img_stem: str, lbl_stem: str,
                  name: str = "fashion-mnist") -> tuple[Path | None, Path | None]:
    """Images and labels from the first folder holding both (never one file from each of two folders);
    a folder holding only one of them is an error naming the missing file."""
    for d in dirs:
        img, lbl = find_idx([d], img_stem), find_idx([d], lbl_stem)
        if img is not None and lbl is not None:
            return img, lbl
        if img is not None or lbl is not None:
            missing = lbl_stem if img is not None else img_stem
            raise DatasetError(f"{name}: {d} holds {(img or lbl).name} but not {missing}[.gz]; "
                               f"add the missing file (images and labels must come from one folder)")
    return None, None
