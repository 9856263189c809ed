"""A run's data: its training, validation, test and extra sets, and where their images live (device or host)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config import RunConfig
from .files import RunError

if TYPE_CHECKING:
    from ..data import ArrayDataset

Sets = tuple["ArrayDataset", "ArrayDataset", "ArrayDataset", "ArrayDataset | None"]  # train, val, test, extra

__all__ = ["load_data", "run_data", "place_data", "placed_tensors"]


def load_data(config: RunConfig) -> Sets:
    """A run's ``(train, val, test, extra)`` sets: ``val`` is the seeded hold-out of the training set
    (``val_split: holdout``) or the test set; ``extra`` the extra-data set or ``None``."""
    from ..data import load_dataset, load_extra_npz

    kw = dict(config.dataset_kwargs)
    train = load_dataset(config.dataset, "train", config.data_dir, config.download, **kw)
    test = load_dataset(config.dataset, "test", config.data_dir, config.download, **kw)
    if config.val_split == "holdout":
        if config.val_size >= len(train):
            raise RunError(f"val_size {config.val_size} leaves no training data ({len(train)} examples)")
        train, val = train.split(config.val_size, seed=config.seed)
    else:  # the whole test set, as the ADR authors validate (val_size sizes the hold-out only)
        val = test
    if config.subset is not None and config.subset > len(train):
        held = f" after the {len(val)}-image hold-out" if config.val_split == "holdout" else ""
        raise RunError(f"subset {config.subset} is larger than the training set ({len(train)} images{held}); "
                       f"pass at most --subset {len(train)}, or leave it out to use them all")
    if config.subset is not None and config.subset < len(train):
        idx = np.sort(np.random.default_rng(config.seed + 1).permutation(len(train))[: config.subset])
        train = train.subset(idx)
    extra = None
    if config.extra_fraction > 0:
        if not config.extra_data:
            raise RunError("extra_fraction > 0 needs --extra-data FILE.npz (image uint8 NHWC, label)")
        extra = load_extra_npz(config.extra_data, num_classes=train.num_classes)
        if extra.shape != train.shape:
            raise RunError(f"extra data images are {extra.shape}, the dataset's are {train.shape}")
    return train, val, test, extra


def run_data(config: RunConfig) -> Sets:
    """:func:`load_data`, and ``RunError`` when ``drop_last`` would leave no batch of the training set."""
    train, val, test, extra = load_data(config)
    if config.drop_last and len(train) < config.batch_size:
        raise RunError(f"drop_last leaves no batch: {len(train)} training images are fewer than batch_size "
                       f"{config.batch_size}; pass --set drop_last=false or a smaller --batch-size")
    return train, val, test, extra


def place_data(x_train: Any, x_extra: Any, device: torch.device) -> tuple[bool, bool]:
    """Which sets go on ``device``: both when together they fit (half the free GPU memory, or
    ``ART_ADR_DEVICE_BUDGET_BYTES``), else the training set alone if it fits; the rest is streamed from the
    host through pinned double-buffered staging batches (:class:`art_adr.loader.Gather`)."""
    from ..loader import fits_on_device, image_nbytes

    train_bytes = image_nbytes(x_train)
    extra_bytes = image_nbytes(x_extra) if x_extra is not None else 0
    both = fits_on_device(train_bytes + extra_bytes, device)
    return both or fits_on_device(train_bytes, device), both and x_extra is not None


def placed_tensors(x: Any, y: Any, device: torch.device, on_device: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from ..loader import host_images, to_tensor_images

    if on_device:
        return to_tensor_images(x, device), torch.as_tensor(y, device=device)
    return host_images(x), torch.as_tensor(y)
