"""Pins the defaults that follow the ADR authors' code (yuyuwu5/ADR), and the options that keep the others."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from art_adr.attacks import _random_start
from art_adr.checkpoint import load_checkpoint
from art_adr.config import RunConfig, load_recipe, resolve_config
from art_adr.loader import DeviceBatches, MixedBatches
from art_adr.runs import build_scheduler, parameter_groups
from art_adr.trainer import AdversarialTrainerADR, AdversarialTrainerTRADESADR

ROOT = Path(__file__).resolve().parents[1]


class _BatchLog(torch.nn.Module):
    """Records (batch size, training flag) of every forward of the wrapped model."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], self.training))
        return self.net(x)


def _trades(make_classifier, **kw):
    from art.estimators.classification import PyTorchClassifier

    clf = make_classifier()
    model = _BatchLog(clf.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=(1, 8, 8),
                            nb_classes=4, clip_values=(0.0, 1.0))
    return AdversarialTrainerTRADESADR(clf, eps=0.1, eps_step=0.025, max_iter=3, verbose=False, **kw), model


def test_trades_default_is_official_concatenated_forward_train_mode_attack(make_classifier, blobs):
    x, y = blobs
    trainer, model = _trades(make_classifier)
    assert trainer.trades_variant == "official" and trainer.attack_bn_mode == "train"
    xb, yb = torch.as_tensor(x[:16]), torch.as_tensor(y[:16])
    model.calls.clear()
    trainer.train_step(xb, yb)
    # teacher labels (not this model), clean logits + 3 attack steps in train mode, then ONE forward of 2N
    assert model.calls[:4] == [(16, True)] * 4
    assert model.calls[4:] == [(32, True)]


def test_trades_reference_variant_eval_attack_two_forwards(make_classifier, blobs):
    x, y = blobs
    trainer, model = _trades(make_classifier, trades_variant="reference")
    assert trainer.attack_bn_mode == "eval"
    model.calls.clear()
    trainer.train_step(torch.as_tensor(x[:16]), torch.as_tensor(y[:16]))
    assert model.calls[:4] == [(16, False)] * 4
    assert model.calls[4:] == [(16, True), (16, True)]


def test_trades_variant_rejects_unknown(make_classifier):
    with pytest.raises(ValueError, match="trades_variant"):
        AdversarialTrainerTRADESADR(make_classifier(), trades_variant="madry")


def test_trades_start_noise_official_uniform_reference_gaussian():
    x = torch.full((64, 1, 8, 8), 0.5)
    g = torch.Generator().manual_seed(0)
    uniform = _random_start(x, 0.1, "inf", "trades-uniform", g)
    gauss = _random_start(x, 0.1, "inf", "trades", g)
    assert uniform.min() >= 0 and uniform.max() < 0.001 and uniform.std() > 1e-4
    assert gauss.min() < 0 < gauss.max() and abs(float(gauss.std()) - 0.001) < 1e-4


def test_config_trades_variant_reaches_the_trainer():
    from art_adr.runs import build_trainer

    for variant in ("official", "reference"):
        cfg = resolve_config(None, {"dataset": "synthetic", "method": "trades", "trades_variant": variant,
                                    "epochs": 1})
        trainer = build_trainer(cfg, 10, (1, 28, 28), torch.device("cpu"), verbose=False)
        assert trainer.method.trades_variant == variant
        assert trainer.attack_bn_mode == ("train" if variant == "official" else "eval")


@pytest.mark.parametrize("name, tau, lam", [
    ("cifar100-trades-adr-wa-awp", (1.5, 1.0), (0.7, 0.95)),  # resnet18_trades_awp_adr.gin
    ("cifar100-at-adr-wa-awp", (2.0, 1.0), (0.7, 0.85)),  # resnet18_pgd_awp_adr.gin
    ("tinyimagenet-at-adr-wa-awp-wrn34", (2.0, 1.5), (0.5, 0.9)),  # wrn_pgd_awp_adr.gin
    ("tinyimagenet-at-adr-wa-awp", (2.0, 1.5), (0.3, 0.9)),  # resnet18_pgd_awp_adr.gin
    ("cifar10-trades-adr-wa-awp", (2.5, 1.5), (0.7, 0.85)),
])
def test_awp_recipes_follow_official_configs(name, tau, lam):
    r = load_recipe(name)
    assert r["temperature"] == tau and r["interpolation"] == lam


def test_ddpm_recipes_follow_official_config():
    for ds in ("cifar10", "cifar100"):
        r = load_recipe(f"{ds}-ddpm-at-adr-wa-awp")
        assert r["epochs"] == 100 and r["warmup_epochs"] == 2.5 and r["bn_momentum"] == 0.01
        assert r["bn_weight_decay"] is False and r["batch_size"] == 1024 and r["extra_fraction"] == 0.75


def _zeros(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)


# ---------------------------------------------------------------- iterations per epoch: drop_last
def test_training_drops_the_last_partial_batch_by_default_as_the_official_loaders():
    assert RunConfig().drop_last is True and resolve_config("cifar10-at").drop_last is True
    cifar = DeviceBatches(*_zeros(50_000), 128, shuffle=False, drop_last=True)
    sizes = [yb.shape[0] for _, yb in cifar.epoch(0)]
    assert len(cifar) == len(sizes) == 390 and set(sizes) == {128}  # the authors' 390 iterations per epoch
    assert len(DeviceBatches(*_zeros(50_000), 128, drop_last=False)) == 391
    # the DDPM recipes: one pass over the real images of a batch, 256 of 1024, also without the partial batch
    extra = _zeros(10)
    assert len(MixedBatches(DeviceBatches(*_zeros(50_000), 1024, drop_last=True), *extra, 0.75)) == 195
    assert len(MixedBatches(DeviceBatches(*_zeros(50_000), 1024, drop_last=False), *extra, 0.75)) == 196
    with pytest.raises(ValueError, match="drop_last=True leaves no batch: 100 training examples"):
        DeviceBatches(*_zeros(100), 128, drop_last=True)


def test_trainer_and_fit_drop_the_last_partial_batch_unless_told(make_classifier, blobs):
    x, y = blobs[0][:100], blobs[1][:100]
    for kwargs, fit_kwargs, steps in (({}, {}, 3), ({"drop_last": False}, {}, 4), ({}, {"drop_last": False}, 4),
                                      ({"drop_last": False}, {"drop_last": True}, 3)):
        trainer = AdversarialTrainerADR(make_classifier(), eps=0.1, max_iter=1, verbose=False, **kwargs)
        trainer.fit(x, y, batch_size=32, nb_epochs=1, **fit_kwargs)
        assert trainer.step == steps, (kwargs, fit_kwargs)


def test_fashion_mnist_recipes_keep_the_last_batch_so_their_results_stand():
    """59 000, 8 000 and 1 000 training images are no multiple of 128 / 64: dropping would change the iteration
    counts behind the README's Fashion-MNIST results."""
    from art_adr.config import list_recipes

    for name in list_recipes():
        assert resolve_config(name).drop_last is (not name.startswith("fashion-mnist")), name


def test_runs_saved_before_drop_last_existed_read_back_as_keeping_the_last_batch(tmp_path):
    from art_adr.runs import config_diff, load_run_config

    cfg = resolve_config(None, {"dataset": "synthetic"}).to_dict()
    old = {k: v for k, v in cfg.items() if k != "drop_last"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_run_config(tmp_path).drop_last is False
    assert config_diff(old, {**cfg, "drop_last": False}) == [] and config_diff(old, cfg) == ["drop_last"]


def test_art_adr_train_drops_the_last_partial_batch(tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main

    args = ["train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 264, shape: [1, 8, 8], num_classes: 4}",
            "--set", "arch_kwargs={in_channels: 1}", "--val-size", "64", "--max-iter", "1", "--batch-size", "64",
            "--eps", "0.1", "--set", "eval_max_iter=1", "--epochs", "1", "-q"]
    for drop, steps in (("true", 3), ("false", 4)):  # 200 training images in batches of 64
        out = tmp_path / drop
        result = CliRunner().invoke(main, [*args, "--set", f"drop_last={drop}", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert load_checkpoint(out / "checkpoints" / "final.pt")["step"] == steps


def test_extra_data_epoch_is_one_pass_over_real_images_so_warmup_matches_official():
    n = 50_000
    main = DeviceBatches(*_zeros(n), 1024, shuffle=False, drop_last=True)
    mixed = MixedBatches(main, *_zeros(10), 0.75)
    assert len(mixed) == n // 256 == 195  # the authors' loader of 256 real images per batch, without the last
    cfg = resolve_config("cifar10-ddpm-at-adr-wa-awp", {"dataset": "synthetic"})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, len(mixed))
    warm = []
    for _ in range(600):  # the rate each iteration trains with
        warm.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    first_full = next(i for i, lr in enumerate(warm) if lr >= cfg.lr * (1 - 1e-9))  # LinearLR accumulates
    assert first_full == round(2.5 * 195) - 1  # ≈ 487 official iterations, not 2.5 × 49


def test_bn_momentum_one_at_first_step_then_configured(make_classifier, blobs):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), eps=0.1, eps_step=0.05, max_iter=1, bn_momentum=0.01,
                                    verbose=False)
    bn = trainer._raw.bn
    xb, yb = torch.as_tensor(x[:32]), torch.as_tensor(y[:32])
    trainer.train_step(xb, yb)
    assert bn.momentum == 1.0
    trainer.train_step(xb, yb)
    assert bn.momentum == 0.01
    default = AdversarialTrainerADR(make_classifier(), verbose=False)
    default.train_step(xb, yb)
    assert default._raw.bn.momentum == 0.1  # None leaves the layer's own
    with pytest.raises(ValueError, match="bn_momentum"):
        AdversarialTrainerADR(make_classifier(), bn_momentum=0.0)


def test_parameter_groups_exclude_batchnorm_from_weight_decay(make_classifier):
    model = make_classifier().model
    groups = parameter_groups(model, bn_weight_decay=False)
    bn_ids = {id(model.bn.weight), id(model.bn.bias)}
    assert {id(p) for p in groups[1]["params"]} == bn_ids and groups[1]["weight_decay"] == 0.0
    assert not bn_ids & {id(p) for p in groups[0]["params"]}
    assert len(parameter_groups(model)) == 1


def test_committed_recipes_equal_generator_output(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_recipes", ROOT / "scripts" / "make_recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path)
    mod.main()
    shipped = ROOT / "art_adr" / "recipes"
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_text() for p in shipped.glob("*.yaml")}
    assert generated == committed, "run `python scripts/make_recipes.py` after editing it"
