"""CIFAR-10/100 from the python pickles (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html), read
by an unpickler that builds arrays only: no data file runs code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .base import DATASETS, ArrayDataset, DatasetError, DatasetInfo, register_dataset

__all__ = ["load_cifar10", "load_cifar100"]

# Label keys of the pickles; the folder, file lists and meta file come from torchvision's CIFAR classes.
_CIFAR_LABELS = {"cifar10": b"labels", "cifar100": b"fine_labels"}


def _cifar_class(name: str) -> Any:
    """torchvision's ``CIFAR10`` / ``CIFAR100`` (torchvision/datasets/cifar.py): ``base_folder``,
    ``train_list`` / ``test_list`` of ``[filename, md5]``, ``meta`` ``{"filename", "key"}`` and the download."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100


# The only globals a CIFAR pickle needs: numpy arrays, dtypes and scalars (numpy 1.x writes ``numpy.core``,
# numpy 2.x ``numpy._core``; protocol 5 rebuilds arrays with ``_frombuffer``) and Python 2's bytes codec.
_PICKLE_GLOBALS = {
    **{(f"numpy.{core}.multiarray", name): ("multiarray", name)
       for core in ("core", "_core") for name in ("_reconstruct", "scalar")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): ("numeric", "_frombuffer") for core in ("core", "_core")},
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, bytes, str, numbers and numpy arrays: no code runs."""

    def find_class(self, module: str, name: str) -> Any:
        where = _PICKLE_GLOBALS.get((module, name))
        if where is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR file holds only arrays, "
                                         f"lists and strings; this file may be malicious)")
        import importlib

        home, attr = where
        if home in ("multiarray", "numeric"):
            core = "numpy._core" if hasattr(np, "_core") else "numpy.core"
            home = f"{core}.{home}"
        return getattr(importlib.import_module(home), attr)


def _unpickle(path: Path) -> dict:
    """Read one CIFAR pickle (``encoding="bytes"``, as in the dataset's own reader) with :class:`_DataUnpickler`."""
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError) as e:
        raise DatasetError(f"cannot read CIFAR file {path}: {e}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N,3,32,32]`` and labels of one CIFAR batch file."""
    d = _unpickle(path)
    if b"data" not in d or label_key not in d:
        raise DatasetError(f"{path}: missing key b'data' or {label_key!r}; keys are {sorted(d)}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(f"{path}: expected uint8 data [N,3072] and N labels, got {data.dtype} "
                           f"{data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_classes(path: Path, key: bytes) -> tuple[str, ...] | None:
    """Class names from ``batches.meta`` / ``meta`` (``None`` when absent)."""
    if not path.exists():
        return None
    names = _unpickle(path).get(key)
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else None


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ArrayDataset:
    """CIFAR-10/100 from ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    tv = _cifar_class(name)
    base = root / tv.base_folder
    files = [base / f for f, _md5 in (tv.train_list if split == "train" else tv.test_list)]
    if download and not all(f.exists() for f in files):  # torchvision fetches, checks the md5s and extracts
        tv(root=str(root), train=split == "train", download=True)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DatasetError(
            f"{name} {split} split not found: missing {missing}. Expected the python version of the dataset "
            f"extracted to {base}/ (https://www.cs.toronto.edu/~kriz/cifar.html); pass download=True "
            f"(--download) to fetch it into {root}, or set data_dir / $ART_ADR_DATA."
        )
    parts = [_cifar_batch(f, _CIFAR_LABELS[name]) for f in files]
    x = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    y = np.concatenate([p[1] for p in parts])
    classes = _cifar_classes(base / tv.meta["filename"], tv.meta["key"].encode())
    return ArrayDataset(x, y, DATASETS[name].num_classes, name, classes)


# Per-channel normalisation of the models as the ADR authors' src/model/create_model.py (and RobustBench's
# dm_wide_resnet.py).
@register_dataset("cifar10", DatasetInfo(10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)))
def load_cifar10(split: str, root: Path, download: bool) -> ArrayDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py``."""
    return _load_cifar("cifar10", split, root, download)


@register_dataset("cifar100", DatasetInfo(100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))
def load_cifar100(split: str, root: Path, download: bool) -> ArrayDataset:
    """CIFAR-100 from ``<root>/cifar-100-python``."""
    return _load_cifar("cifar100", split, root, download)
