"""Pins the defaults that follow the ADR authors' code (yuyuwu5/ADR), and the options that keep the others."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from art_adr.attacks.core import _random_start
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


def test_trades_reference_variant_eval_attack_three_forwards(make_classifier, blobs):
    x, y = blobs
    trainer, model = _trades(make_classifier, trades_variant="reference")
    assert trainer.attack_bn_mode == "eval"
    model.calls.clear()
    trainer.train_step(torch.as_tensor(x[:16]), torch.as_tensor(y[:16]))
    assert model.calls[:4] == [(16, False)] * 4
    assert model.calls[4:] == [(16, True)] * 3  # f(x), f(x'), f(x) of trades.py


def _bn_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b.detach().clone() for name, b in model.named_buffers() if "running" in name]


def _loss_case(seed: int = 0):
    import copy

    from conftest import TinyNet

    torch.manual_seed(seed)
    ours = TinyNet().train()
    with torch.no_grad():
        ours.bn.running_mean.uniform_(-1, 1)  # off the initial values, so every update order shows
    ref = copy.deepcopy(ours)
    x = torch.rand(16, 1, 8, 8)
    x_adv = (x + 0.1 * torch.randn_like(x).sign()).clamp(0, 1)
    y = torch.randint(0, 4, (16,))
    return ours, ref, x, x_adv, y


def test_mart_forwards_clean_then_adversarial_as_the_reference():
    """MART's ``mart_loss`` (YisenWang/MART), after its attack: ``model.train()``, ``logits = model(x_natural)``,
    then ``logits_adv = model(x_adv)``: the BatchNorm running statistics see the clean batch first."""
    from art_adr.functional import mart_loss, one_hot
    from art_adr.methods.mart import MART

    ours, ref, x, x_adv, y = _loss_case()
    loss, logits_adv = MART(beta=6.0).loss(ours, x, x_adv, one_hot(y, 4), y, None)
    ref_logits = ref(x)  # transcription: the reference's two forwards, in its order
    ref_logits_adv = ref(x_adv)
    assert all(torch.equal(a, b) for a, b in zip(_bn_buffers(ours), _bn_buffers(ref)))
    assert torch.equal(logits_adv, ref_logits_adv)
    want = mart_loss(ref_logits_adv, ref_logits, one_hot(y, 4), y, 6.0)
    assert float(loss.detach()) == pytest.approx(float(want.detach()))


def test_trades_reference_variant_makes_the_reference_three_forwards():
    """TRADES' ``trades_loss`` (yaodongyu/TRADES), after its attack: ``logits = model(x_natural)`` for the CE
    term, then ``KL(log_softmax(model(x_adv)), softmax(model(x_natural)))`` / batch: three train-mode forwards
    (clean, adversarial, clean), whose BatchNorm running statistics and gradients ours must equal."""
    import torch.nn.functional as F

    from art_adr.functional import one_hot
    from art_adr.methods.trades import TRADES

    ours, ref, x, x_adv, y = _loss_case(1)
    loss, _ = TRADES(beta=6.0, trades_variant="reference").loss(ours, x, x_adv, one_hot(y, 4), y, None)
    logits = ref(x)  # transcription of trades_loss's loss part
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = F.kl_div(F.log_softmax(ref(x_adv), dim=1), F.softmax(ref(x), dim=1), reduction="sum") / len(x)
    ref_loss = loss_natural + 6.0 * loss_robust
    assert all(torch.equal(a, b) for a, b in zip(_bn_buffers(ours), _bn_buffers(ref)))
    assert float(loss.detach()) == pytest.approx(float(ref_loss.detach()), rel=1e-6)
    loss.backward()
    ref_loss.backward()
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


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
    old = {k: v for k, v in cfg.items() if k not in ("drop_last", "sync_bn")}  # fields newer than the run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_run_config(tmp_path).drop_last is False
    assert config_diff(old, {**cfg, "drop_last": False}) == [] and config_diff(old, cfg) == ["drop_last"]


def test_art_adr_train_drops_the_last_partial_batch(tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main

    args = ["train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 264, shape: [1, 8, 8], num_classes: 4}",
            "--set", "arch_kwargs={in_channels: 1}", "--val-size", "64", "--max-iter", "1", "--batch-size", "64",
            "--eps", "0.1", "--set", "eval_max_iter=1", "--epochs", "1", "-q"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])  # the default: drop_last true
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")["step"] == 3  # 200 images, batch 64
    result = CliRunner().invoke(main, [*args, "--batch-size", "256", "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "Error: drop_last leaves no batch: 200 training images" in result.output
    assert "--set drop_last=false" in result.output and not (tmp_path / "none").exists()


def test_extra_data_epoch_is_one_pass_over_real_images_so_warmup_matches_official():
    n = 50_000
    main = DeviceBatches(*_zeros(n), 1024, shuffle=False, drop_last=True)
    mixed = MixedBatches(main, *_zeros(10), 0.75)
    assert len(mixed) == n // 256 == 195  # the authors' loader of 256 real images per batch, without the last
    cfg = resolve_config("cifar10-ddpm-at-adr-wa-awp", {"dataset": "synthetic"})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, len(mixed))
    # the authors' build_cosine_scheduler: t_initial = 100 × 195, warmup_t = int(2.5 × 195), not 2.5 × 49
    assert (sched.total_iters, sched.warmup_iters, sched.warmup_lr_init) == (19_500, 487, 1e-6)


def test_bn_momentum_one_at_first_step_then_configured(make_classifier, blobs):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), eps=0.1, eps_step=0.05, max_iter=1, bn_momentum=0.01,
                                    verbose=False)
    bn = trainer.student_module.bn
    xb, yb = torch.as_tensor(x[:32]), torch.as_tensor(y[:32])
    trainer.train_step(xb, yb)
    assert bn.momentum == 1.0
    trainer.train_step(xb, yb)
    assert bn.momentum == 0.01
    default = AdversarialTrainerADR(make_classifier(), verbose=False)
    default.train_step(xb, yb)
    assert default.student_module.bn.momentum == 0.1  # None leaves the layer's own
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


# ---------------------------------------------------------------- WRN-34-10: the authors' network
class _OfficialWRNBlock(torch.nn.Module):
    """Transcription of ``_Block`` of yuyuwu5/ADR ``src/model/wideresnet.py``: pre-activation; the 3×3 conv of a
    block pads "SAME" by hand, (1, 1, 1, 1) at stride 1 and (0, 1, 0, 1) at stride 2; a 1×1 shortcut conv (on
    the activated input) where the width changes; PyTorch's default initialisation."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        self.batchnorm_0 = nn.BatchNorm2d(cin)
        self.conv_0 = nn.Conv2d(cin, cout, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(cout)
        self.conv_1 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if cin != cout else None
        self.pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.batchnorm_0(x))
        h = self.conv_1(torch.relu(self.batchnorm_1(self.conv_0(torch.nn.functional.pad(a, self.pad)))))
        return (self.shortcut(a) if self.shortcut is not None else x) + h


class _OfficialWRN(torch.nn.Module):
    """Transcription of the authors' ``WideResNet(mean, std, num_classes, depth, width)``: normalisation inside,
    stem conv, three groups of (depth − 4) / 6 blocks at strides 1, 2, 2, BN-ReLU, ``AvgPool2d(8)`` (CIFAR) or
    ``AdaptiveAvgPool2d(1)`` (Tiny-ImageNet, ``adaptive_pooling``), a linear head."""

    def __init__(self, mean, std, num_classes: int, depth: int, width: int, adaptive: bool = False) -> None:
        super().__init__()
        nn = torch.nn
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        channels = [16, 16 * width, 32 * width, 64 * width]
        n = (depth - 4) // 6
        self.init_conv = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [_OfficialWRNBlock(channels[g] if i == 0 else channels[g + 1], channels[g + 1],
                                        stride if i == 0 else 1) for i in range(n)]
            group = nn.Module()
            group.block = nn.Sequential(*blocks)
            groups.append(group)
        self.layer = nn.Sequential(*groups)
        self.batchnorm = nn.BatchNorm2d(channels[3])
        self.logits = nn.Linear(channels[3], num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1) if adaptive else nn.AvgPool2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.init_conv((x - self.mean) / self.std)
        for group in self.layer:
            h = group.block(h)
        h = self.pool(torch.relu(self.batchnorm(h)))
        return self.logits(h.flatten(1))


def _official_wrn(dataset: str, depth: int, width: int) -> torch.nn.Module:
    from art_adr.data import DATASETS

    info = DATASETS[dataset]
    return _OfficialWRN(info.mean, info.std, info.num_classes, depth, width, adaptive=dataset == "tinyimagenet")


@pytest.mark.parametrize("dataset, size", [("cifar10", 32), ("tinyimagenet", 64)])
def test_dm_wrn_gives_the_official_networks_logits_for_identical_weights(dataset, size):
    from art_adr.data import DATASETS, model_inputs
    from art_adr.models import create_model

    torch.manual_seed(0)
    official = _official_wrn(dataset, 10, 2)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for m in official.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    ours = create_model("dm-wrn-34-10", DATASETS[dataset].num_classes, **model_inputs(dataset), depth=10,
                        widen_factor=2)
    missing = ours.load_state_dict({f"net.{k}": v for k, v in official.state_dict().items()}, strict=False)
    assert set(missing.missing_keys) == {"mean", "std"} and not missing.unexpected_keys  # ours hold the stats
    x = torch.rand(4, 3, size, size)
    for train in (False, True):
        official.train(train), ours.train(train)
        with torch.no_grad():
            assert torch.allclose(ours(x), official(x), atol=1e-5, rtol=1e-5), train


def test_dm_wrn_is_the_official_network_with_its_default_initialisation():
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    for depth, width in ((10, 2), (34, 10)):  # WRN-34-10's shapes on the meta device (no memory, no time)
        with torch.device("meta"):
            ours = create_model("dm-wrn-34-10", 100, **model_inputs("cifar100"), depth=depth,
                                widen_factor=width).net.state_dict()
            official = _official_wrn("cifar100", depth, width).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in official.items()}
    torch.manual_seed(3)
    ours = create_model("dm-wrn-34-10", 10, **model_inputs("cifar10"), depth=10, widen_factor=2).net.state_dict()
    torch.manual_seed(3)
    official = _official_wrn("cifar10", 10, 2).state_dict()
    assert all(torch.equal(ours[k], v) for k, v in official.items())  # same draws: PyTorch's default init
    # today's WRN (RobustBench's TRADES class) stays a named architecture, and is another network
    torch.manual_seed(3)
    trades = create_model("wrn-34-10", 10, **model_inputs("cifar10"), depth=10, widen_factor=2).net.state_dict()
    assert set(trades) != set(official)


def test_wrn34_recipes_train_the_official_network_and_export_as_robustbench_dm_wide_resnet():
    from art_adr.config import list_recipes
    from art_adr.robustbench import robustbench_spec

    wrn = [name for name in list_recipes() if name.endswith("-wrn34")]
    assert len(wrn) == 36 and {resolve_config(name).arch for name in wrn} == {"dm-wrn-34-10"}
    spec = robustbench_spec("dm-wrn-34-10", 100, "cifar100")
    assert spec["import_line"].endswith("dm_wide_resnet import DMWideResNet")
    assert spec["constructor"].startswith("DMWideResNet(num_classes=100, depth=34, width=10, activation_fn=nn.ReLU")


def test_trades_wrn34_recipes_say_where_their_values_come_from():
    from art_adr.config import list_recipes

    trades = {name: desc for name, desc in list_recipes().items() if "-trades" in name and name.endswith("-wrn34")}
    assert len(trades) == 18
    for name, desc in trades.items():
        variant = ("awp" if "-awp" in name else "sgd") + ("_adr" if "-adr" in name else "")
        folder = "tiny-imagenet" if name.startswith("tinyimagenet") else name.split("-")[0]
        assert "no official config" in desc, name
        assert f"config/{folder}/resnet18_trades_{variant}.gin" in desc, name
        assert f"config/{folder}/wrn_pgd_{variant}.gin" in desc, name


# ---------------------------------------------------------------- normalisation: the authors' create_model.py
OFFICIAL_STATS = {  # (mean, std) of yuyuwu5/ADR src/model/create_model.py
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
}


@pytest.mark.parametrize("dataset", sorted(OFFICIAL_STATS))
def test_models_normalise_with_the_official_statistics(dataset):
    from art_adr.data import DATASETS, model_inputs
    from art_adr.models import create_model

    mean, std = OFFICIAL_STATS[dataset]
    assert (DATASETS[dataset].mean, DATASETS[dataset].std) == (mean, std)
    model = create_model("resnet18", DATASETS[dataset].num_classes, **model_inputs(dataset))
    assert torch.equal(model.std.flatten(), torch.tensor(std)) and torch.equal(model.mean.flatten(), torch.tensor(mean))


def test_val_split_test_validates_on_the_whole_test_set_as_the_authors():
    from click.testing import CliRunner

    from art_adr.cli import main
    from art_adr.runs import load_data

    kw = {"dataset": "synthetic", "dataset_kwargs": {"n": 300, "shape": [1, 4, 4], "num_classes": 4}}
    for val_size in (1000, 10, 0):  # val_size sizes the hold-out only
        train, val, test, _ = load_data(resolve_config(None, {**kw, "val_split": "test", "val_size": val_size}))
        assert len(val) == len(test) > 10 and len(train) == 300
    train, val, _, _ = load_data(resolve_config(None, {**kw, "val_size": 50}))
    assert (len(train), len(val)) == (250, 50)
    helptext = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert "or the whole test set" in helptext and "(--val-split holdout; test is the whole test set)" in helptext
