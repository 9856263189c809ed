"""Tests for art_adr.models: shapes, normalisation inside, RobustBench key compatibility, FLOP counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from art_adr.architectures import ARCHITECTURES
from art_adr.data import DATASETS, model_inputs
from art_adr.models import (
    ModelInputs,
    Normalized,
    SmallCNN,
    _rb_module,
    count_flops,
    create_model,
)
from art_adr.robustbench import robustbench_spec, robustbench_state_dict

SMALL_WRN = {"depth": 10, "widen_factor": 1}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_architecture_names():
    assert {"small-cnn", "resnet18", "preact-resnet18", "wrn-34-10", "wrn-28-10"} <= set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("resnet18", {}),
        ("preact-resnet18", {"activation": "relu"}),
        ("preact-resnet18", {"activation": "silu"}),
        ("wrn-28-10", SMALL_WRN),
        ("wrn-34-10", {**SMALL_WRN, "activation": "silu"}),
    ],
)
def test_output_shape_cifar(arch, kwargs):
    torch.manual_seed(0)
    model = create_model(arch, 10, **model_inputs("cifar10"), **kwargs).eval()
    assert isinstance(model, Normalized)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_resnet18_tinyimagenet_64px():
    model = create_model("resnet18", 200, **model_inputs("tinyimagenet")).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 200)


def test_preact_and_wrn_at_64px():
    for arch, kw in (("preact-resnet18", {}), ("wrn-28-10", SMALL_WRN)):
        model = create_model(arch, 200, **model_inputs("tinyimagenet"), **kw).eval()
        with torch.no_grad():
            assert model(torch.rand(3, 3, 64, 64)).shape == (3, 200)  # batch not mixed up by the pooling


def test_grayscale_inputs():
    with torch.no_grad():
        fashion = model_inputs("fashion-mnist")
        assert create_model("small-cnn", 10, **fashion)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        assert create_model("resnet18", 10, **fashion).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        wrn = create_model("wrn-28-10", 3, **model_inputs("synthetic"), in_channels=1, **SMALL_WRN).eval()
        assert wrn(torch.rand(2, 1, 16, 16)).shape == (2, 3)


def test_small_cnn_signature_kept():
    model = ARCHITECTURES["small-cnn"](10, ModelInputs((1, 28, 28), (0.5,), (0.25,)), in_channels=1, width=8)
    assert isinstance(model.net, SmallCNN) and model.net.fc.in_features == 16


def test_models_take_their_input_shape_from_the_caller():
    """The model layer reads no dataset registry: shapes and statistics come in as arguments."""
    with torch.no_grad():
        mlp = create_model("mlp", 4, input_shape=(1, 8, 8), hidden=16)
        assert mlp.net.body[1].in_features == 64 and mlp(torch.rand(2, 1, 8, 8)).shape == (2, 4)
        conv = create_model("conv-fc", 4, input_shape=(3, 16, 16), mean=(0.5,), std=(0.25,), width=2, hidden=8)
        assert conv(torch.rand(2, 3, 16, 16)).shape == (2, 4) and float(conv.mean) == 0.5
        assert create_model("resnet18", 4, input_shape=(1, 16, 16)).eval()(torch.rand(2, 1, 16, 16)).shape == (2, 4)
    assert create_model("mlp", 4).net.body[1].in_features == 784  # no shape: the architecture's default, 1×28×28
    with pytest.raises(ValueError, match="both mean and std"):
        create_model("mlp", 4, mean=(0.5,))
    source = (Path(__file__).resolve().parents[1] / "art_adr" / "models.py").read_text()
    assert "DATASETS" not in source and ".data" not in source


def test_an_mlp_trains_on_synthetic_images_of_its_own_shape(tmp_path):
    """``--arch mlp --dataset synthetic`` with a non-default ``shape`` (was: 2×64 vs 3072×256), and the run's
    checkpoint rebuilds from its ``input_shape``."""
    from click.testing import CliRunner

    from art_adr.checkpoint import load_model
    from art_adr.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--dataset", "synthetic", "--arch", "mlp", "--set", "dataset_kwargs={n: 160, shape: [1, 8, 8]}",
        "--set", "arch_kwargs={hidden: 16}", "--epochs", "1", "--val-size", "32", "--batch-size", "64",
        "--max-iter", "1", "--set", "eval_max_iter=1", "--device", "cpu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    model, ckpt = load_model(out)
    assert ckpt["model"]["input_shape"] == [1, 8, 8] and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_a_checkpoint_without_input_shape_is_rebuilt_with_its_datasets_shape():
    """Checkpoints written before ``input_shape`` was stored name only their dataset: the registered shape and
    statistics rebuild them (conv-fc's dense layer depends on the image size)."""
    from art_adr.checkpoint import model_from_desc

    old = {"arch": "conv-fc", "num_classes": 10, "dataset": "cifar10", "kwargs": {"width": 2, "hidden": 8}}
    model = model_from_desc(old)
    reference = create_model("conv-fc", 10, **model_inputs("cifar10"), width=2, hidden=8)
    assert model.net.fc[0].in_features == 2 * 2 * 8 * 8 and torch.equal(model.mean, reference.mean)
    model.load_state_dict(reference.state_dict())


def test_normalisation_inside():
    model = create_model("resnet18", 100, **model_inputs("cifar100")).eval()
    info = DATASETS["cifar100"]
    assert torch.allclose(model.mean.flatten(), torch.tensor(info.mean))
    assert torch.allclose(model.std.flatten(), torch.tensor(info.std))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        manual = model.net((x - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1))
        assert torch.allclose(model(x), manual, atol=1e-5)
    plain = create_model("preact-resnet18", 10)
    assert torch.equal(plain.mean, torch.zeros(1, 3, 1, 1)) and torch.equal(plain.std, torch.ones(1, 3, 1, 1))


def test_state_dict_keys_are_robustbench_keys():
    resnet, wrn, dm = _rb_module("resnet"), _rb_module("wide_resnet"), _rb_module("dm_wide_resnet")
    cases = [
        ("resnet18", {}, resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2], num_classes=10)),
        ("wrn-28-10", SMALL_WRN, wrn.WideResNet(depth=10, num_classes=10, widen_factor=1)),
        ("preact-resnet18", {"activation": "silu"}, dm.DMPreActResNet(num_classes=10, activation_fn=nn.SiLU)),
        ("wrn-28-10", {**SMALL_WRN, "activation": "silu"}, dm.DMWideResNet(num_classes=10, depth=10, width=1)),
    ]
    for arch, kw, reference in cases:
        ours = create_model(arch, 10, **model_inputs("cifar10"), **kw).state_dict()
        assert set(ours) - {"mean", "std"} == {f"net.{k}" for k in reference.state_dict()}, arch
        for k, v in reference.state_dict().items():
            assert ours[f"net.{k}"].shape == v.shape, (arch, k)


def test_wrn_34_10_size_and_forward():
    model = create_model("wrn-34-10", 10, **model_inputs("cifar10")).eval()
    assert abs(_n_params(model) - 46.16e6) < 0.01e6  # WRN-34-10 of TRADES / RobustBench
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_wrn_28_10_size():
    assert abs(_n_params(create_model("wrn-28-10", 10, **model_inputs("cifar10"))) - 36.48e6) < 0.01e6


def test_resnet18_size():
    assert abs(_n_params(create_model("resnet18", 10, **model_inputs("cifar10"))) - 11.17e6) < 0.01e6


def test_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("vgg16", 10)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet18", 1)
    with pytest.raises(ValueError, match="activation"):
        create_model("preact-resnet18", 10, activation="gelu")
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn-34-10", 10, depth=30)
    with pytest.raises(ValueError, match="channels"):
        create_model("small-cnn", 10, **model_inputs("cifar10"), in_channels=1)


def test_one_normalising_wrapper_keeps_checkpoint_keys_and_loads_old_shapes():
    """models.Normalized is the one implementation; estimator.Normalize (an ART classifier's standardisation)
    is it with unsaved buffers, and a model's own normalisation is not mistaken for one."""
    from art_adr.estimator import Normalize

    model = create_model("small-cnn", 10, **model_inputs("fashion-mnist"))
    assert not isinstance(model, Normalize) and issubclass(Normalize, Normalized)
    state = model.state_dict()
    assert {"mean", "std"} <= set(state) and all(k in ("mean", "std") or k.startswith("net.") for k in state)
    # art-adr 0.1.0 saved a one-channel model's statistics as [1, 1, 1, 1]: they still load
    old = {k: (v.reshape(1, 1, 1, 1) if k in ("mean", "std") else v) for k, v in state.items()}
    old["mean"] = torch.full((1, 1, 1, 1), 0.25)
    fresh = create_model("small-cnn", 10, **model_inputs("fashion-mnist"))
    fresh.load_state_dict(old)
    assert float(fresh.mean) == 0.25 and fresh.mean.shape == model.mean.shape
    with pytest.raises(RuntimeError, match="mean"):  # a real mismatch is still an error
        fresh.load_state_dict({**old, "mean": torch.zeros(1, 3, 1, 1)})
    wrapped = Normalize(nn.Identity(), [0.1, 0.2, 0.3], 0.5)
    assert wrapped.model is wrapped.net and set(wrapped.state_dict()) == set()
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(wrapped(x), (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5)
    flat = Normalize(nn.Identity(), 0.5, 0.25)  # one value broadcasts over non-image inputs too
    assert flat(torch.ones(3, 5)).shape == (3, 5)


# ---------------------------------------------------------------- FLOPs


def test_count_flops_exact_small():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    expected = 2 * (4 * 8 * 8) * (3 * 9) + 2 * 5 * 256
    assert count_flops(model, (3, 8, 8)) == expected
    assert count_flops(model, (2, 3, 8, 8)) == 2 * expected


def test_count_flops_resnet18_and_mode_restored():
    model = create_model("resnet18", 10, **model_inputs("cifar10"))
    model.train()
    flops = count_flops(model, (3, 32, 32))
    assert abs(flops - 1.11e9) < 0.1 * 1.11e9
    assert model.training and all(m.training for m in model.modules())
    assert not model.net.layer1[0].conv1._forward_hooks


# ---------------------------------------------------------------- RobustBench export description


def _build_from_spec(spec: dict) -> nn.Module:
    """Run the spec's import line against RobustBench's files (loaded without robustbench/__init__), then eval."""
    ns: dict = {}
    for line in spec["import_line"].splitlines():
        if line == "import torch.nn as nn":
            ns["nn"] = nn
            continue
        module, names = line.removeprefix("from robustbench.model_zoo.architectures.").split(" import ")
        ns.update({name: getattr(_rb_module(module), name) for name in names.split(", ")})
    return eval(spec["constructor"], ns)


@pytest.mark.parametrize(
    ("arch", "dataset", "kwargs"),
    [
        ("resnet18", "cifar10", {}),
        ("preact-resnet18", "cifar100", {"activation": "silu"}),
        ("wrn-28-10", "cifar10", SMALL_WRN),
        ("wrn-28-10", "cifar100", {**SMALL_WRN, "activation": "silu"}),
        ("dm-wrn-34-10", "cifar10", SMALL_WRN),  # the paper recipes' WRN: exported as RobustBench's DMWideResNet
    ],
)
def test_robustbench_spec_reproduces_outputs(arch, dataset, kwargs):
    torch.manual_seed(0)
    num_classes = DATASETS[dataset].num_classes
    ours = create_model(arch, num_classes, **model_inputs(dataset), **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    spec = robustbench_spec(arch, num_classes, dataset, **kwargs)
    assert spec["import_line"].startswith(("from robustbench", "import torch.nn as nn"))
    theirs = _build_from_spec(spec).eval()
    theirs.load_state_dict(robustbench_state_dict(ours.state_dict(), spec), strict=True)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-4)


def test_robustbench_spec_rejects_what_it_cannot_export():
    with pytest.raises(ValueError, match="no RobustBench class"):
        robustbench_spec("small-cnn", 10, "cifar10")
    with pytest.raises(ValueError, match="32"):
        robustbench_spec("resnet18", 200, "tinyimagenet")
    with pytest.raises(ValueError, match="32"):
        robustbench_spec("resnet18", 10, "fashion-mnist")
    spec = robustbench_spec("preact-resnet18", 10, "cifar10")
    wrong = create_model("preact-resnet18", 10, **model_inputs("cifar100")).state_dict()
    with pytest.raises(ValueError, match="differs"):
        robustbench_state_dict(wrong, spec)
    with pytest.raises(KeyError):
        robustbench_state_dict({"weird": torch.zeros(1)}, spec)


def test_robustbench_spec_wrn_34_10_constructor_text():
    spec = robustbench_spec("wrn-34-10", 100, "cifar100")
    assert "WideResNet(depth=34, num_classes=100, widen_factor=10)" in spec["constructor"]
    assert spec["mean"] == DATASETS["cifar100"].mean and spec["input_shape"] == (3, 32, 32)


@pytest.mark.slow
def test_robustbench_import_line_runs_with_real_package(monkeypatch):
    """The import line works against the installed robustbench (``autoattack`` aliased to pyautoattack)."""
    try:
        import pyautoattack
        import pyautoattack.state

        if "autoattack" not in sys.modules:
            monkeypatch.setitem(sys.modules, "autoattack", pyautoattack)
            monkeypatch.setitem(sys.modules, "autoattack.state", pyautoattack.state)
        import robustbench  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"robustbench cannot be imported here: {e}")
    spec = robustbench_spec("resnet18", 10, "cifar10")
    ns: dict = {}
    exec(spec["import_line"], ns)
    theirs = eval(spec["constructor"], ns).eval()
    ours = create_model("resnet18", 10, **model_inputs("cifar10")).eval()
    theirs.load_state_dict(robustbench_state_dict(ours.state_dict(), spec), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-4)


@pytest.mark.parametrize("arch, kwargs, params", [
    ("conv-fc", {}, 16 * 25 + 16 + 32 * 16 * 25 + 32 + 32 * 49 * 256 + 256 + 256 * 10 + 10),
    ("conv-fc", {"width": 8, "hidden": 128}, 8 * 25 + 8 + 16 * 8 * 25 + 16 + 16 * 49 * 128 + 128 + 1280 + 10),
    ("mlp", {}, 784 * 256 + 256 + 256 * 256 + 256 + 2570),
    ("mlp", {"hidden": 64, "depth": 1}, 784 * 64 + 64 + 650),
])
def test_overfitting_regime_models(arch, kwargs, params):
    model = create_model(arch, 10, **model_inputs("fashion-mnist"), **kwargs)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match="no RobustBench class"):
        robustbench_spec(arch, 10, "cifar10")
    with pytest.raises(ValueError):
        create_model(arch, 10, **model_inputs("fashion-mnist"), **({"hidden": 0}))


@pytest.mark.parametrize("kwargs, params", [
    # conv 1→16 (3×3, no bias) + BN, conv 16→32 + BN, 32·7·7 → 256 (no bias) + BN1d, 256 → 10
    ({}, 9 * 16 + 32 + 16 * 32 * 9 + 64 + 32 * 49 * 256 + 512 + 2570),
    ({"widths": [8, 16, 32], "hidden": 64}, 9 * 8 + 16 + 8 * 16 * 9 + 32 + 16 * 32 * 9 + 64 + 32 * 16 * 64 + 128 + 650),
])
def test_batchnorm_regime_model(kwargs, params):
    """conv-bn (the fashion-mnist-ro3 regime): every block and the dense layer carry BatchNorm, strided blocks
    halve the side (28 → 14 → 7 → 4), train mode moves the running statistics, eval mode does not."""
    model = create_model("conv-bn", 10, **model_inputs("fashion-mnist"), **kwargs)
    assert sum(p.numel() for p in model.parameters()) == params
    bns = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert len(bns) == len(kwargs.get("widths", [16, 32])) + 1
    before = [b.running_mean.clone() for b in bns]
    assert model.train()(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert all(not torch.equal(b.running_mean, m) for b, m in zip(bns, before))
    moved = [b.running_mean.clone() for b in bns]
    model.eval()(torch.rand(4, 1, 28, 28))
    assert all(torch.equal(b.running_mean, m) for b, m in zip(bns, moved))
    with pytest.raises(ValueError, match="no RobustBench class"):
        robustbench_spec("conv-bn", 10, "cifar10")
    with pytest.raises(ValueError, match="widths"):
        create_model("conv-bn", 10, **model_inputs("fashion-mnist"), widths=[])
