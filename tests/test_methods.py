"""The method registry, MART(+ADR), config → trainer mapping by name, single-sourced defaults, ART fit semantics."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from art_adr import defaults
from art_adr.cli import main
from art_adr.config import FIELDS, RunConfig, resolve_config
from art_adr.functional import mart_loss, one_hot
from art_adr.methods import METHODS, get_method, method_fields
from art_adr.runs import RUN_FIELDS, TRAINER_ONLY_ARGS, trainer_arguments
from art_adr.trainer import AdversarialTrainerADR, AdversarialTrainerMARTADR, AdversarialTrainerTRADESADR

EPS = dict(eps=0.1, eps_step=0.025, max_iter=5)


# ---------------------------------------------------------------------------------------------- the registry
def test_registry_names_modules_and_fields():
    assert {"at", "trades", "mart"} <= set(METHODS) and tuple(METHODS) == METHODS.names()
    for name, cls in METHODS.items():
        assert cls.name == name and cls.label and cls.citation
        assert set(method_fields(cls)) <= set(FIELDS), f"{name}'s hyper-parameters must be RunConfig fields"
    with pytest.raises(ValueError, match=f"unknown training method 'no-such-method'; registered: {', '.join(METHODS)}"):
        get_method("no-such-method")


def test_method_names_import_without_torch():
    code = ("import sys; from art_adr.methods import METHODS; METHODS.names(); 'at' in METHODS; "
            "assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_config_field_reaches_the_run_layer_the_trainer_or_a_method():
    """build_trainer maps the config onto the trainer by name: adding a field to one side only fails here."""
    trainer_params = set(inspect.signature(AdversarialTrainerADR.__init__).parameters) - {"self"}
    method_params = {f for cls in METHODS.values() for f in method_fields(cls)}
    fields = set(FIELDS)
    assert fields == RUN_FIELDS | (trainer_params - TRAINER_ONLY_ARGS) | method_params, (
        fields ^ (RUN_FIELDS | (trainer_params - TRAINER_ONLY_ARGS) | method_params))
    # method: the config's name, turned into the method object; batch_size: the run layer passes it to fit(), the
    # trainer's (ART's AdversarialTrainerMadryPGD keyword) is fit()'s default: the same concept
    assert RUN_FIELDS & trainer_params == {"method", "batch_size"}
    assert not method_params & trainer_params
    assert TRAINER_ONLY_ARGS <= trainer_params
    cfg = resolve_config("fashion-mnist-ro-mart-adr").validate()
    method, kwargs = trainer_arguments(cfg)
    assert method == METHODS["mart"](beta=cfg.beta)
    for key, value in kwargs.items():
        assert value == (tuple(getattr(cfg, key)) if key in ("temperature", "interpolation") else getattr(cfg, key))


def test_defaults_are_defined_once():
    sig = inspect.signature(AdversarialTrainerADR.__init__).parameters
    cfg = RunConfig()
    for name, value in (("temperature", defaults.TEMPERATURE), ("interpolation", defaults.INTERPOLATION),
                        ("ema_decay", defaults.EMA_DECAY), ("ema_warmup", defaults.EMA_WARMUP),
                        ("eval_max_iter", defaults.EVAL_MAX_ITER)):
        assert sig[name].default == value and getattr(cfg, name) == value, name
    assert cfg.beta == defaults.BETA
    for cls in (AdversarialTrainerTRADESADR, AdversarialTrainerMARTADR):
        assert inspect.signature(cls.__init__).parameters["beta"].default == defaults.BETA
    assert cfg.eps_step is None and RunConfig(eps=0.1).validate().eps_step == pytest.approx(0.025)


# ---------------------------------------------------------------------------------------------- MART
def _reference_mart(logits_adv, logits, y, beta):
    """MART's reference ``mart_loss`` (Wang et al. 2020, github.com/YisenWang/MART), written out."""
    adv_probs = F.softmax(logits_adv, dim=1)
    tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(tmp1[:, -1] == y, tmp1[:, -2], tmp1[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = torch.gather(nat_probs, 1, y.unsqueeze(1).long()).squeeze()
    kl = torch.nn.KLDivLoss(reduction="none")
    loss_robust = (1.0 / len(y)) * torch.sum(
        torch.sum(kl(torch.log(adv_probs + 1e-12), nat_probs), dim=1) * (1.0000001 - true_probs))
    return loss_adv + beta * loss_robust


@pytest.mark.parametrize("seed", range(5))
def test_mart_loss_with_one_hot_targets_is_the_reference(seed):
    g = torch.Generator().manual_seed(seed)
    logits_adv, logits = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    for beta in (0.0, 1.0, 6.0):
        ours = mart_loss(logits_adv, logits, one_hot(y, 10), y, beta)
        assert ours == pytest.approx(float(_reference_mart(logits_adv, logits, y, beta)), rel=1e-5, abs=1e-6)


def test_mart_loss_properties():
    g = torch.Generator().manual_seed(0)
    logits_adv, y = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    # the KL term vanishes when clean and adversarial outputs agree; a confident correct clean output weighs ~0
    same = mart_loss(logits_adv, logits_adv, one_hot(y, 5), y, 6.0) - mart_loss(logits_adv, logits_adv,
                                                                                  one_hot(y, 5), y, 0.0)
    assert abs(float(same)) < 1e-5
    confident = torch.full((8, 5), -20.0).scatter(1, y.view(-1, 1), 20.0)
    per = mart_loss(logits_adv, confident, one_hot(y, 5), y, 6.0, reduction="none") \
        - mart_loss(logits_adv, confident, one_hot(y, 5), y, 0.0, reduction="none")
    assert (per.abs() < 1e-4).all()
    # a soft (rectified) target changes only the cross-entropy term
    soft = 0.8 * one_hot(y, 5) + 0.2 / 5
    delta = mart_loss(logits_adv, confident, soft, y, 6.0, "none") - mart_loss(logits_adv, confident, one_hot(y, 5),
                                                                               y, 6.0, "none")
    ce = -(soft * F.log_softmax(logits_adv, 1)).sum(1) + F.log_softmax(logits_adv, 1).gather(1, y.view(-1, 1))[:, 0]
    assert torch.allclose(delta, ce, atol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        mart_loss(logits_adv, confident, soft, y, 6.0, "sum")


def test_mart_adr_trains_and_mart_attack_follows_the_reference(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerMARTADR(make_classifier(), beta=6.0, temperature=(2.0, 1.5),
                                        interpolation=(0.5, 0.9), verbose=False, **EPS)
    assert trainer.attack_bn_mode == "eval" and trainer.beta == 6.0 and trainer.method.name == "mart"
    start = trainer.evaluate(x[:128], y[:128])["pgd_acc"]
    history = trainer.fit(x, y, validation_data=(x[:128], y[:128]), batch_size=32, nb_epochs=4)
    assert history[-1]["pgd_acc"] > max(start, 0.5)
    assert all(np.isfinite(r["loss"]) for r in history)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        AdversarialTrainerMARTADR(make_classifier(), beta=-1.0)


def test_mart_without_adr_targets_one_hot(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerMARTADR(make_classifier(), adr=False, verbose=False, **EPS)
    xb, yb = torch.as_tensor(x[:8]), torch.as_tensor(y[:8])
    assert torch.equal(trainer.iteration.targets(xb, yb), one_hot(yb, 4))


# ---------------------------------------------------------------------------------------------- standard training
def test_standard_training_is_one_clean_cross_entropy_step(blobs, make_classifier):
    """The non-robust reference: no attack, one SGD step on CE(f(x), y) of the clean batch (BN in train mode)."""
    import copy

    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), method=get_method("standard")(), adr=False, verbose=False, **EPS)
    xb, yb = torch.as_tensor(x[:32]), torch.as_tensor(y[:32])
    assert trainer.iteration.attack(xb, one_hot(yb, 4), yb) is xb
    reference = copy.deepcopy(trainer._raw).train()
    F.cross_entropy(reference(xb), yb).backward()
    lr = trainer.optimizer.param_groups[0]["lr"]
    trainer.iteration.run(xb, yb, epoch=0)
    for (name, p), q in zip(trainer._raw.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach() - lr * q.grad, msg=name)
    for name, buffer in trainer._raw.named_buffers():  # BN statistics of the clean batch, as the reference's
        torch.testing.assert_close(buffer, dict(reference.named_buffers())[name], msg=name)


def test_standard_model_is_accurate_and_not_robust(blobs, make_classifier):
    x, y = blobs
    eps = dict(eps=0.2, eps_step=0.05, max_iter=5)
    standard = AdversarialTrainerADR(make_classifier(), method=get_method("standard")(), adr=False, verbose=False,
                                     **eps)
    robust = AdversarialTrainerADR(make_classifier(), adr=False, verbose=False, **eps)
    for trainer in (standard, robust):
        trainer.fit(x, y, batch_size=32, nb_epochs=4)
    plain, adv = standard.evaluate(x[:128], y[:128]), robust.evaluate(x[:128], y[:128])
    assert plain["clean_acc"] > 0.9 and plain["pgd_acc"] < adv["pgd_acc"] - 0.2, (plain, adv)


# ---------------------------------------------------------------------------------------------- ART conventions
def test_fit_trains_nb_epochs_more_per_call_and_anneals_over_each_call(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), temperature=(2.0, 1.0), verbose=False, **EPS)
    trainer.fit(x[:128], y[:128], batch_size=64, nb_epochs=2)
    assert trainer.epoch == 2 and trainer.step == 4
    assert trainer.history[-1]["tau"] == pytest.approx(1.0)
    trainer.fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
    assert trainer.epoch == 3 and trainer.step == 6 and [r["epoch"] for r in trainer.history] == [1, 2, 3]
    assert trainer.history[-1]["tau_start"] == pytest.approx(2.0) and trainer.history[-1]["tau"] == pytest.approx(1.0)


def test_fit_accepts_art_keywords(blobs, make_classifier, capsys):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), verbose=True, **EPS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(x[:64], y[:64], batch_size=64, nb_epochs=1, verbose=False)
    assert "epoch 1/1" not in capsys.readouterr().err and trainer.verbose is True
    with pytest.warns(UserWarning, match=r"ignores the keyword\(s\) \['training_mode'\]"):
        trainer.fit(x[:64], y[:64], batch_size=64, nb_epochs=1, verbose=False, training_mode=True)
    with pytest.warns(UserWarning, match=r"fit_generator\(\) ignores the keyword\(s\) \['drop_last'\]"):
        trainer.fit_generator([(x[:64], y[:64])], nb_epochs=1, verbose=False, drop_last=True)


def test_training_attack_from_an_attack_object(make_classifier):
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    from art_adr.attacks import SoftLabelPGD

    clf = make_classifier()
    attack = SoftLabelPGD(clf, eps=0.2, eps_step=0.05, max_iter=3)
    trainer = AdversarialTrainerADR(clf, attack=attack, verbose=False)
    assert (trainer.eps, trainer.eps_step, trainer.max_iter) == (0.2, 0.05, 3)
    art_pgd = AdversarialTrainerADR(clf, attack=ProjectedGradientDescent(clf, eps=0.1, eps_step=0.01, max_iter=2))
    assert (art_pgd.eps, art_pgd.eps_step, art_pgd.max_iter) == (0.1, 0.01, 2)  # converted (issue 27)
    with pytest.raises(ValueError, match="rectified label"):
        AdversarialTrainerADR(clf, attack=FastGradientMethod(clf, eps=0.1))


def test_state_carries_the_plan_and_the_best_metric(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), best_metric="teacher_pgd_acc", verbose=False, **EPS)
    trainer.fit(x[:128], y[:128], validation_data=(x[:64], y[:64]), batch_size=64, nb_epochs=3)
    scored = max(trainer.history, key=lambda r: r["teacher_pgd_acc"])
    assert trainer.best_epoch == scored["epoch"] == trainer.history[-1]["best_epoch"]
    state = trainer.state_dict()
    assert state["plan"] == [0, 6] and state["best_metric"] == "teacher_pgd_acc"
    with pytest.raises(ValueError, match="best_metric"):
        AdversarialTrainerADR(make_classifier(), best_metric="loss")


# ---------------------------------------------------------------------------------------------- through the CLI
TINY = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 256, shape: [1, 12, 12], num_classes: 4}",
        "--set", "arch_kwargs={in_channels: 1}", "--val-size", "64", "--max-iter", "2", "--batch-size", "64",
        "--eps", "0.1", "--set", "eval_max_iter=2", "--epochs", "3", "-q"]


def test_mart_adr_run_and_one_notion_of_best(tmp_path):
    """MART+ADR through ``art-adr train``; with teacher selection, metrics.jsonl's best epoch is best.pt's."""
    import json

    from art_adr.checkpoint import load_checkpoint

    out = tmp_path / "mart"
    res = CliRunner().invoke(main, ["train", *TINY, "--method", "mart", "--adr", "--out", str(out),
                                    "--set", "best_metric=teacher_pgd_acc"])
    assert res.exit_code == 0, res.output
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["config"]["method"] == "mart" and best["epoch"] == history[-1]["best_epoch"]
    assert best["epoch"] == max(history, key=lambda r: r["teacher_pgd_acc"])["epoch"]
    assert history[-1]["tau"] == pytest.approx(best["config"]["temperature"][1])  # the plot reaches the end value


def test_method_dataclasses_are_frozen_in_their_fields():
    for cls in METHODS.values():
        assert dataclasses.is_dataclass(cls)
        cls().validate()


def test_design_md_example_method_is_one_file_and_one_line(monkeypatch, blobs, make_classifier):
    """The FGSM example of docs/DESIGN.md, as a module of art_adr.methods plus its registration line, trains."""
    import re
    import types
    from pathlib import Path

    import art_adr.methods as registry

    design = (Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md").read_text()
    code = re.search(r"```python\n(.*?)```", design.split("## Adding a training method")[1], flags=re.S).group(1)
    module = types.ModuleType("art_adr.methods.fgsm")
    module.__package__ = "art_adr.methods"
    monkeypatch.setitem(sys.modules, "art_adr.methods.fgsm", module)  # dataclasses look their module up
    exec(compile(code, "DESIGN.md", "exec"), module.__dict__)
    line = re.search(r"`(METHODS\.register_lazy\(.*?\))`", design.split("## Adding a training method")[1]).group(1)
    exec(line, {"METHODS": registry.METHODS})
    try:
        fgsm = get_method("fgsm")
        assert fgsm.label == "FGSM-RS" and registry.METHODS.names()[-1] == "fgsm"
        x, y = blobs
        trainer = AdversarialTrainerADR(make_classifier(), method=fgsm(), verbose=False, **EPS)
        trainer.fit(x[:128], y[:128], batch_size=64, nb_epochs=1)
        assert trainer.step == 2 and np.isfinite(trainer.history[-1]["loss"])
    finally:
        registry.METHODS.unregister("fgsm")


def test_every_subpackage_is_packaged():
    """A wheel (non-editable install) carries every package of the tree, art_adr.methods included."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = Path(__file__).resolve().parents[1]
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = {".".join(p.parent.relative_to(root).parts) for p in (root / "art_adr").rglob("__init__.py")}
    assert tree <= set(setup["packages"]), tree - set(setup["packages"])


def test_positional_arguments_keep_their_former_order(make_classifier):
    """``method``/``attack`` come last: ``AdversarialTrainerADR(clf, eps, eps_step, max_iter)`` still works."""
    trainer = AdversarialTrainerADR(make_classifier(), 0.2, 0.05, 3, verbose=False)
    assert (trainer.eps, trainer.eps_step, trainer.max_iter) == (0.2, 0.05, 3) and trainer.method.name == "at"
