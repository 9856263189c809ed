"""Generated data as ``.npz`` (``image`` NHWC uint8, ``label``): the sets of Gowal et al. 2021 / Rebuffi et al.
2021, read row-limited without loading the whole file."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .base import ArrayDataset, DatasetError

__all__ = ["load_extra_npz"]


def _npz_member(zf: zipfile.ZipFile, key: str, n: int | None, where: Path) -> np.ndarray:
    """Array ``key`` of an open ``.npz``, reading only the first ``n`` rows when ``n`` is given."""
    fmt = np.lib.format
    try:
        with zf.open(f"{key}.npy") as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if fortran or dtype.hasobject or not shape:
                raise DatasetError(f"{where}: array {key!r} must be a C-ordered numeric array")
            rows = shape[0] if n is None else min(int(n), shape[0])
            count = rows * int(np.prod(shape[1:], dtype=np.int64))
            data = f.read(count * dtype.itemsize)
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{where}: cannot read array {key!r}: {e}") from e
    if len(data) != count * dtype.itemsize:
        raise DatasetError(f"{where}: array {key!r} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape((rows, *shape[1:]))


def load_extra_npz(
    path: str | os.PathLike, num_classes: int | None = None, n: int | None = None, name: str = "extra"
) -> ArrayDataset:
    """Generated data (Gowal et al. 2021, Rebuffi et al. 2021 DDPM sets): ``.npz`` with ``image`` uint8
    NHWC and ``label``; ``n`` reads only the first ``n`` rows; ``num_classes`` defaults to max(label)+1."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"extra-data file {path} not found (expected an .npz with 'image' and 'label')")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"cannot read extra-data file {path} (not an .npz?): {e}") from e
    with zf:
        keys = {k[:-4] for k in zf.namelist() if k.endswith(".npy")}
        if not {"image", "label"} <= keys:
            raise DatasetError(f"{path}: needs arrays 'image' and 'label', has {sorted(keys)}")
        image, label = _npz_member(zf, "image", n, path), _npz_member(zf, "label", n, path)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: 'image' must be uint8 [N,H,W,C] with C in (1, 3), got "
                           f"{image.dtype} {image.shape}")
    if label.ndim != 1 or not np.issubdtype(label.dtype, np.integer) or len(label) != len(image):
        raise DatasetError(f"{path}: 'label' must be integers [N] with N={len(image)}, got "
                           f"{label.dtype} {label.shape}")
    k = int(num_classes) if num_classes is not None else int(label.max(initial=1)) + 1
    x = np.ascontiguousarray(image.transpose(0, 3, 1, 2))
    try:
        return ArrayDataset(x, label.astype(np.int64), k, name)
    except DatasetError as e:
        raise DatasetError(f"{path}: {e}") from e
