"""Fashion-MNIST from its IDX files (Xiao et al. 2017, https://github.com/zalandoresearch/fashion-mnist); on Debian
the package ``dataset-fashion-mnist`` ships them in :data:`FASHION_MNIST_SYSTEM_DIR`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ArrayDataset, DatasetError, DatasetInfo, register_dataset
from .idx import find_idx_pair, read_idx

__all__ = ["FASHION_MNIST_SYSTEM_DIR", "load_fashion_mnist"]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@register_dataset("fashion-mnist", DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,)))
def load_fashion_mnist(split: str, root: Path, download: bool, system: bool = True) -> ArrayDataset:
    """Fashion-MNIST from ``root``, ``root/fashion-mnist``, torchvision's layout, or (``system``, when no
    folder was given explicitly) the Debian package's copy; images and labels come from one folder."""
    dirs = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    if system:
        dirs.append(FASHION_MNIST_SYSTEM_DIR)
    img_stem, lbl_stem = _FMNIST_FILES[split]
    img, lbl = find_idx_pair(dirs, img_stem, lbl_stem)
    if (img is None or lbl is None) and download:
        import torchvision

        torchvision.datasets.FashionMNIST(root=str(root), train=split == "train", download=True)
        img, lbl = find_idx_pair(dirs, img_stem, lbl_stem)
    if img is None or lbl is None:
        raise DatasetError(
            f"fashion-mnist {split} split not found: missing {img_stem}[.gz] and {lbl_stem}[.gz] in "
            f"{[str(d) for d in dirs]}. Install it with `apt-get install dataset-fashion-mnist`, or pass "
            f"download=True (--download) to fetch it into {root}."
        )
    x, y = read_idx(img), read_idx(lbl)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"fashion-mnist: images {img} {x.shape} do not match labels {lbl} {y.shape}")
    from torchvision.datasets import FashionMNIST

    return ArrayDataset(x[:, None].copy(), y.astype(np.int64), 10, "fashion-mnist", tuple(FashionMNIST.classes))
