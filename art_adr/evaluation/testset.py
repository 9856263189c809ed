"""The images a run is evaluated on: one loader for "a test set from a run" and one subsetting rule.

``evaluate``, ``benchmark``, ``sweep`` and ``analyze`` load through :func:`load_split` (from a checkpoint) or
:func:`run_split` (from a run's config): the ``test`` split of the run's dataset (its ``data_dir``,
``dataset_kwargs`` and ``download``), or its validation ``holdout`` of the training set — the very split the run
validated on (:func:`art_adr.runs.load_data`). A subset is always the first N examples in order
(:func:`first_n`; RobustBench's order for the test sets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["SPLITS", "first_n", "load_split", "run_split", "test_set"]

SPLITS = ("test", "holdout")


def first_n(ds: Any, n: int | None) -> Any:
    """The one subsetting rule: the first ``n`` examples of ``ds`` in order (all of them when ``n`` is ``None``
    or at least ``len(ds)``)."""
    if n is not None and n < 1:
        raise ValueError(f"the number of evaluation images must be >= 1, got {n}")
    return ds.subset(n) if n is not None and n < len(ds.y) else ds


def test_set(config: Mapping[str, Any], dataset: str | None = None, data_dir: str | os.PathLike | None = None,
             num_classes: int | None = None) -> Any:
    """The test split of ``dataset`` (default the run's, ``config["dataset"]``); the run's ``data_dir``,
    ``dataset_kwargs`` and ``download`` apply when it is the run's dataset. ``ValueError`` when it is unknown or
    its number of classes is not ``num_classes`` (checked before touching the disk where possible)."""
    from ..data import DATASETS, load_dataset

    dataset = dataset or config.get("dataset")
    if dataset not in DATASETS:
        raise ValueError(f"checkpoint does not name a known dataset ({dataset!r}); pass dataset=... (--dataset)")
    if num_classes is not None and dataset != "synthetic" and DATASETS[dataset].num_classes != num_classes:
        raise ValueError(f"checkpoint has {num_classes} classes but {dataset} has {DATASETS[dataset].num_classes}")
    kwargs: dict[str, Any] = {}
    download = False
    if dataset == config.get("dataset"):
        data_dir = data_dir or config.get("data_dir")
        kwargs = dict(config.get("dataset_kwargs") or {})
        download = bool(config.get("download", False))
    ds = load_dataset(dataset, "test", data_dir, download, **kwargs)
    if num_classes is not None and ds.num_classes != num_classes:
        raise ValueError(f"checkpoint has {num_classes} classes but {dataset} has {ds.num_classes}")
    return ds


def run_split(config: Any, split: str = "test", n_examples: int | None = None) -> Any:
    """The first ``n_examples`` images (default all) of a run's ``split``: ``"test"`` or ``"holdout"`` (the run's
    validation hold-out of its training set; ``ValueError`` unless the run was trained with one).
    ``config``: the run's ``RunConfig``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "holdout":
        from ..runs import load_data  # the very split the run validated on

        if config.val_split != "holdout" or config.val_size <= 0:
            raise ValueError("split='holdout' needs a run trained with val_split=holdout and val_size > 0")
        return first_n(load_data(config)[1], n_examples)
    return first_n(test_set(config.to_dict()), n_examples)


def load_split(ckpt: Mapping[str, Any], split: str = "test", dataset: str | None = None,
               data_dir: str | os.PathLike | None = None) -> Any:
    """An ``ArrayDataset`` for evaluating the checkpoint dict ``ckpt``: the ``test`` split of ``dataset``
    (default the checkpoint's; the run's ``data_dir`` / ``dataset_kwargs`` apply when it is the run's dataset),
    or the run's validation ``holdout`` of its training set. ``ValueError`` when the classes do not match."""
    config = dict(ckpt.get("config") or {})
    desc = ckpt["model"]
    if split == "holdout":
        from ..config import resolve_config

        run_config = resolve_config(None, {**config, **({"data_dir": str(data_dir)} if data_dir else {})})
        return run_split(run_config, "holdout")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return test_set(config, dataset or desc.get("dataset"), data_dir, int(desc["num_classes"]))
