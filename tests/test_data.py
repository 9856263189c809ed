"""Tests for art_adr.data: every loader reads files written in the dataset's real on-disk format."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from art_adr import data
from art_adr.data import (
    DATASETS,
    ArrayDataset,
    DatasetError,
    estimate_bytes,
    load_dataset,
    load_extra_npz,
    read_idx,
)

# ---------------------------------------------------------------- helpers writing the real formats


def _rand_u8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 3) -> dict[str, np.ndarray]:
    """``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``, ``batches.meta``."""
    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _rand_u8(rng, n_per_batch, 3072), [int(v) for v in rng.integers(0, 10, n_per_batch)]
        _dump(base / f"data_batch_{i}", {b"batch_label": b"training batch", b"data": x, b"labels": y,
                                         b"filenames": [b"f.png"] * n_per_batch})
        xs.append(x)
        ys += y
    xt, yt = _rand_u8(rng, n_test, 3072), [int(v) for v in rng.integers(0, 10, n_test)]
    _dump(base / "test_batch", {b"batch_label": b"testing batch", b"data": xt, b"labels": yt})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(base / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072})
    return {"x": np.concatenate(xs), "y": np.array(ys), "xt": xt, "yt": np.array(yt)}


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 2) -> dict[str, np.ndarray]:
    """``cifar-100-python/`` with ``train``, ``test``, ``meta`` (fine and coarse labels)."""
    rng = np.random.default_rng(1)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, fine = _rand_u8(rng, n, 3072), [int(v) for v in rng.integers(0, 100, n)]
        _dump(base / split, {b"filenames": [b"a.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine,
                             b"coarse_labels": [v // 5 for v in fine], b"data": x})
        out[split] = (x, np.array(fine))
    _dump(base / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                          b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return out


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> None:
    """An IDX file: magic (2049 labels / 2051 images), big-endian dims, raw uint8."""
    magic = 2049 if arr.ndim == 1 else 2051
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def write_tinyimagenet(root: Path, n_val: int = 5) -> tuple[list[str], list[tuple[str, str, tuple]]]:
    """``tiny-imagenet-200/`` with 200 wnids, one train JPEG per class, ``n_val`` val JPEGs (one grayscale)."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)][::-1]  # wnids.txt is not sorted in the real file either
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for i, w in enumerate(wnids[:200]):
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        Image.new("RGB", (64, 64), (i, 255 - i, 128)).save(d / f"{w}_0.JPEG")
        (base / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t63\t63\n")
    (base / "val" / "images").mkdir(parents=True)
    rows = []
    for j in range(n_val):
        w = wnids[j * 7]
        colour = (200, 30, 60)
        if j == 1:
            Image.new("L", (64, 64), 90).save(base / "val" / "images" / f"val_{j}.JPEG")
            colour = (90, 90, 90)
        else:
            Image.new("RGB", (64, 64), colour).save(base / "val" / "images" / f"val_{j}.JPEG")
        rows.append((f"val_{j}.JPEG", w, colour))
    (base / "val" / "val_annotations.txt").write_text(
        "".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w, _ in rows))
    return wnids, rows


# ---------------------------------------------------------------- ArrayDataset


def _toy(n: int = 10) -> ArrayDataset:
    x = np.arange(n * 3 * 2 * 2, dtype=np.int64).reshape(n, 3, 2, 2).astype(np.uint8)
    return ArrayDataset(x, np.arange(n) % 3, 3, "toy")


def test_array_dataset_len_subset_split():
    ds = _toy(10)
    assert len(ds) == 10 and ds.shape == (3, 2, 2) and ds.y.dtype == np.int64
    assert len(ds.subset(4)) == 4 and np.array_equal(ds.subset(4).y, ds.y[:4])
    sub = ds.subset([9, 0])
    assert np.array_equal(sub.y, ds.y[[9, 0]]) and np.array_equal(sub.x, ds.x[[9, 0]])
    train, val = ds.split(3, seed=5)
    assert len(train) == 7 and len(val) == 3
    again = ds.split(3, seed=5)
    assert np.array_equal(val.x, again[1].x) and np.array_equal(train.y, again[0].y)
    firsts = {int(x) for x in np.concatenate([train.x[:, 0, 0, 0], val.x[:, 0, 0, 0]])}
    assert firsts == {int(x) for x in ds.x[:, 0, 0, 0]}  # a partition
    assert any(not np.array_equal(ds.split(3, seed=s)[1].y, val.y) for s in range(6, 10))
    with pytest.raises(ValueError):
        ds.split(11)


def test_array_dataset_validates():
    x = np.zeros((2, 1, 2, 2), np.uint8)
    with pytest.raises(DatasetError):
        ArrayDataset(x.astype(np.float32), np.zeros(2, np.int64), 2, "bad")
    with pytest.raises(DatasetError):
        ArrayDataset(x, np.zeros(3, np.int64), 2, "bad")
    with pytest.raises(DatasetError, match="labels"):
        ArrayDataset(x, np.array([0, 2]), 2, "bad")


def test_estimate_bytes():
    ds = _toy(10)
    assert estimate_bytes(ds) == 10 * 12 + 10 * 8
    assert estimate_bytes(ds, np.float32) == 10 * 12 * 4 + 10 * 8


def test_dataset_infos():
    assert DATASETS["cifar10"].shape == (3, 32, 32) and DATASETS["cifar100"].num_classes == 100
    assert DATASETS["tinyimagenet"] == data.DatasetInfo(200, (3, 64, 64), DATASETS["tinyimagenet"].mean,
                                                        DATASETS["tinyimagenet"].std)
    assert DATASETS["fashion-mnist"].shape == (1, 28, 28)
    for info in DATASETS.values():
        assert len(info.mean) == len(info.std) and len(info.mean) in (1, info.shape[0])


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("no-such-dataset", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="split"):
        load_dataset("synthetic", "val")


# ---------------------------------------------------------------- CIFAR


def test_cifar10_pickles(tmp_path):
    ref = write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert train.x.shape == (20, 3, 32, 32) and train.x.dtype == np.uint8 and train.y.dtype == np.int64
    assert np.array_equal(train.y, ref["y"]) and train.num_classes == 10 and train.name == "cifar10"
    # row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major
    assert train.x[5, 1, 3, 7] == ref["x"][5, 1024 + 3 * 32 + 7]
    assert train.x.flags["C_CONTIGUOUS"]
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert len(test) == 3 and np.array_equal(test.x.reshape(3, -1), ref["xt"])
    assert test.classes is not None and test.classes[0] == "airplane"


def test_cifar100_pickles_fine_labels(tmp_path):
    ref = write_cifar100(tmp_path)
    train = load_dataset("cifar100", "train", data_dir=tmp_path)
    assert train.x.shape == (6, 3, 32, 32) and train.num_classes == 100
    assert np.array_equal(train.y, ref["train"][1])
    assert np.array_equal(train.x.reshape(6, -1), ref["train"][0])
    assert len(load_dataset("cifar100", "test", data_dir=tmp_path)) == 2


def test_cifar_default_dir_from_env(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setenv("ART_ADR_DATA", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    assert len(load_dataset("cifar10", "test")) == 3


def test_cifar_missing_raises_with_path(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value) and "download" in str(e.value)
    with pytest.raises(DatasetError, match="cifar-100-python"):
        load_dataset("cifar100", "test", data_dir=tmp_path)


def test_cifar_corrupt_raises(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    _dump(bad, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    _dump(bad, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DatasetError, match="labels"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    _dump(bad, {b"pixels": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="b'data'"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


# ---------------------------------------------------------------- Fashion-MNIST / IDX


def test_idx_round_trip_gz_and_plain(tmp_path):
    rng = np.random.default_rng(2)
    imgs, lbls = _rand_u8(rng, 5, 28, 28), rng.integers(0, 10, 5).astype(np.uint8)
    write_idx(tmp_path / "i.gz", imgs)
    write_idx(tmp_path / "l", lbls, compress=False)
    assert np.array_equal(read_idx(tmp_path / "i.gz"), imgs)
    assert np.array_equal(read_idx(tmp_path / "l"), lbls)


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "magic").write_bytes(struct.pack(">II", 1234, 1) + b"\0")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "magic")
    write_idx(tmp_path / "short", np.zeros((3, 2, 2), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(DatasetError, match="bytes"):
        read_idx(tmp_path / "short")
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="x.gz"):
        read_idx(tmp_path / "x.gz")


def _write_fmnist(root: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    imgs, lbls = _rand_u8(rng, n, 28, 28), (np.arange(n) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", lbls)
    return imgs, lbls


def test_fashion_mnist_from_data_dir(tmp_path):
    imgs, lbls = _write_fmnist(tmp_path)
    ds = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert ds.x.shape == (6, 1, 28, 28) and ds.x.dtype == np.uint8 and ds.y.dtype == np.int64
    assert np.array_equal(ds.x[:, 0], imgs) and np.array_equal(ds.y, lbls) and ds.num_classes == 10


def test_fashion_mnist_mismatch_and_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(data.fashion_mnist, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "nowhere")  # where it is read
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert "dataset-fashion-mnist" in str(e.value) and str(tmp_path) in str(e.value)
    _write_fmnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


@pytest.mark.skipif(not (data.FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("ART_ADR_DATA", str(tmp_path / "empty"))  # the default folder: the system copy is used
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert np.array_equal(np.bincount(train.y), [6000] * 10) and np.array_equal(np.bincount(test.y), [1000] * 10)
    mean = train.x.mean() / 255.0
    assert abs(mean - DATASETS["fashion-mnist"].mean[0]) < 1e-3


# ---------------------------------------------------------------- Tiny-ImageNet


def test_tinyimagenet_folders(tmp_path):
    wnids, rows = write_tinyimagenet(tmp_path)
    order = sorted(wnids)
    test = load_dataset("tinyimagenet", "test", data_dir=tmp_path)
    assert test.x.shape == (5, 3, 64, 64) and test.x.dtype == np.uint8 and test.num_classes == 200
    assert list(test.y) == [order.index(w) for _, w, _ in rows]
    for i, (_, _, colour) in enumerate(rows):  # JPEG is lossy on flat colours only by a few levels
        assert np.allclose(test.x[i].reshape(3, -1).mean(1), colour, atol=4)
    assert test.classes == tuple(order)
    train = load_dataset("tinyimagenet", "train", data_dir=tmp_path)
    assert train.x.shape == (200, 3, 64, 64) and np.array_equal(np.sort(train.y), np.arange(200))
    i = int(np.where(train.y == order.index(wnids[3]))[0][0])
    assert np.allclose(train.x[i].reshape(3, -1).mean(1), (3, 252, 128), atol=4)
    cache = tmp_path / "tiny-imagenet-200" / "art_adr_test.npz"
    assert cache.exists()
    again = load_dataset("tinyimagenet", "test", data_dir=tmp_path)
    assert np.array_equal(again.x, test.x) and np.array_equal(again.y, test.y)


def test_tinyimagenet_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("tinyimagenet", data_dir=tmp_path)
    assert "tiny-imagenet-200" in str(e.value) and data.TINYIMAGENET_URL in str(e.value)
    write_tinyimagenet(tmp_path, n_val=2)
    base = tmp_path / "tiny-imagenet-200"
    (base / "val" / "images" / "val_0.JPEG").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="val_0.JPEG"):
        load_dataset("tinyimagenet", "test", data_dir=tmp_path, cache=False)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="val_annotations.txt:1"):
        load_dataset("tinyimagenet", "test", data_dir=tmp_path, cache=False)


# ---------------------------------------------------------------- synthetic


def _nearest_class_mean_accuracy(train: ArrayDataset, test: ArrayDataset) -> float:
    xtr, xte = train.x.reshape(len(train), -1) / 255.0, test.x.reshape(len(test), -1) / 255.0
    means = np.stack([xtr[train.y == k].mean(0) for k in range(train.num_classes)])
    d = (xte**2).sum(1, keepdims=True) - 2 * xte @ means.T + (means**2).sum(1)
    return float((d.argmin(1) == test.y).mean())


def test_synthetic_deterministic_and_configurable():
    a = load_dataset("synthetic", "train", n=50, shape=(1, 12, 10), num_classes=4, seed=3)
    b = load_dataset("synthetic", "train", n=50, shape=(1, 12, 10), num_classes=4, seed=3)
    c = load_dataset("synthetic", "train", n=50, shape=(1, 12, 10), num_classes=4, seed=4)
    t = load_dataset("synthetic", "test", n=50, shape=(1, 12, 10), num_classes=4, seed=3)
    assert a.x.shape == (50, 1, 12, 10) and a.x.dtype == np.uint8 and a.num_classes == 4
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x) and not np.array_equal(a.x, t.x)
    assert np.array_equal(np.bincount(a.y), [13, 13, 12, 12])
    assert len(load_dataset("synthetic")) == 5000 and len(load_dataset("synthetic", "test")) == 1000


def test_synthetic_learnable():
    train = load_dataset("synthetic", "train", n=1000, seed=1)
    test = load_dataset("synthetic", "test", n=500, seed=1)
    assert _nearest_class_mean_accuracy(train, test) > 0.9


def test_synthetic_learnable_by_small_cnn():
    import torch

    from art_adr.data import model_inputs
    from art_adr.models import create_model

    torch.manual_seed(0)
    kw = {"shape": (3, 16, 16), "num_classes": 5, "seed": 2}
    train, test = load_dataset("synthetic", "train", n=500, **kw), load_dataset("synthetic", "test", n=200, **kw)
    model = create_model("small-cnn", 5, **model_inputs("synthetic"), in_channels=3, width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.from_numpy(train.x).float() / 255, torch.from_numpy(train.y)
    for _ in range(2):
        for i in range(0, len(x), 50):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(test.x).float() / 255).argmax(1).numpy()
    assert (pred == test.y).mean() > 0.9


# ---------------------------------------------------------------- extra data (.npz)


def test_extra_npz(tmp_path):
    rng = np.random.default_rng(4)
    image, label = _rand_u8(rng, 7, 32, 32, 3), rng.integers(0, 10, 7)
    np.savez(tmp_path / "ddpm.npz", image=image, label=label)
    ds = load_extra_npz(tmp_path / "ddpm.npz", num_classes=10)
    assert ds.x.shape == (7, 3, 32, 32) and ds.x.dtype == np.uint8 and ds.y.dtype == np.int64
    assert np.array_equal(ds.x, image.transpose(0, 3, 1, 2)) and np.array_equal(ds.y, label)
    part = load_extra_npz(tmp_path / "ddpm.npz", num_classes=10, n=3)
    assert np.array_equal(part.x, ds.x[:3]) and np.array_equal(part.y, ds.y[:3])
    np.savez_compressed(tmp_path / "z.npz", image=image, label=label.astype(np.uint8))
    z = load_extra_npz(tmp_path / "z.npz", n=4)
    assert np.array_equal(z.x, ds.x[:4]) and z.num_classes == int(label[:4].max()) + 1


def test_extra_npz_errors(tmp_path):
    with pytest.raises(DatasetError, match="missing.npz"):
        load_extra_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="junk.npz"):
        load_extra_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "keys.npz", x=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(2))
    with pytest.raises(DatasetError, match="'image' and 'label'"):
        load_extra_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "f.npz", image=np.zeros((2, 4, 4, 3), np.float32), label=np.zeros(2, np.int64))
    with pytest.raises(DatasetError, match="uint8"):
        load_extra_npz(tmp_path / "f.npz")
    np.savez(tmp_path / "n.npz", image=np.zeros((2, 4, 4, 3), np.uint8), label=np.zeros(3, np.int64))
    with pytest.raises(DatasetError, match="label"):
        load_extra_npz(tmp_path / "n.npz")
    np.savez(tmp_path / "r.npz", image=np.zeros((2, 4, 4, 3), np.uint8), label=np.array([0, 12]))
    with pytest.raises(DatasetError, match="r.npz"):
        load_extra_npz(tmp_path / "r.npz", num_classes=10)


# ---------------------------------------------------------------- the batch-finishing sequence


def test_finish_batch_unit_floats_then_augment_then_channels_last():
    from art_adr.loader import finish_batch

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    seen = {}

    def augment(t: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        seen["dtype"], seen["max"], seen["g"] = t.dtype, float(t.max()), g
        return t.flip(3)

    g = torch.Generator().manual_seed(0)
    out = finish_batch(x, augment=augment, generator=g, channels_last=True)
    assert seen["dtype"] == torch.float32 and seen["g"] is g  # augment sees [0, 1] floats
    assert seen["max"] == pytest.approx(95 / 255)
    assert torch.equal(out, x.float().div(255).flip(3))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    f = torch.rand(2, 3, 4, 4)
    assert finish_batch(f) is f  # float32 images pass untouched (no copy)
    assert torch.equal(finish_batch(f.double()), f)
