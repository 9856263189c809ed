"""Tiny-ImageNet-200 from its folders of JPEGs (CS231n, http://cs231n.stanford.edu/tiny-imagenet-200.zip); the
decoded arrays are cached beside them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import DATASETS, ArrayDataset, DatasetError, DatasetInfo, register_dataset

__all__ = ["TINYIMAGENET_URL", "load_tinyimagenet"]

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _read_jpeg(path: Path) -> np.ndarray:
    """One 64×64 image as uint8 ``[3, 64, 64]`` (grayscale JPEGs converted to RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"cannot decode image {path}: {e}") from e
    if arr.shape != (64, 64, 3):
        raise DatasetError(f"{path}: expected a 64x64 image, got {arr.shape[1]}x{arr.shape[0]}")
    return arr.transpose(2, 0, 1)


def _tiny_files(base: Path, split: str, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Image paths and class indices of a split (``test`` is the labelled official ``val`` set)."""
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    if split == "train":
        for w in wnids:
            imgs = sorted((base / "train" / w / "images").glob("*.JPEG"))
            if not imgs:
                raise DatasetError(f"tinyimagenet: no images in {base / 'train' / w / 'images'}")
            paths += imgs
            labels += [index[w]] * len(imgs)
        return paths, labels
    ann = base / "val" / "val_annotations.txt"
    if not ann.exists():
        raise DatasetError(f"tinyimagenet: missing {ann}")
    for line_no, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DatasetError(f"{ann}:{line_no}: bad line {line!r} (want filename<TAB>wnid<TAB>bbox...)")
        paths.append(base / "val" / "images" / parts[0])
        labels.append(index[parts[1]])
    return paths, labels


# Normalisation as the ADR authors' create_model.py (not the per-pixel std of the set).
@register_dataset("tinyimagenet", DatasetInfo(200, (3, 64, 64), (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)))
def load_tinyimagenet(split: str, root: Path, download: bool, cache: bool = True) -> ArrayDataset:
    """Tiny-ImageNet-200 from ``<root>/tiny-imagenet-200``; classes are the sorted wnids (ImageFolder order).

    The decoded arrays are cached as ``<root>/tiny-imagenet-200/art_adr_<split>.npy[z]`` when ``cache``.
    """
    base = root / "tiny-imagenet-200"
    if download and not (base / "wnids.txt").exists():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINYIMAGENET_URL, download_root=str(root))
    if not (base / "wnids.txt").exists():
        raise DatasetError(
            f"tinyimagenet not found: missing {base / 'wnids.txt'}. Download {TINYIMAGENET_URL} and unzip it "
            f"in {root} (giving tiny-imagenet-200/{{wnids.txt, train/<wnid>/images/*.JPEG, "
            f"val/images/*.JPEG, val/val_annotations.txt}}), or pass download=True (--download)."
        )
    wnids = sorted(w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip())
    if len(wnids) != DATASETS["tinyimagenet"].num_classes:
        raise DatasetError(f"{base / 'wnids.txt'}: expected 200 wnids, found {len(wnids)}")
    cache_path = base / f"art_adr_{split}.npz"
    if cache and cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as z:
            return ArrayDataset(z["x"], z["y"], 200, "tinyimagenet", tuple(wnids))
    paths, labels = _tiny_files(base, split, wnids)
    x = np.stack([_read_jpeg(p) for p in paths]) if paths else np.zeros((0, 3, 64, 64), np.uint8)
    ds = ArrayDataset(x, np.asarray(labels, dtype=np.int64), 200, "tinyimagenet", tuple(wnids))
    if cache:
        _try_save_npz(cache_path, x=ds.x, y=ds.y)
    return ds


def _try_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` atomically; a read-only folder silently skips the cache."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
