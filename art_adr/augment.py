"""On-device augmentation: random crop with zero padding and horizontal flip (He et al. 2016; airbench)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_crop_flip", "CropFlip"]


def random_crop_flip(
    x: Tensor, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Per-sample random ``H×W`` crop of the zero-padded batch, then a random horizontal flip (p = ½).

    Works on any device with one gather; ``generator`` (on ``x.device``) makes it reproducible.
    """
    n, c, h, w = x.shape
    dev = x.device
    out = x
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(c, device=dev)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator, device=dev) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


class CropFlip:
    """Callable ``(x, generator) -> x`` form of :func:`random_crop_flip` with fixed settings."""

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding, self.flip = int(padding), bool(flip)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_crop_flip(x, self.padding, self.flip, generator)

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"
