"""Datasets as uint8 NCHW arrays read from their standard on-disk formats (see docs/DESIGN.md).

Formats: CIFAR-10/100 python pickles (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html),
Fashion-MNIST IDX files (Xiao et al. 2017, https://github.com/zalandoresearch/fashion-mnist),
Tiny-ImageNet-200 folders (CS231n, http://cs231n.stanford.edu/tiny-imagenet-200.zip) and the
``.npz`` generated-data sets (``image`` NHWC uint8, ``label``) of Gowal et al. 2021 / Rebuffi et al. 2021.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "default_data_dir",
    "estimate_bytes",
    "load_dataset",
    "load_extra_npz",
]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class DatasetError(ValueError):
    """A dataset is missing, corrupt or inconsistent; the message says where we looked and how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a dataset: classes, image shape (C, H, W), normalisation statistics."""

    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


# Per-channel normalisation of the models: CIFAR and Tiny-ImageNet as the ADR authors' src/model/create_model.py
# (CIFAR also as RobustBench's dm_wide_resnet.py; Tiny-ImageNet's std there is not the per-pixel std of the set).
# A one-element mean/std broadcasts over any channel count (used by "synthetic", whose shape varies).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": DatasetInfo(100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": DatasetInfo(200, (3, 64, 64), (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "fashion-mnist": DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,)),
    "synthetic": DatasetInfo(10, (3, 32, 32), (0.5,), (0.25,)),
}


@dataclass
class ArrayDataset:
    """Images ``x`` (uint8 ``[N,C,H,W]``), labels ``y`` (int64 ``[N]``); ``x / 255`` lies in ``[0, 1]``."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise DatasetError(f"{self.name}: x must be uint8 [N,C,H,W], got {self.x.dtype} {self.x.shape}")
        if self.y.ndim != 1 or not np.issubdtype(self.y.dtype, np.integer):
            raise DatasetError(f"{self.name}: y must be an integer vector, got {self.y.dtype} {self.y.shape}")
        if len(self.x) != len(self.y):
            raise DatasetError(f"{self.name}: {len(self.x)} images but {len(self.y)} labels")
        self.y = self.y.astype(np.int64, copy=False)
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise DatasetError(
                f"{self.name}: labels span [{self.y.min()}, {self.y.max()}], outside [0, {self.num_classes})"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, n_or_indices: int | Sequence[int] | np.ndarray) -> ArrayDataset:
        """The first ``n`` examples (an int) or the examples at the given indices."""
        if isinstance(n_or_indices, (int, np.integer)):
            if n_or_indices < 0:
                raise ValueError(f"subset size must be >= 0, got {n_or_indices}")
            idx: Any = slice(0, int(n_or_indices))
        else:
            idx = np.asarray(n_or_indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, self.name, self.classes)

    def split(self, n_val: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        """Seeded held-out split: ``n_val`` random examples for val, the rest (in order) for train."""
        if not 0 <= n_val <= len(self):
            raise ValueError(f"n_val must be in [0, {len(self)}], got {n_val}")
        perm = np.random.default_rng(seed).permutation(len(self))
        return self.subset(np.sort(perm[n_val:])), self.subset(np.sort(perm[:n_val]))


def estimate_bytes(ds: ArrayDataset, dtype: Any = np.uint8) -> int:
    """Bytes to hold ``ds`` on a device with images stored as ``dtype`` (labels as int64)."""
    return int(ds.x.size * np.dtype(dtype).itemsize + ds.y.size * 8)


def default_data_dir() -> Path:
    """``$ART_ADR_DATA`` if set, else ``~/.cache/art-adr/data``."""
    env = os.environ.get("ART_ADR_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "art-adr" / "data"


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **kw: Any,
) -> ArrayDataset:
    """Split ``"train"``/``"test"`` of dataset ``name`` (a ``DATASETS`` key) as uint8 NCHW arrays."""
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {sorted(_LOADERS)}")
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and name != "synthetic":
        if not root.exists() and not download:
            raise DatasetError(f"data directory {root} does not exist (for {name}); check --data-dir / data_dir, "
                               f"or pass download=True (--download) to fetch the dataset there")
        if root.exists() and not root.is_dir():
            raise DatasetError(f"data directory {root} is not a directory (for {name})")
        if name == "fashion-mnist":
            kw.setdefault("system", False)  # an explicit folder is the only place looked in
    from .checks import call_with_options

    return call_with_options(_LOADERS[name], f"dataset {name!r}", (split, root, download), kw, DatasetError)


# ---------------------------------------------------------------- CIFAR (python pickles)

# Label keys of the pickles; the folder, file lists and meta file come from torchvision's CIFAR classes.
_CIFAR_LABELS = {"cifar10": b"labels", "cifar100": b"fine_labels"}


def _cifar_class(name: str) -> Any:
    """torchvision's ``CIFAR10`` / ``CIFAR100`` (torchvision/datasets/cifar.py): ``base_folder``,
    ``train_list`` / ``test_list`` of ``[filename, md5]``, ``meta`` ``{"filename", "key"}`` and the download."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100


# The only globals a CIFAR pickle needs: numpy arrays, dtypes and scalars (numpy 1.x writes ``numpy.core``,
# numpy 2.x ``numpy._core``; protocol 5 rebuilds arrays with ``_frombuffer``) and Python 2's bytes codec.
_PICKLE_GLOBALS = {
    **{(f"numpy.{core}.multiarray", name): ("multiarray", name)
       for core in ("core", "_core") for name in ("_reconstruct", "scalar")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): ("numeric", "_frombuffer") for core in ("core", "_core")},
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, bytes, str, numbers and numpy arrays: no code runs."""

    def find_class(self, module: str, name: str) -> Any:
        where = _PICKLE_GLOBALS.get((module, name))
        if where is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR file holds only arrays, "
                                         f"lists and strings; this file may be malicious)")
        import importlib

        home, attr = where
        if home in ("multiarray", "numeric"):
            core = "numpy._core" if hasattr(np, "_core") else "numpy.core"
            home = f"{core}.{home}"
        return getattr(importlib.import_module(home), attr)


def _unpickle(path: Path) -> dict:
    """Read one CIFAR pickle (``encoding="bytes"``, as in the dataset's own reader) with :class:`_DataUnpickler`."""
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError) as e:
        raise DatasetError(f"cannot read CIFAR file {path}: {e}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N,3,32,32]`` and labels of one CIFAR batch file."""
    d = _unpickle(path)
    if b"data" not in d or label_key not in d:
        raise DatasetError(f"{path}: missing key b'data' or {label_key!r}; keys are {sorted(d)}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(f"{path}: expected uint8 data [N,3072] and N labels, got {data.dtype} "
                           f"{data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_classes(path: Path, key: bytes) -> tuple[str, ...] | None:
    """Class names from ``batches.meta`` / ``meta`` (``None`` when absent)."""
    if not path.exists():
        return None
    names = _unpickle(path).get(key)
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else None


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ArrayDataset:
    """CIFAR-10/100 from ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    tv = _cifar_class(name)
    base = root / tv.base_folder
    files = [base / f for f, _md5 in (tv.train_list if split == "train" else tv.test_list)]
    if download and not all(f.exists() for f in files):  # torchvision fetches, checks the md5s and extracts
        tv(root=str(root), train=split == "train", download=True)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DatasetError(
            f"{name} {split} split not found: missing {missing}. Expected the python version of the dataset "
            f"extracted to {base}/ (https://www.cs.toronto.edu/~kriz/cifar.html); pass download=True "
            f"(--download) to fetch it into {root}, or set data_dir / $ART_ADR_DATA."
        )
    parts = [_cifar_batch(f, _CIFAR_LABELS[name]) for f in files]
    x = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    y = np.concatenate([p[1] for p in parts])
    classes = _cifar_classes(base / tv.meta["filename"], tv.meta["key"].encode())
    return ArrayDataset(x, y, DATASETS[name].num_classes, name, classes)


# ---------------------------------------------------------------- Fashion-MNIST (IDX)

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format, optionally gzipped): uint8 labels (2049) or images (2051).

    Not torchvision's ``datasets.mnist.read_image_file``: (0.29) it opens files without gzip while the Debian
    package ships ``.gz`` only, and checks them with ``assert``s, where this names the file and the fault.
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 8:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    ndim = {2049: 1, 2051: 3}.get(magic)
    if ndim is None:
        raise DatasetError(f"{path}: bad IDX magic number {magic} (expected 2049 labels or 2051 images)")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} ({header + int(np.prod(dims))} bytes), "
                           f"file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    """First ``<dir>/<stem>.gz`` or ``<dir>/<stem>`` that exists."""
    for d in dirs:
        for cand in (d / f"{stem}.gz", d / stem):
            if cand.exists():
                return cand
    return None


def _find_idx_pair(dirs: list[Path], img_stem: str, lbl_stem: str) -> tuple[Path | None, Path | None]:
    """Images and labels from the first folder holding both (never one file from each of two folders);
    a folder holding only one of them is an error naming the missing file."""
    for d in dirs:
        img, lbl = _find_idx([d], img_stem), _find_idx([d], lbl_stem)
        if img is not None and lbl is not None:
            return img, lbl
        if img is not None or lbl is not None:
            missing = lbl_stem if img is not None else img_stem
            raise DatasetError(f"fashion-mnist: {d} holds {(img or lbl).name} but not {missing}[.gz]; "
                               f"add the missing file (images and labels must come from one folder)")
    return None, None


def _load_fashion_mnist(split: str, root: Path, download: bool, system: bool = True) -> ArrayDataset:
    """Fashion-MNIST from ``root``, ``root/fashion-mnist``, torchvision's layout, or (``system``, when no
    folder was given explicitly) the Debian package's copy; images and labels come from one folder."""
    dirs = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    if system:
        dirs.append(FASHION_MNIST_SYSTEM_DIR)
    img_stem, lbl_stem = _FMNIST_FILES[split]
    img, lbl = _find_idx_pair(dirs, img_stem, lbl_stem)
    if (img is None or lbl is None) and download:
        import torchvision

        torchvision.datasets.FashionMNIST(root=str(root), train=split == "train", download=True)
        img, lbl = _find_idx_pair(dirs, img_stem, lbl_stem)
    if img is None or lbl is None:
        raise DatasetError(
            f"fashion-mnist {split} split not found: missing {img_stem}[.gz] and {lbl_stem}[.gz] in "
            f"{[str(d) for d in dirs]}. Install it with `apt-get install dataset-fashion-mnist`, or pass "
            f"download=True (--download) to fetch it into {root}."
        )
    x, y = read_idx(img), read_idx(lbl)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"fashion-mnist: images {img} {x.shape} do not match labels {lbl} {y.shape}")
    from torchvision.datasets import FashionMNIST

    return ArrayDataset(x[:, None].copy(), y.astype(np.int64), 10, "fashion-mnist", tuple(FashionMNIST.classes))


# ---------------------------------------------------------------- Tiny-ImageNet-200 (folders of JPEGs)


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


def _load_tinyimagenet(split: str, root: Path, download: bool, cache: bool = True) -> ArrayDataset:
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


# ---------------------------------------------------------------- synthetic (learnable, any shape)


def _prototypes(shape: tuple[int, int, int], num_classes: int, seed: int) -> np.ndarray:
    """Smooth class patterns in ``[0.15, 0.85]``: random 4×4 colour grids upsampled to ``H×W``."""
    c, h, w = shape
    grid = np.random.default_rng([seed, 0]).uniform(0.15, 0.85, size=(num_classes, c, 4, 4))
    rows = np.minimum(np.arange(h) * 4 // h, 3)
    cols = np.minimum(np.arange(w) * 4 // w, 3)
    return grid[:, :, rows][:, :, :, cols]


def _load_synthetic(
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


# ---------------------------------------------------------------- generated data (.npz)


def _npz_member(zf: zipfile.ZipFile, key: str, n: int | None, where: Path) -> np.ndarray:
    """Array ``key`` of an open ``.npz``, reading only the first ``n`` rows when ``n`` is given."""
    fmt = np.lib.format
    try:
        with zf.open(f"{key}.npy") as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if fortran or dtype.hasobject or not shape:
                raise DatasetError(f"{where}: array {key!r} must be a C-ordered numeric array")
            rows = shape[0] if n is None else min(int(n), shape[0])
            count = rows * int(np.prod(shape[1:], dtype=np.int64))
            data = f.read(count * dtype.itemsize)
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{where}: cannot read array {key!r}: {e}") from e
    if len(data) != count * dtype.itemsize:
        raise DatasetError(f"{where}: array {key!r} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape((rows, *shape[1:]))


def load_extra_npz(
    path: str | os.PathLike, num_classes: int | None = None, n: int | None = None, name: str = "extra"
) -> ArrayDataset:
    """Generated data (Gowal et al. 2021, Rebuffi et al. 2021 DDPM sets): ``.npz`` with ``image`` uint8
    NHWC and ``label``; ``n`` reads only the first ``n`` rows; ``num_classes`` defaults to max(label)+1."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"extra-data file {path} not found (expected an .npz with 'image' and 'label')")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"cannot read extra-data file {path} (not an .npz?): {e}") from e
    with zf:
        keys = {k[:-4] for k in zf.namelist() if k.endswith(".npy")}
        if not {"image", "label"} <= keys:
            raise DatasetError(f"{path}: needs arrays 'image' and 'label', has {sorted(keys)}")
        image, label = _npz_member(zf, "image", n, path), _npz_member(zf, "label", n, path)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: 'image' must be uint8 [N,H,W,C] with C in (1, 3), got "
                           f"{image.dtype} {image.shape}")
    if label.ndim != 1 or not np.issubdtype(label.dtype, np.integer) or len(label) != len(image):
        raise DatasetError(f"{path}: 'label' must be integers [N] with N={len(image)}, got "
                           f"{label.dtype} {label.shape}")
    k = int(num_classes) if num_classes is not None else int(label.max(initial=1)) + 1
    x = np.ascontiguousarray(image.transpose(0, 3, 1, 2))
    try:
        return ArrayDataset(x, label.astype(np.int64), k, name)
    except DatasetError as e:
        raise DatasetError(f"{path}: {e}") from e


_LOADERS: dict[str, Any] = {
    "cifar10": lambda split, root, download, **kw: _load_cifar("cifar10", split, root, download, **kw),
    "cifar100": lambda split, root, download, **kw: _load_cifar("cifar100", split, root, download, **kw),
    "tinyimagenet": _load_tinyimagenet,
    "fashion-mnist": _load_fashion_mnist,
    "synthetic": _load_synthetic,
}
