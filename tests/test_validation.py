"""Validation attacks (the registered attacks that validate): the built-in three, what selects (art_adr.validation),
old runs, and the agreement maths."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from art_adr import AdversarialTrainerADR
from art_adr.attacks import ATTACKS, AttackSpec, get_attack, validating_attack_names
from art_adr.validation import best_metric_choices, metric_name, resolve_best_metric

EPS = dict(eps=0.1, eps_step=0.05, max_iter=2, eval_max_iter=3)


class Soft(torch.nn.Module):
    """A trained tiny net whose logits are divided by ``temperature``: the soft outputs that blunt CE attacks."""

    def __init__(self, net: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature


@pytest.fixture(scope="module")
def soft_model():
    from conftest import TinyNet

    rng = np.random.default_rng(0)
    protos = rng.uniform(0, 1, (4, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    x = np.clip(protos[y] + rng.normal(0, 0.15, (256, 1, 8, 8)), 0, 1).astype(np.float32)
    torch.manual_seed(0)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return Soft(net.eval(), 30.0), xt[:128], yt[:128]


def _acc(name: str, model, x, y, **kw) -> float:
    spec = AttackSpec(eps=0.15, steps=5)
    flags = get_attack(name, validates=True, **kw).flags(model, x, y, spec, clip_values=(0.0, 1.0),
                                                         generator=torch.Generator().manual_seed(0))
    assert flags.dtype == torch.bool and flags.shape == y.shape
    return float(flags.float().mean())


def test_margin_and_apgd_see_through_soft_outputs(soft_model):
    model, x, y = soft_model
    clean = float((model(x).argmax(1) == y).float().mean())
    pgd, margin, apgd = (_acc(n, model, x, y) for n in ("pgd", "margin", "apgd"))
    assert clean > 0.9
    assert margin <= pgd and apgd <= pgd and apgd < clean


def test_apgd_leaves_the_global_rng_alone_and_is_seeded_by_its_generator(soft_model):
    model, x, y = soft_model
    state = torch.get_rng_state()
    a = _acc("apgd", model, x, y)
    assert torch.equal(state, torch.get_rng_state())
    assert a == _acc("apgd", model, x, y)


def test_apgd_costs_what_it_says():
    spec = AttackSpec(eps=0.1, steps=10)
    assert get_attack("pgd").forwards(spec) == 11 == get_attack("margin").forwards(spec)
    assert get_attack("margin", cw_steps=20).forwards(spec) == 11  # validation runs the spec's k
    assert get_attack("apgd", targets=3).forwards(spec) == 5 + 11 * 4  # 5 scoring forwards (no backward)
    assert get_attack("apgd", targets=3).forward_equivalents(spec) == 5 + 3 * 11 * 4
    assert get_attack("pgd").forward_equivalents(spec) == 31  # 10 × 3F + the scoring forward
    assert "APGD-T-10×3" in get_attack("apgd", targets=3).describe(spec)


def test_bad_names_and_targets_are_errors():
    validating = ", ".join(validating_attack_names())
    for name in ("no-such-attack", "aa", "clean"):  # unknown, or registered but not one that validates
        with pytest.raises(ValueError, match=f"val_attack must be one of {validating}, got '{name}'"):
            get_attack(name, validates=True)
    with pytest.raises(ValueError, match="val_targets"):
        get_attack("apgd", targets=0)
    with pytest.raises(ValueError, match="clip_values"):
        get_attack("apgd").flags(torch.nn.Identity(), torch.zeros(1, 4), torch.zeros(1, dtype=torch.long),
                                 AttackSpec(eps=0.1), clip_values=(0.0, 255.0), generator=torch.Generator())


def test_registry_imports_without_torch_and_train_offers_its_validating_attacks():
    import subprocess

    from art_adr.cli.train import train_command

    code = ("import sys; from art_adr.attacks import validating_attack_names; validating_attack_names(); "
            "import art_adr.validation, art_adr.cli.train; assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
    option = next(p for p in train_command.params if p.name == "val_attack")
    for name in validating_attack_names():
        assert f"{name} = {ATTACKS[name].label}" in " ".join(option.help.split())
    assert all(ATTACKS[n].validates for n in validating_attack_names())
    assert set(validating_attack_names()) >= {"pgd", "margin", "apgd"} and "aa" not in validating_attack_names()


def test_best_metric_resolves_through_the_validation_attack():
    assert resolve_best_metric("robust_acc", "apgd") == "apgd_acc"
    assert resolve_best_metric("teacher_robust_acc", "margin") == "teacher_margin_acc"
    assert resolve_best_metric("robust_acc", "pgd") == "pgd_acc" == metric_name("pgd")
    assert resolve_best_metric("teacher_pgd_acc", "apgd") == "teacher_pgd_acc"  # old spelling, explicit
    assert "teacher_apgd_acc" in best_metric_choices("apgd")
    with pytest.raises(ValueError, match="best_metric"):
        resolve_best_metric("margin_acc", "apgd")  # margin is not computed when validating with apgd


@pytest.mark.parametrize("val_attack", ["margin", "apgd"])
def test_trainer_logs_and_selects_by_its_validation_attack(blobs, make_classifier, val_attack):
    x, y = blobs
    runs = {}
    for kind in ("pgd", val_attack):
        trainer = AdversarialTrainerADR(make_classifier(), val_attack=kind, val_targets=2, verbose=False, **EPS)
        trainer.fit(x[:256], y[:256], validation_data=(x[256:320], y[256:320]), nb_epochs=3, batch_size=64)
        runs[kind] = trainer
    t = runs[val_attack]
    rec = t.history[-1]
    for key in (f"{val_attack}_acc", f"teacher_{val_attack}_acc", "pgd_acc", "teacher_pgd_acc"):
        assert 0.0 <= rec[key] <= 1.0
    assert t.best_metric == f"{val_attack}_acc"
    assert t.best_epoch == max(t.history, key=lambda r: r[t.best_metric])["epoch"]
    # PGD is logged beside it with the very same numbers (its own random stream), and training is unchanged
    for a, b in zip(runs["pgd"].history, t.history):
        assert (a["pgd_acc"], a["teacher_pgd_acc"], a["loss"]) == (b["pgd_acc"], b["teacher_pgd_acc"], b["loss"])
    assert f"{val_attack}_acc" not in runs["pgd"].history[-1]


def test_trainer_best_metric_errors_name_the_argument(make_classifier):
    with pytest.raises(ValueError, match="best_metric"):
        AdversarialTrainerADR(make_classifier(), best_metric="margin_acc", val_attack="apgd", verbose=False)
    with pytest.raises(ValueError, match="val_attack"):
        AdversarialTrainerADR(make_classifier(), val_attack="square", verbose=False)


def _strip_new_fields(run: Path) -> None:
    """Make a run directory look like one written before val_attack / save_every existed."""
    from art_adr.checkpoint import load_checkpoint, save_checkpoint

    new = ("val_attack", "val_targets", "save_every")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for k in new:
        cfg.pop(k)
    cfg["best_metric"] = "pgd_acc"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for ck in (run / "checkpoints").glob("*.pt"):
        state = load_checkpoint(ck)
        for k in new:
            state["config"].pop(k)
        state["config"]["best_metric"] = "pgd_acc"
        save_checkpoint(ck, state)


def test_a_run_from_before_resumes_and_is_scored_by_pgd(tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main
    from art_adr.experiments.sweep import score_run
    from art_adr.runs import load_run_config

    sys.path.insert(0, str(Path(__file__).parent))
    from test_runs import SYNTH

    out = tmp_path / "old"
    result = CliRunner().invoke(main, ["train", *SYNTH, "--epochs", "2", "--stop-after-epochs", "1", "--set",
                                       "val_attack=pgd", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _strip_new_fields(out)
    config = load_run_config(out)
    assert (config.val_attack, config.best_metric, config.save_every) == ("pgd", "pgd_acc", 0)
    result = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    score = score_run(out, load_run_config(out))
    assert score["val_metric"] == "pgd_acc" and not math.isnan(score["val_robust"])


def test_a_new_run_is_scored_by_its_validation_attack(tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main
    from art_adr.experiments.sweep import score_run
    from art_adr.runs import load_run_config

    sys.path.insert(0, str(Path(__file__).parent))
    from test_runs import SYNTH

    out = tmp_path / "new"
    result = CliRunner().invoke(main, ["train", *SYNTH, "--epochs", "2", "--set", "val_attack=margin", "--out",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    score = score_run(out, load_run_config(out))
    assert score["val_metric"] == "margin_acc"
    assert "margin_acc" in (out / "metrics.csv").read_text().splitlines()[0]


def _agreement():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import val_agreement

    return val_agreement


@pytest.mark.parametrize("a, b, tau", [
    ([1, 2, 3], [1, 3, 2], 1 / 3),  # C = 2, D = 1, no ties
    ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6)),  # a tie in a: (C − D) / sqrt((n0 − n1)(n0 − n2)) = 2 / sqrt(2 · 3)
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 1, 1], [1, 2, 3], math.nan),  # one sequence constant: undefined
    ([1], [1], math.nan),
])
def test_kendall_tau_b_by_hand(a, b, tau):
    ours = _agreement().kendall_tau_b([float(v) for v in a], [float(v) for v in b])
    assert (math.isnan(ours) and math.isnan(tau)) or ours == pytest.approx(tau, abs=1e-12)


def test_agreement_summary_on_made_up_points():
    va = _agreement()

    def point(epoch, cand, aa, adr):
        return {"file": f"epoch-{epoch:04d}.pt", "epoch": epoch, "adr": adr, "n": 100,
                "aa": {"acc": aa, "forwards_per_image": 3000.0, "seconds": 1.0},
                **{c: {"acc": cand, "forwards_per_image": 11.0, "seconds": 0.01} for c in va.CANDIDATES}}

    runs = {"a": [point(1, 50, 45, True), point(2, 60, 50, True), point(3, 55, 52, True)],
            "b": [point(1, 40, 39, False), point(2, 45, 44, False)]}
    s = va.summarise(runs)["candidates"]["pgd"]
    assert s["gap_adr"] == pytest.approx((5 + 10 + 3) / 3) and s["gap_baseline"] == pytest.approx(1.0)
    assert s["kendall_within"] == [pytest.approx(1 / 3), 1.0]
    assert s["selection_aa_loss_mean"] == pytest.approx((52 - 50) / 2)  # run a picks epoch 2, AA prefers 3
    best = dict(point(2, 60, 50, True), file="best.pt")
    assert va.distinct(runs["a"] + [best]) == runs["a"]  # the best epoch counted once
    assert va.distinct(runs["a"] + [dict(best, epoch=7)])[-1]["epoch"] == 7


@pytest.mark.parametrize("key, parsed", [("pgd", ("pgd", None, None)), ("apgd-ce", ("apgd-ce", None, None)),
                                         ("apgd-t1", ("apgd", 1, None)), ("apgd-t1@100", ("apgd", 1, 100)),
                                         ("margin@50", ("margin", None, 50))])
def test_agreement_candidate_names(key, parsed):
    assert _agreement().parse_candidate(key) == parsed


@pytest.mark.parametrize("key", ["fgsm", "pgd-t1", "apgd-t0", "apgd@0", "apgd@x", "apgd-ce-t2"])
def test_agreement_candidate_names_rejected(key):
    with pytest.raises(ValueError, match="NAME\\[-tT\\]\\[@K\\]"):
        _agreement().parse_candidate(key)


def test_agreement_adds_candidates_to_the_cached_reference(tmp_path, monkeypatch):
    """A candidate asked for later is measured on its first K images and added to the checkpoint's cache; the
    AutoAttack reference is computed once."""
    from click.testing import CliRunner

    from art_adr.cli import main

    sys.path.insert(0, str(Path(__file__).parent))
    from test_runs import SYNTH

    va = _agreement()
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", *SYNTH, "--epochs", "1", "--set", "val_attack=pgd", "--out", str(out),
                                       "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    calls = []

    def fake_aa(model, x, y, **kwargs):
        calls.append(len(y))
        return {"attacks": ["apgd-ce"], "cumulative": {"clean": 50.0, "apgd-ce": 25.0}}

    monkeypatch.setattr(va, "autoattack_eval", fake_aa)
    final = out / "checkpoints" / "final.pt"
    first = va.evaluate_file(final, 12, ("pgd",))
    second = va.evaluate_file(final, 12, ("pgd", "apgd-t1@4"))
    assert calls == [12] and first["pgd"] == second["pgd"] and second["aa"]["acc"] == 25.0
    assert (first["pgd"]["n"], second["apgd-t1@4"]["n"]) == (12, 4)
    assert second["apgd-t1@4"]["forwards_per_image"] <= 1 + 11 * 2
    assert va.evaluate_file(final, 12, ("apgd-t1@4",)) == second and calls == [12]  # read from the cache
    summary = va.summarise({"run": [second]}, ("pgd", "apgd-t1@4"))["candidates"]
    assert (summary["pgd"]["images"], summary["apgd-t1@4"]["images"]) == (12, 4)


@pytest.mark.parametrize("metric, auto, plan", [
    ("apgd_acc", False, {"student": ("clean", "apgd")}),
    ("teacher_apgd_acc", False, {"teacher": ("clean", "apgd")}),
    ("teacher_pgd_acc", False, {"teacher": ("clean", "pgd")}),
    ("clean_acc", False, {"student": ("clean",)}),
    ("apgd_acc", True, {"student": ("clean", "apgd"), "teacher": ("clean", "apgd")}),  # λ auto reads the teacher
    ("teacher_apgd_acc", True, {"teacher": ("clean", "apgd")}),
    ("teacher_pgd_acc", True, {"teacher": ("clean", "pgd", "apgd")}),
])
def test_selective_plan_measures_what_selects(metric, auto, plan):
    from art_adr.validation import parse_metric, selective_plan

    assert selective_plan(metric, "apgd", auto) == plan
    assert metric_name(*parse_metric(metric)) == metric


def test_val_full_every_validates_what_selects_between_full_validations(blobs, make_classifier):
    """Epochs 2 and 4 (every 2nd validation) and the call's last (5) are full; the others measure the selected
    model's clean and attack accuracy only, which select and are logged; training is unchanged by it."""
    from art_adr.loop import format_record

    x, y = blobs
    kw = dict(val_attack="apgd", val_targets=1, verbose=False, seed=3, **EPS)
    runs = {}
    for every in (1, 2):
        trainer = AdversarialTrainerADR(make_classifier(), val_full_every=every, **kw)
        trainer.fit(x[:192], y[:192], validation_data=(x[256:320], y[256:320]), nb_epochs=5, batch_size=64)
        runs[every] = trainer
    full = {"clean_acc", "pgd_acc", "apgd_acc", "teacher_clean_acc", "teacher_pgd_acc", "teacher_apgd_acc"}
    for rec, ref in zip(runs[2].history, runs[1].history):
        keys = {k for k in rec if k.endswith("_acc") and not k.startswith("train_")}
        assert keys == (full if rec["epoch"] in (2, 4, 5) else {"clean_acc", "apgd_acc"})
        assert rec["loss"] == ref["loss"] and rec["apgd_acc"] == ref["apgd_acc"]  # one batch: same draws
        assert ("teacher" in format_record(rec, 5)) == (rec["epoch"] in (2, 4, 5))
    assert runs[2].best_epoch == runs[1].best_epoch
    with pytest.raises(ValueError, match="val_full_every"):
        AdversarialTrainerADR(make_classifier(), val_full_every=0, verbose=False)


def test_val_full_every_keeps_what_auto_reads(blobs, make_classifier):
    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), val_full_every=3, temperature="auto", interpolation="auto",
                                    val_targets=1, verbose=False, **EPS)
    trainer.fit(x[:128], y[:128], validation_data=(x[256:320], y[256:320]), nb_epochs=2, batch_size=64)
    first = trainer.history[0]
    assert {"apgd_acc", "teacher_apgd_acc"} <= set(first) and "pgd_acc" not in first
    assert trainer.history[-1]["lambda"] == pytest.approx(first["teacher_apgd_acc"])


def _cost():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import validation_cost

    return validation_cost


def test_validation_cost_counts_what_the_validator_runs(soft_model):
    """The cost script's per-image count is the passes the validator makes: exact for clean and PGD-k, an upper
    bound for apgd (APGD-T only on the images APGD-CE left robust)."""
    from art_adr.precision import Precision
    from art_adr.validation import full_plan
    from art_adr.validator import ValidatedModel, Validator

    model, x, y = soft_model
    vc, va = _cost(), _agreement()
    counting = va.Counting(model)
    cpu = torch.device("cpu")
    validator = Validator({"student": ValidatedModel(counting, counting, counting)},
                          get_attack("apgd", validates=True, targets=1), AttackSpec(eps=0.15, steps=3), "robust",
                          (0.0, 1.0), Precision(None, cpu), cpu)
    validator.evaluate(x, y, plan={"student": ("clean", "pgd")})
    assert counting.images == len(y) * (1 + 4)
    assert vc.plan_fe({"student": ("clean", "pgd")}, "apgd", 1, 3) == 1 + (1 + 3 * 3)  # PGD-3: 3 × 3F + F
    counting.images = 0
    validator.evaluate(x, y, plan={"student": ("apgd",)})
    assert 0 < counting.images <= len(y) * get_attack("apgd", targets=1).forwards(AttackSpec(steps=3))
    assert vc.plan_fe(full_plan("apgd"), "apgd", 3, 10) == 2 * (1 + 31 + (5 + 3 * 11 * 4))


def test_validation_cost_per_epoch_follows_the_schedule():
    from art_adr.config import resolve_config

    vc = _cost()
    config = resolve_config("cifar10-at-adr-wa", {"epochs": 10, "eval_every": 2, "val_full_every": 2, "val_targets": 1})
    per_image, n_full, n_sel = vc.validation_fe_per_epoch(config)
    assert (n_full, n_sel) == (3, 2)  # epochs 4, 8, 10 full; 2, 6 the teacher alone
    full, sel = 2 * (1 + 31 + 71), 1 + 71
    assert per_image == pytest.approx((3 * full + 2 * sel) / 10)
    ddpm = resolve_config("cifar10-ddpm-at-adr-wa-awp")
    assert vc.epoch_images(ddpm) == 191 * 1024  # the recipe's own count: 191 iterations after the hold-out


def test_gpu_recipes_validate_within_five_percent_of_their_epoch():
    """Counted, not timed: every CIFAR and Tiny-ImageNet recipe's validation, averaged over its epochs, is at most
    5 % of its training epoch in forward-equivalents (upper bounds), where validating everything every epoch was
    up to 20 %."""
    from art_adr.config import list_recipes

    vc = _cost()
    names = [n for n in list_recipes() if n.startswith(("cifar10-", "cifar100-", "tinyimagenet-"))]
    assert len(names) > 40
    for name in names:
        row = vc.recipe_row(name)
        assert row["now"]["fraction"] <= vc.TARGET < row["former"]["fraction"] or "ddpm" in name, name
        assert row["now"]["val_targets"] == 3  # the attack that ranks as AutoAttack does, unchanged


@pytest.mark.parametrize("eval_every, full_every, expected", [
    (1, 1, "FFFFFFFFFF"),
    (1, 3, "SSFSSFSSFF"),  # every 3rd validation full, and the last epoch
    (2, 2, "-S-F-S-F-F"),  # validations at even epochs, every 2nd of them full
    (3, 1, "--F--F--FF"),
])
def test_validation_at_follows_eval_every_and_val_full_every(eval_every, full_every, expected):
    from art_adr.validation import validation_at

    code = {"full": "F", "selective": "S", None: "-"}
    assert "".join(code[validation_at(e, 10, eval_every, full_every)] for e in range(1, 11)) == expected
