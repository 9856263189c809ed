"""Seeded, learnable synthetic images of any shape (tests and smoke runs; no files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import ArrayDataset, DatasetError, DatasetInfo, register_dataset

__all__ = ["load_synthetic"]


def _prototypes(shape: tuple[int, int, int], num_classes: int, seed: int) -> np.ndarray:
    """Smooth class patterns in ``[0.15, 0.85]``: random 4×4 colour grids upsampled to ``H×W``."""
    c, h, w = shape
    grid = np.random.default_rng([seed, 0]).uniform(0.15, 0.85, size=(num_classes, c, 4, 4))
    rows = np.minimum(np.arange(h) * 4 // h, 3)
    cols = np.minimum(np.arange(w) * 4 // w, 3)
    return grid[:, :, rows][:, :, :, cols]


@register_dataset("synthetic", DatasetInfo(10, (3, 32, 32), (0.5,), (0.25,), files=False))
def load_synthetic(
    split: str, root: Path, download: bool, n: int | None = None, shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10, seed: int = 0, noise: float = 0.15,
) -> ArrayDataset:
    """Seeded learnable data: class prototypes (fixed by ``seed``) plus Gaussian noise; train/test draw
    different noise and labels from the same prototypes. Default sizes: 5000 train / 1000 test."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1 or num_classes < 2:
        raise DatasetError(f"synthetic: need shape (C,H,W) and num_classes >= 2, got {shape}, {num_classes}")
    n = (5000 if split == "train" else 1000) if n is None else int(n)
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    protos = _prototypes(shape, num_classes, seed)  # type: ignore[arg-type]
    x = protos[y] + noise * rng.standard_normal((n, *shape))
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return ArrayDataset(x, y, num_classes, "synthetic")
