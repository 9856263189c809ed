"""Datasets as uint8 NCHW arrays read from their standard on-disk formats, as registered pieces (see
docs/DESIGN.md, "Adding a dataset").

Each dataset is one module here whose loader is registered at its definition
(:func:`~art_adr.data.base.register_dataset`, with its :class:`DatasetInfo`); :data:`DATASET_MODULES` lists the
modules, so adding a dataset is one file + one line. :func:`load_dataset` and :data:`DATASETS` read the registry,
and so do the command line's help and the experiments. Formats: CIFAR-10/100 python pickles, Fashion-MNIST IDX
files, Tiny-ImageNet-200 folders, generated images (``synthetic``), and the ``.npz`` generated-data sets of
Gowal et al. 2021 / Rebuffi et al. 2021 (:func:`load_extra_npz`, extra training data, not a dataset of its own).
"""

from __future__ import annotations

import importlib

from .base import (
    DATASETS,
    ArrayDataset,
    DatasetError,
    DatasetInfo,
    dataset_names,
    default_data_dir,
    estimate_bytes,
    load_dataset,
    model_inputs,
    register_dataset,
)

# the registry's modules, in the order their datasets are listed: one line per dataset module
DATASET_MODULES = ("cifar", "tinyimagenet", "fashion_mnist", "synthetic")

for _module in DATASET_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

from .fashion_mnist import FASHION_MNIST_SYSTEM_DIR  # noqa: E402
from .idx import read_idx  # noqa: E402
from .npz import load_extra_npz  # noqa: E402
from .tinyimagenet import TINYIMAGENET_URL  # noqa: E402

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DATASET_MODULES",
    "DatasetError",
    "DatasetInfo",
    "FASHION_MNIST_SYSTEM_DIR",
    "TINYIMAGENET_URL",
    "dataset_names",
    "default_data_dir",
    "estimate_bytes",
    "load_dataset",
    "load_extra_npz",
    "model_inputs",
    "read_idx",
    "register_dataset",
]
