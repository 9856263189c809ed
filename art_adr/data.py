"""Datasets as uint8 NCHW arrays (placeholder: being written, see docs/DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a dataset: classes, image shape (C, H, W), normalisation statistics."""

    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,)),
}
