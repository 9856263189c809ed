"""What every dataset shares: the array container, the registry (:func:`register_dataset`, at each loader's
definition) and :func:`load_dataset`, which looks a name up in it."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Registry

__all__ = ["ArrayDataset", "DATASETS", "DatasetError", "DatasetInfo", "Loader", "dataset_names", "default_data_dir",
           "estimate_bytes", "load_dataset", "model_inputs", "register_dataset"]


class DatasetError(ValueError):
    """A dataset is missing, corrupt or inconsistent; the message says where we looked and how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a dataset: classes, image shape (C, H, W), normalisation statistics.

    A one-element mean/std broadcasts over any channel count (used by "synthetic", whose shape varies).
    ``files=False``: the dataset is generated, so it needs no data directory.
    """

    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: bool = True


def model_inputs(dataset: str | None, shape: Sequence[int] | None = None) -> dict[str, Any]:
    """``create_model``'s ``input_shape``, ``mean`` and ``std`` for images of ``dataset``: ``shape`` (the data's
    own, e.g. a ``synthetic`` set's option) else the registered shape, and the registered statistics; only
    ``input_shape`` (when given) for ``None`` or an unregistered name (identity normalisation)."""
    info = DATASETS.get(dataset) if dataset in DATASETS else None
    out: dict[str, Any] = {}
    if shape is not None or info is not None:
        out["input_shape"] = tuple(int(s) for s in (shape if shape is not None else info.shape))  # type: ignore[union-attr]
    if info is not None:
        out.update(mean=tuple(info.mean), std=tuple(info.std))
    return out


@dataclass
class ArrayDataset:
    """Images ``x`` (uint8 ``[N,C,H,W]``), labels ``y`` (int64 ``[N]``); ``x / 255`` lies in ``[0, 1]``."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise DatasetError(f"{self.name}: x must be uint8 [N,C,H,W], got {self.x.dtype} {self.x.shape}")
        if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
            raise DatasetError(f"{self.name}: y must be an integer vector, got {self.y.dtype} {self.y.shape}")
        if len(self.x) != len(self.y):
            raise DatasetError(f"{self.name}: {len(self.x)} images but {len(self.y)} labels")
        self.y = self.y.astype(np.int64, copy=False)
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise DatasetError(
                f"{self.name}: labels span [{self.y.min()}, {self.y.max()}], outside [0, {self.num_classes})"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, n_or_indices: int | Sequence[int] | np.ndarray) -> ArrayDataset:
        """The first ``n`` examples (an int) or the examples at the given indices."""
        if isinstance(n_or_indices, (int, np.integer)):
            if n_or_indices < 0:
                raise ValueError(f"subset size must be >= 0, got {n_or_indices}")
            idx: Any = slice(0, int(n_or_indices))
        else:
            idx = np.asarray(n_or_indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, self.name, self.classes)

    def split(self, n_val: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        """Seeded held-out split: ``n_val`` random examples for val, the rest (in order) for train."""
        if not 0 <= n_val <= len(self):
            raise ValueError(f"n_val must be in [0, {len(self)}], got {n_val}")
        perm = np.random.default_rng(seed).permutation(len(self))
        return self.subset(np.sort(perm[n_val:])), self.subset(np.sort(perm[:n_val]))


def estimate_bytes(ds: ArrayDataset, dtype: Any = np.uint8) -> int:
    """Bytes to hold ``ds`` on a device with images stored as ``dtype`` (labels as int64)."""
    return int(ds.x.size * np.dtype(dtype).itemsize + ds.y.size * 8)


def default_data_dir() -> Path:
    """``$ART_ADR_DATA`` if set, else ``~/.cache/art-adr/data``."""
    env = os.environ.get("ART_ADR_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "art-adr" / "data"


# A loader: ``(split, root, download, **options) -> ArrayDataset`` (``split`` is "train" or "test"; ``options``
# come from a run's ``dataset_kwargs``). A loader with a ``system`` option (a system-wide copy, e.g. Debian's) is
# given ``system=False`` when the user names a data directory: then that folder is the only place looked in.
Loader = Callable[..., ArrayDataset]
# the registry: each dataset's DatasetInfo, with its loader as the entry's ``loader`` metadata
DATASETS: Registry[DatasetInfo] = Registry("dataset", error=DatasetError)


def register_dataset(name: str, info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Decorator of a loader: add the dataset ``name`` (a new one) to :data:`DATASETS` with its
    :class:`DatasetInfo` and this loader."""
    def add(loader: Loader) -> Loader:
        DATASETS.register(name, info, loader=loader)
        return loader

    return add


def dataset_names() -> tuple[str, ...]:
    """The registered datasets, in registration order."""
    return DATASETS.names()


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **kw: Any,
) -> ArrayDataset:
    """Split ``"train"``/``"test"`` of dataset ``name`` (a ``DATASETS`` key) as uint8 NCHW arrays."""
    loader = DATASETS.meta(name)["loader"]  # DatasetError naming the registered datasets for an unknown name
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and DATASETS[name].files:
        if not root.exists() and not download:
            raise DatasetError(f"data directory {root} does not exist (for {name}); check --data-dir / data_dir, "
                               f"or pass download=True (--download) to fetch the dataset there")
        if root.exists() and not root.is_dir():
            raise DatasetError(f"data directory {root} is not a directory (for {name})")
        if "system" in inspect.signature(loader).parameters:
            kw.setdefault("system", False)  # an explicit folder is the only place looked in
    from ..checks import call_with_options

    return call_with_options(loader, f"dataset {name!r}", (split, root, download), kw, DatasetError)
