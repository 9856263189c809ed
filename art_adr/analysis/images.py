"""Images for the analyses: another dataset's images fitted to a model's input shape, and an offline OOD set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["adapt_images", "digits_ood"]


def adapt_images(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Resize ``[N, C, H, W]`` images in [0, 1] to ``(C', H', W')`` (bilinear; grey↔RGB by repeat/mean)."""
    c, h, w = (int(s) for s in shape)
    x = x.float()
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]} channels to {c}")
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


def digits_ood(shape: Sequence[int], n: int | None = None, seed: int = 0) -> Tensor:
    """scikit-learn's bundled 8×8 digits in [0, 1], resized to ``shape`` — an offline OOD set (cf. Fig. 1)."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0
    if n is not None and n < len(images):
        images = images[np.random.default_rng(seed).permutation(len(images))[:n]]
    return adapt_images(torch.from_numpy(images).unsqueeze(1), shape)
