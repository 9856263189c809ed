"""Device-resident mini-batches: the whole (uint8) set on the device, shuffled and augmented there (airbench)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DeviceBatches", "MixedBatches", "Gather", "finish_batch", "fits_on_device", "host_images",
           "image_nbytes", "to_tensor_images", "to_unit_float"]

BUDGET_ENV = "ART_ADR_DEVICE_BUDGET_BYTES"
EXTRA_SAMPLING = ("shuffle", "replacement")  # MixedBatches' draws from the extra set (RunConfig.extra_sampling)


def to_unit_float(t: Tensor) -> Tensor:
    """uint8 images in [0, 255] → float32 in [0, 1] (a new tensor); float images → float32."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def finish_batch(
    x: Tensor,
    *,
    augment: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
) -> Tensor:
    """The last steps of every batch on its way to the model, in this order: images to float32 in ``[0, 1]``
    (:func:`to_unit_float`; a float32 input is not copied), ``augment(x, generator)`` when given, and the NHWC
    memory format when ``channels_last`` (the one sequence of the training, evaluation and predict paths)."""
    x = to_unit_float(x)
    if augment is not None:
        x = augment(x, generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether ``nbytes`` fit in ``fraction`` of the device's free memory (always true on CPU).

    The environment variable ``ART_ADR_DEVICE_BUDGET_BYTES`` caps the bytes of data placed on any device
    (CPU included: then the data is streamed batch by batch, which is how the streaming path is tested).
    """
    budget = os.environ.get(BUDGET_ENV)
    if budget is not None and budget.strip():
        if nbytes > int(budget):
            return False
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def image_nbytes(x: np.ndarray | Tensor) -> int:
    """Bytes the images take once placed by :func:`to_tensor_images` (uint8 stays uint8, else float32)."""
    n = int(np.prod(tuple(x.shape)))
    return n if x.dtype in (np.uint8, torch.uint8) else 4 * n


def host_images(x: np.ndarray | Tensor) -> Tensor:
    """Images as a CPU tensor to stream from: shares the caller's memory when already uint8/float32 (it is
    only read), otherwise a float32 copy."""
    t = torch.as_tensor(x).cpu()
    return t if t.dtype in (torch.uint8, torch.float32) else t.float()


def to_tensor_images(x: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """A *copy* of images on ``device``: uint8 stays uint8 (4× smaller), anything else becomes float32."""
    t = torch.as_tensor(x)
    t = t if t.dtype == torch.uint8 else t.float()
    return t.to(device=device, copy=True)


class Gather:
    """``src[idx]`` on ``device``: indexed in place when ``stream`` is false; otherwise gathered on the host
    into one of two staging buffers (pinned on CUDA) and copied asynchronously. Double-buffered: a buffer is
    refilled only after the copy out of it (issued one batch earlier) has finished, so the host gathers
    batch ``b + 1`` while batch ``b`` is still in flight, and the whole set is never pinned."""

    def __init__(self, src: Tensor, device: torch.device, stream: bool) -> None:
        self.src, self.device = src, torch.device(device)
        self.stream = bool(stream) and src.device.type == "cpu"
        self.pinned = self.stream and self.device.type == "cuda" and torch.cuda.is_available()
        self._buffers: list[Tensor | None] = [None, None]
        self._events: list[Any] = [None, None]
        self._next = 0

    def __call__(self, idx: Tensor) -> Tensor:
        if not self.stream:
            return self.src[idx.to(self.src.device)].to(self.device)
        k, self._next = self._next, 1 - self._next
        if self._events[k] is not None:
            self._events[k].synchronize()  # the copy out of this buffer two batches ago is done
        idx = idx.to(self.src.device)
        n = idx.numel()
        buf = self._buffers[k]
        if buf is None or buf.shape[0] < n:
            buf = torch.empty((n, *self.src.shape[1:]), dtype=self.src.dtype, pin_memory=self.pinned)
            self._buffers[k] = buf
        staged = buf[:n]
        torch.index_select(self.src, 0, idx, out=staged)
        out = staged.to(self.device, non_blocking=self.pinned, copy=True)
        if self.pinned:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._events[k] = event
        return out


class DeviceBatches:
    """Shuffled, augmented batches of ``(x in [0,1] float, y long)`` on ``device``.

    Data already on ``device`` is indexed there; data on the host (when it does not fit) is streamed
    batch by batch through a pinned, double-buffered staging batch (:class:`Gather`). Batch order and
    augmentation depend only on ``(seed, epoch)``, so a resumed run sees the same batches. With
    ``world_size > 1`` each rank yields its shard ``[rank::world_size]`` of every global batch (the order is
    shared; augmentation is seeded with ``seed + rank``).

    Args:
        x: images ``[N, C, H, W]`` (uint8 in [0, 255] or float in [0, 1]). y: labels ``[N]``.
        batch_size: global batch size. shuffle: reshuffle every epoch (default True).
        augment: optional callable ``(x, generator) -> x`` run on the device (e.g. ``CropFlip()``).
        seed: base seed (default 0). drop_last: drop the last incomplete batch (default False; ``ValueError``
            when that leaves no batch).
        device: where batches are produced (default ``x.device``). channels_last: NHWC memory format.
        stream: gather on the host and copy each batch (default: when ``x`` is not on ``device``).
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
        stream: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y have different lengths ({x.shape[0]} vs {y.shape[0]})")
        if drop_last and x.shape[0] < batch_size:
            raise ValueError(f"drop_last=True leaves no batch: {x.shape[0]} training examples are fewer than "
                             f"batch_size {batch_size}; set drop_last to false or lower batch_size")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment = int(batch_size), shuffle, augment
        self.seed, self.drop_last, self.channels_last = int(seed), drop_last, channels_last
        self.device = torch.device(device) if device is not None else x.device
        self.rank, self.world_size = rank, world_size
        self.streaming = self.x.device != self.device if stream is None else bool(stream)

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self, epoch: int, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.seed * 1_000_003 + epoch)
        return g

    def _aug_generator(self, epoch: int, shared: torch.Generator | None = None) -> torch.Generator:
        """Augmentation randomness: ``shared`` (or a seeded generator on the device) in one process; under DDP
        a generator seeded with ``seed + rank``, so ranks do not draw the same crops for their shards."""
        if self.world_size > 1:
            g = torch.Generator(device=self.device)
            g.manual_seed((self.seed + self.rank) * 1_000_003 + epoch + 7919)
            return g
        return shared if shared is not None else self._generator(epoch + 7919, self.device)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``epoch`` (0-based)."""
        n = self.x.shape[0]
        index_device = self.x.device
        g_index = self._generator(epoch, index_device)
        g_aug = self._aug_generator(epoch, g_index if index_device == self.device else None)
        perm = torch.randperm(n, generator=g_index, device=index_device) if self.shuffle else None
        gather_x = Gather(self.x, self.device, self.streaming)
        gather_y = Gather(self.y, self.device, self.streaming)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = perm[sl] if perm is not None else torch.arange(sl.start, sl.stop, device=index_device)
            if self.world_size > 1:
                idx = idx[self.rank :: self.world_size]
            xb, yb = gather_x(idx), gather_y(idx)
            yield finish_batch(xb, augment=self.augment, generator=g_aug, channels_last=self.channels_last), yb.long()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)


class MixedBatches:
    """Batches with a fixed fraction drawn from an extra set (Gowal et al. 2021; Rebuffi et al. 2021).

    Each batch holds ``batch_size − k`` examples of the main set (a fresh seeded permutation per epoch, cycled
    if needed) and ``k = round(fraction·batch_size)`` examples of the extra set, drawn as ``sampling`` says:
    ``"shuffle"`` (default; the ADR authors' extra-data loader, a ``DataLoader(shuffle=True, drop_last=True)``
    cycled when exhausted: a fresh permutation of the extra set per pass, each image once per pass, the pass's
    last ``len(extra) mod k`` images left out; the passes run on across epochs, each epoch starting where the
    previous one ended, so a resumed run draws the same images) or ``"replacement"`` (art-adr's former draw:
    ``k`` independent uniform indices per batch, a generator per epoch); an epoch
    is one pass over the main set, ``len(main) // (batch_size − k)`` iterations when ``main.drop_last`` (the ADR
    authors' code: their epoch is the length of the real-data loader, which drops its last partial batch: 195
    iterations of 256 real images on CIFAR's 50 000), else ``ceil(len(main) / (batch_size − k))`` (the last
    batch completed from a second permutation), so epoch-based schedules and warm-ups mean the same number of
    iterations as theirs. Both sets may be uint8 or float.
    """

    def __init__(self, main: DeviceBatches, x_extra: Tensor, y_extra: Tensor, fraction: float,
                 stream_extra: bool | None = None, sampling: str = "shuffle") -> None:
        if not 0 < fraction < 1:
            raise ValueError(f"extra fraction must be in (0, 1), got {fraction}")
        if sampling not in EXTRA_SAMPLING:
            raise ValueError(f"extra sampling must be one of {', '.join(EXTRA_SAMPLING)}, got {sampling!r}")
        self.sampling = sampling
        self.main, self.x_extra, self.y_extra = main, x_extra, y_extra
        # stream the extra set through staging batches (default: when it is not on the main device)
        self.stream_extra = x_extra.device != main.device if stream_extra is None else bool(stream_extra)
        self.n_extra = int(round(fraction * main.batch_size))
        self.n_main = main.batch_size - self.n_extra
        if self.n_main < 1 or self.n_extra < 1:
            raise ValueError(f"extra fraction {fraction} of batch {main.batch_size} leaves {self.n_main} real and "
                             f"{self.n_extra} extra images per batch; both must be >= 1")

    def __len__(self) -> int:
        n = self.main.x.shape[0]
        return n // self.n_main if self.main.drop_last else -(-n // self.n_main)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        m = self.main
        g = m._generator(epoch, m.x.device)
        n = m.x.shape[0]
        need = len(self) * self.n_main
        perm = torch.cat([torch.randperm(n, generator=g, device=m.x.device) for _ in range(-(-need // n))])
        extra_indices = self._extra_indices(epoch)
        g_aug = m._aug_generator(epoch)
        gathers = [(Gather(m.x, m.device, m.streaming), Gather(m.y, m.device, m.streaming)),
                   (Gather(self.x_extra, m.device, self.stream_extra),
                    Gather(self.y_extra, m.device, self.stream_extra))]
        for b in range(len(self)):
            idx = perm[b * self.n_main : (b + 1) * self.n_main]
            jdx = next(extra_indices)
            if m.world_size > 1:
                idx, jdx = idx[m.rank :: m.world_size], jdx[m.rank :: m.world_size]
            parts = []
            for (gx, gy), ix in zip(gathers, (idx, jdx)):
                parts.append((to_unit_float(gx(ix)), gy(ix).long()))
            xb = finish_batch(torch.cat([parts[0][0], parts[1][0]]), augment=m.augment, generator=g_aug,
                              channels_last=m.channels_last)  # the sets may differ in dtype: unit floats first
            yield xb, torch.cat([parts[0][1], parts[1][1]])

    def _extra_indices(self, epoch: int) -> Iterator[Tensor]:
        """The extra set's indices of each batch of ``epoch`` (``n_extra`` each, on the extra set's device)."""
        n, k, device = self.x_extra.shape[0], self.n_extra, self.x_extra.device
        if self.sampling == "replacement":
            g = self.main._generator(epoch + 104_729, device)
            while True:
                yield torch.randint(0, n, (k,), generator=g, device=device)
        if n < k:
            raise ValueError(f"the extra set ({n} images) is smaller than the {k} extra images of a batch: use "
                             f"extra_sampling 'replacement'")
        per_pass = n // k  # batches of one pass (drop_last: the pass's last n mod k images are left out)
        start = epoch * len(self)  # batches drawn before this epoch: the passes run on across epochs
        g = torch.Generator().manual_seed(self.main.seed * 1_000_003 + 104_729)  # one stream for the whole run
        for _ in range(start // per_pass):  # replay the earlier passes' permutations (a resume draws the same)
            torch.randperm(n, generator=g)
        b = start % per_pass
        while True:
            perm = torch.randperm(n, generator=g).to(device)
            for i in range(b, per_pass):
                yield perm[i * k : (i + 1) * k]
            b = 0

