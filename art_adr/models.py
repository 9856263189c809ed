"""Architectures taking ``[0, 1]`` images, with the dataset's normalisation inside the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "create_model", "SmallCNN", "Normalized"]


class Normalized(nn.Module):
    """``net((x − mean) / std)`` with per-channel dataset statistics stored as buffers."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


class SmallCNN(nn.Module):
    """A small conv net (two conv-BN-ReLU blocks, global pooling, linear head) for 28×28 images and tests."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _dataset_stats(dataset: str | None, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from .data import DATASETS

    if dataset is not None and dataset in DATASETS:
        info = DATASETS[dataset]
        return tuple(info.mean), tuple(info.std)
    return (0.0,) * in_channels, (1.0,) * in_channels


def _small_cnn(num_classes: int, dataset: str | None, in_channels: int = 1, width: int = 32) -> nn.Module:
    mean, std = _dataset_stats(dataset, in_channels)
    return Normalized(SmallCNN(in_channels, num_classes, width), mean, std)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small-cnn": _small_cnn,
}


def create_model(arch: str, num_classes: int, dataset: str | None = None, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` for ``num_classes`` classes; ``dataset`` picks the normalisation inside."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return ARCHITECTURES[arch](num_classes, dataset, **kwargs)
