"""Device-resident mini-batches: the whole (uint8) set on the device, shuffled and augmented there (airbench)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["DeviceBatches", "MixedBatches", "fits_on_device", "to_tensor_images", "to_unit_float"]


def to_unit_float(t: Tensor) -> Tensor:
    """uint8 images in [0, 255] → float32 in [0, 1] (a new tensor); float images → float32."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether ``nbytes`` fit in ``fraction`` of the device's free memory (always true on CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def to_tensor_images(x: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """A *copy* of images on ``device``: uint8 stays uint8 (4× smaller), anything else becomes float32."""
    t = torch.as_tensor(x)
    t = t if t.dtype == torch.uint8 else t.float()
    return t.to(device=device, copy=True)


class DeviceBatches:
    """Shuffled, augmented batches of ``(x in [0,1] float, y long)`` on ``device``.

    Data already on ``device`` is indexed there; data on the host (when it does not fit) is streamed
    batch by batch through pinned memory. Batch order and augmentation depend only on ``(seed, epoch)``,
    so a resumed run sees the same batches. With ``world_size > 1`` each rank yields its shard
    ``[rank::world_size]`` of every global batch.

    Args:
        x: images ``[N, C, H, W]`` (uint8 in [0, 255] or float in [0, 1]). y: labels ``[N]``.
        batch_size: global batch size. shuffle: reshuffle every epoch (default True).
        augment: optional callable ``(x, generator) -> x`` run on the device (e.g. ``CropFlip()``).
        seed: base seed (default 0). drop_last: drop the last incomplete batch (default False).
        device: where batches are produced (default ``x.device``). channels_last: NHWC memory format.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = True,
        augment: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y have different lengths ({x.shape[0]} vs {y.shape[0]})")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment = int(batch_size), shuffle, augment
        self.seed, self.drop_last, self.channels_last = int(seed), drop_last, channels_last
        self.device = torch.device(device) if device is not None else x.device
        self.rank, self.world_size = rank, world_size
        self.streaming = self.x.device != self.device
        if self.streaming and self.device.type == "cuda" and not self.x.is_pinned():
            self.x, self.y = self.x.pin_memory(), self.y.pin_memory()

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self, epoch: int, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.seed * 1_000_003 + epoch)
        return g

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``epoch`` (0-based)."""
        n = self.x.shape[0]
        index_device = self.x.device
        g_index = self._generator(epoch, index_device)
        g_aug = g_index if index_device == self.device else self._generator(epoch + 7919, self.device)
        perm = torch.randperm(n, generator=g_index, device=index_device) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = perm[sl] if perm is not None else torch.arange(sl.start, sl.stop, device=index_device)
            if self.world_size > 1:
                idx = idx[self.rank :: self.world_size]
            xb, yb = self.x[idx], self.y[idx]
            if self.streaming:
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
            xb = to_unit_float(xb)
            if self.augment is not None:
                xb = self.augment(xb, g_aug)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.long()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)


class MixedBatches:
    """Batches with a fixed fraction drawn from an extra set (Gowal et al. 2021; Rebuffi et al. 2021).

    An epoch has ``ceil(len(main) / batch_size)`` iterations; each batch holds ``batch_size − k`` examples of
    the main set (a fresh seeded permutation per epoch, cycled if needed) and ``k = round(fraction·batch_size)``
    examples of the extra set drawn with replacement. Both sets may be uint8 or float.
    """

    def __init__(self, main: DeviceBatches, x_extra: Tensor, y_extra: Tensor, fraction: float) -> None:
        if not 0 < fraction < 1:
            raise ValueError(f"extra fraction must be in (0, 1), got {fraction}")
        self.main, self.x_extra, self.y_extra = main, x_extra, y_extra
        self.n_extra = int(round(fraction * main.batch_size))
        self.n_main = main.batch_size - self.n_extra

    def __len__(self) -> int:
        return -(-self.main.x.shape[0] // self.main.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        m = self.main
        g = m._generator(epoch, m.x.device)
        n = m.x.shape[0]
        need = len(self) * self.n_main
        perm = torch.cat([torch.randperm(n, generator=g, device=m.x.device) for _ in range(-(-need // n))])
        g_extra = m._generator(epoch + 104_729, self.x_extra.device)
        g_aug = m._generator(epoch + 7919, m.device)
        for b in range(len(self)):
            idx = perm[b * self.n_main : (b + 1) * self.n_main]
            jdx = torch.randint(0, self.x_extra.shape[0], (self.n_extra,), generator=g_extra,
                                device=self.x_extra.device)
            if m.world_size > 1:
                idx, jdx = idx[m.rank :: m.world_size], jdx[m.rank :: m.world_size]
            parts = []
            for xs, ys, ix in ((m.x, m.y, idx), (self.x_extra, self.y_extra, jdx)):
                xb = xs[ix].to(m.device, non_blocking=True)
                parts.append((to_unit_float(xb), ys[ix].to(m.device, non_blocking=True).long()))
            xb = torch.cat([parts[0][0], parts[1][0]])
            yb = torch.cat([parts[0][1], parts[1][1]])
            if m.augment is not None:
                xb = m.augment(xb, g_aug)
            if m.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb
