"""The dataset registry (art_adr.data): the built-in datasets registered at their definitions, the command line
reading it, and docs/DESIGN.md's example of adding one (MNIST from IDX files), executed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_data import write_idx

from art_adr import data
from art_adr.cli import main
from art_adr.data import DATASETS, DatasetError, DatasetInfo, dataset_names, load_dataset, register_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restored_registry():
    """Whatever a test registers is gone afterwards."""
    before = DATASETS.names()
    yield
    for name in DATASETS.names():
        if name not in before:
            DATASETS.unregister(name)


def test_builtin_datasets_are_registered_in_module_order_without_torch():
    assert dataset_names() == ("cifar10", "cifar100", "tinyimagenet", "fashion-mnist", "synthetic") == tuple(DATASETS)
    assert data.DATASET_MODULES == ("cifar", "tinyimagenet", "fashion_mnist", "synthetic")
    assert DATASETS["fashion-mnist"] == DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,))
    assert not DATASETS["synthetic"].files and DATASETS["cifar10"].files
    code = ("import sys; import art_adr.data, art_adr.cli.train; "
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_registered_name_is_taken(restored_registry):
    with pytest.raises(ValueError, match="needs a new name"):
        register_dataset("cifar10", DATASETS["cifar10"])(lambda split, root, download: None)
    with pytest.raises(DatasetError, match=f"unknown dataset 'no-such-dataset'; registered: {', '.join(DATASETS)}"):
        load_dataset("no-such-dataset")


def test_train_help_lists_the_registry():
    r = CliRunner().invoke(main, ["train", "--help"], terminal_width=400)
    assert r.exit_code == 0
    assert "A registered dataset (art_adr.data): " + ", ".join(dataset_names()) + "." in " ".join(r.output.split())


def _write_mnist(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent 28×28 images (learnable) as MNIST's four IDX files, gzipped."""
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 10).astype(np.uint8)
    x = np.clip(rng.normal(40, 20, (n, 28, 28)), 0, 255).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label: 2 * label + 6, 4:24] = 230
    (root / "mnist").mkdir(parents=True)
    for prefix in ("train", "t10k"):
        write_idx(root / "mnist" / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", y)
    return x, y


def test_the_designs_dataset_example_registers_loads_and_trains(tmp_path, monkeypatch, restored_registry):
    """The MNIST example of docs/DESIGN.md, as a module of art_adr.data: load_dataset and `art-adr train` take it."""
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    code = re.search(r"```python\n(.*?)```", design.split("## Adding a dataset")[1], flags=re.S).group(1)
    module = types.ModuleType("art_adr.data.mnist")
    module.__package__ = "art_adr.data"
    monkeypatch.setitem(sys.modules, "art_adr.data.mnist", module)
    exec(compile(code, "DESIGN.md", "exec"), module.__dict__)
    assert dataset_names()[-1] == "mnist" and DATASETS["mnist"].shape == (1, 28, 28)

    with pytest.raises(DatasetError, match="mnist test split not found"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    x, y = _write_mnist(tmp_path, 120)
    ds = load_dataset("mnist", "test", data_dir=tmp_path)
    assert ds.name == "mnist" and ds.x.shape == (120, 1, 28, 28) and np.array_equal(ds.x[:, 0], x)
    assert np.array_equal(ds.y, y)

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                                  "--val-size", "20", "--set", "arch=mlp", "--set", "arch_kwargs={hidden: 16}",
                                  "--set", "batch_size=50", "--set", "max_iter=2", "--set", "eval_max_iter=2",
                                  "--set", "val_attack=pgd", "--device", "cpu", "-o", str(out), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and 0 <= record["pgd_acc"] <= record["clean_acc"] <= 1
    assert (out / "checkpoints" / "final.pt").is_file()
