"""Answers that must not mislead: one rule per input, strict option values, one-line errors (issue 17, §2)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from art_adr.cli import main

EPS = dict(eps=0.1, eps_step=0.025, max_iter=2)


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()  # progress lines may come first; the error is the one last line
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, res.output
    assert "Traceback" not in res.output and "Usage:" not in res.output, res.output
    for needle in needles:
        assert needle in lines[-1], res.output


def test_uint8_images_follow_one_rule(blobs, make_classifier):
    from art_adr import AdversarialTrainerADR, SoftLabelPGD

    x, y = blobs
    xu = np.round(x[:32] * 255).astype(np.uint8)
    clf = make_classifier()
    trainer = AdversarialTrainerADR(clf, verbose=False, **EPS)
    np.testing.assert_allclose(trainer.predict(xu), trainer.predict(xu.astype(np.float32) / 255), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        SoftLabelPGD(clf, eps=0.1).generate(xu, y[:32])


def test_soft_label_pgd_uses_the_one_step_rule_and_takes_verbose(make_classifier):
    from art_adr import SoftLabelPGD
    from art_adr.attacks import default_eps_step

    clf = make_classifier()
    assert SoftLabelPGD(clf, eps=0.1).eps_step == pytest.approx(default_eps_step(0.1, 10))
    assert SoftLabelPGD(clf, eps=1 / 255).eps_step == pytest.approx(default_eps_step(1 / 255, 10))
    assert SoftLabelPGD(clf, eps=0.1, max_iter=5).eps_step == pytest.approx(0.05)
    assert SoftLabelPGD(clf, eps=0.1, verbose=True).verbose is True
    with pytest.raises(ValueError, match="eps_step"):
        SoftLabelPGD(clf, eps=0.1, eps_step=float("nan"))


def test_export_has_no_dataset_option_and_refuses_robust_above_clean(tmp_path):
    res = _cli("export", tmp_path / "x.pt", "--name", "X", "--out", tmp_path / "b", "--dataset", "cifar10",
               "--clean-acc", "50", "--autoattack-acc", "40")
    assert res.exit_code == 2 and "--dataset" in res.output, res.output  # no such option: the checkpoint's
    from art_adr.checkpoint import save_checkpoint
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    ck = tmp_path / "c10.pt"
    save_checkpoint(ck, {"model": {"arch": "preact-resnet18", "num_classes": 10, "dataset": "cifar10",
                                   "kwargs": {}}, "config": {},
                         "student": create_model("preact-resnet18", 10, **model_inputs("cifar10")).state_dict()})
    res = _cli("export", ck, "--name", "X", "--out", tmp_path / "b", "--external-numbers", "--clean-acc", "30",
               "--autoattack-acc", "60", "--device", "cpu")
    _one_line_error(res, "cannot exceed clean")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.json"))


@pytest.mark.parametrize("key,value,text", [
    ("adr", "maybe", "adr must be true or false"), ("augment", "2", "augment must be true or false"),
    ("adr", 0.5, "adr must be true or false"), ("eval_batch_size", "1.5", "eval_batch_size must be an integer"),
    ("eval_batch_size", 1.5, "eval_batch_size must be an integer"), ("seed", True, "seed must be an integer"),
])
def test_config_values_are_strict(key, value, text):
    from art_adr.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=text):
        resolve_config(None, {key: value})


def test_config_values_that_are_meant_are_taken():
    from art_adr.config import resolve_config

    for text, want in (("yes", True), ("No", False), ("1", True), ("off", False), (False, False)):
        assert resolve_config(None, {"adr": text}).adr is want
    assert resolve_config(None, {"eval_batch_size": "64"}).eval_batch_size == 64
    assert resolve_config(None, {"eval_batch_size": 64.0}).eval_batch_size == 64
    assert resolve_config(None, {"temperature": 2}).temperature == (2.0, 2.0)
    assert resolve_config(None, {"temperature": ["2"]}).temperature == (2.0, 2.0)


@pytest.mark.parametrize("args,text", [
    (["--set", "adr=maybe"], "adr must be true or false"),
    (["--set", "eval_batch_size=1.5"], "eval_batch_size must be an integer"),
    (["--interpolation", "1.5"], "outside [0, 1]"),
    (["--temperature", "0"], "temperature must be > 0"),
])
def test_train_rejects_what_it_would_silently_change(tmp_path, args, text):
    _one_line_error(_cli("train", "--dataset", "synthetic", *args, "--out", tmp_path / "r", "-q"), text)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_stop_after_epochs_must_be_positive(tmp_path, value):
    res = _cli("train", "--dataset", "synthetic", "--stop-after-epochs", value, "--out", tmp_path / "r", "-q")
    assert res.exit_code == 2 and "--stop-after-epochs" in res.output, res.output
    from art_adr.config import resolve_config
    from art_adr.runs import RunError, train_run

    with pytest.raises(RunError, match="stop_after_epochs"):
        train_run(resolve_config(None, {"dataset": "synthetic"}), tmp_path / "r", stop_after_epochs=int(value))


def test_temperature_given_as_one_number_trains_constant(tmp_path):
    res = _cli("train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 96, shape: [1, 8, 8], num_classes: 4}",
               "--val-size", "16", "--max-iter", "1", "--set", "eval_max_iter=1", "--set", "arch_kwargs={width: 4}",
               "--epochs", "1", "--temperature", "2", "--interpolation", "0.5", "--batch-size", "32",
               "--out", tmp_path / "r", "-q")
    assert res.exit_code == 0, res.output
    import yaml

    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["temperature"] == [2.0, 2.0] and saved["interpolation"] == [0.5, 0.5]


def test_subset_larger_than_the_training_set_is_an_error(tmp_path):
    res = _cli("train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 96, shape: [1, 8, 8], num_classes: 4}",
               "--val-size", "16", "--subset", "500", "--out", tmp_path / "r", "-q")
    _one_line_error(res, "subset 500 is larger than the training set (80 images")
    assert not (tmp_path / "r").exists()


BENCH = ["--recipes", "fashion-mnist-at", "--set", "dataset=synthetic", "--set",
         "dataset_kwargs={n: 160, shape: [1, 8, 8], num_classes: 4}", "--set", "val_size=32", "--set", "max_iter=1",
         "--set", "eval_max_iter=1", "--set", "arch_kwargs={width: 4}", "--set", "batch_size=32", "--epochs", "2",
         "--attacks", "pgd", "--n-examples", "8", "--device", "cpu", "-q"]


@pytest.fixture
def ctrl_c():
    """Ctrl-C as in a terminal: a shell without job control starts background jobs with SIGINT ignored, and Python
    keeps that, so the "INT" kill point would pass unnoticed when the tests were launched that way."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("command", ["benchmark", "sweep"])
@pytest.mark.parametrize("signal_name,code", [("TERM", 143), ("INT", 130)])
def test_signals_during_benchmark_and_sweep_training(tmp_path, monkeypatch, ctrl_c, command, signal_name, code):
    monkeypatch.setenv("ART_ADR_KILL_AT", f"step:2:{signal_name}")
    args = BENCH if command == "benchmark" else [
        "--recipe", "fashion-mnist-at-adr", "--temperatures", "2", "--interpolations", "0.5",
        *[a for a in BENCH[2:] if a not in ("--attacks", "pgd", "--n-examples", "8")]]
    res = _cli(command, *args, "--out", tmp_path / "out")
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and "Aborted" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and ("stopped by SIGTERM" in lines[0] if code == 143 else lines[0] == "interrupted")
    if code == 143:
        assert "--resume" in lines[0]
        last = next((tmp_path / "out" / "runs").glob("*/checkpoints/last.pt"))
        from art_adr.checkpoint import load_checkpoint

        assert load_checkpoint(last)["epoch"] == 1


SYN = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 96, shape: [1, 8, 8], num_classes: 4}",
       "--val-size", "16", "--epochs", "1", "--max-iter", "1", "--batch-size", "32", "-q"]


@pytest.mark.parametrize("sets,text", [
    ("arch_kwargs={width: -1}", "architecture 'small-cnn' with options"),
    ("arch_kwargs={width: abc}", "architecture 'small-cnn' with options"),
    ("arch_kwargs={bogus: 1}", "unknown option(s) ['bogus']"),
    ("arch_kwargs={num_classes: 3}", "arch_kwargs cannot set ['num_classes']"),
    ("dataset_kwargs={n: 96, shape: [1, 8, 8], num_classes: 4, bogus: 1}",
     "dataset 'synthetic': unknown option(s) ['bogus']"),
])
def test_bad_builder_options_are_one_line_errors(tmp_path, sets, text):
    syn = SYN[:2] + SYN[4:] if sets.startswith("dataset_kwargs") else SYN  # --set gives a field one value
    _one_line_error(_cli("train", *syn, "--set", sets, "--out", tmp_path / "r"), text)


def test_evaluate_of_a_checkpoint_with_bad_options_or_other_classes_is_one_line(tmp_path):
    import torch

    from art_adr.checkpoint import save_checkpoint
    from art_adr.data import model_inputs
    from art_adr.models import create_model

    state = create_model("small-cnn", 10, **model_inputs("synthetic"), width=4).state_dict()
    desc = {"arch": "small-cnn", "num_classes": 10, "dataset": "synthetic", "kwargs": {"width": 4, "bogus": 1}}
    save_checkpoint(tmp_path / "a.pt", {"model": desc, "config": {}, "student": state})
    _one_line_error(_cli("evaluate", tmp_path / "a.pt", "--attacks", "clean", "--n-examples", "4", "-q"),
                    "unknown option(s) ['bogus']")
    desc = {**desc, "num_classes": 4, "kwargs": {"width": 4}}  # weights of a 10-class model
    save_checkpoint(tmp_path / "b.pt", {"model": desc, "config": {}, "student": state})
    _one_line_error(_cli("evaluate", tmp_path / "b.pt", "--attacks", "clean", "--n-examples", "4", "-q"),
                    "weights do not fit small-cnn with 4 classes")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["model"]["num_classes"] == 4


def test_usage_errors_and_bad_recipe_yaml_are_one_line(tmp_path):
    _one_line_error(_cli("train", "--bogus"), "No such option '--bogus'", "train --help")
    _one_line_error(_cli("benchmark", "--attacks", "xyz", "--dataset", "synthetic"), "--attacks", "--help")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\nlr: 2\n")
    for command in (["train", "--recipe", bad], ["benchmark", "--recipes", bad, "--out", tmp_path / "b"]):
        _one_line_error(_cli(*command), "invalid YAML")


def test_load_state_dict_is_all_or_nothing(make_classifier):
    import torch

    from art_adr import AdversarialTrainerADR

    trainer = AdversarialTrainerADR(make_classifier(), verbose=False, **EPS)
    before = {k: v.clone() for k, v in trainer.student_module.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    other = AdversarialTrainerADR(make_classifier(seed=1), verbose=False, **EPS).state_dict()
    broken = {**other, "optimizer": {"state": {}, "param_groups": []}}  # student and teacher fit, optimizer not
    with pytest.raises(ValueError, match="does not fit|parameter group"):
        trainer.load_state_dict(broken)
    for k, v in trainer.student_module.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in trainer.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    with pytest.raises(ValueError, match=r"state lacks \['student'"):
        trainer.load_state_dict({})
    with pytest.raises(ValueError, match="state must be a dict"):
        trainer.load_state_dict(None)
    trainer.load_state_dict(other)  # a fitting state still loads
    assert all(torch.equal(v, other["student"][k]) for k, v in trainer.student_module.state_dict().items())


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_models_that_are_not_float32_are_refused_up_front(make_classifier, dtype):
    import torch

    from art_adr import AdversarialTrainerADR

    clf = make_classifier()
    clf.model.to(getattr(torch, dtype))
    with pytest.raises(ValueError, match=f"parameters are {dtype}.*model.float"):
        AdversarialTrainerADR(clf, verbose=False, **EPS)


def test_bn_momentum_of_the_wrong_type_names_the_argument(make_classifier):
    from art_adr import AdversarialTrainerADR

    with pytest.raises(ValueError, match="bn_momentum must be a finite real number"):
        AdversarialTrainerADR(make_classifier(), bn_momentum="a", **EPS)


@pytest.mark.parametrize("name,value", [("adr", "false"), ("ema_warmup", "no"), ("drop_last", "x"),
                                        ("sync_bn", "false"), ("channels_last", 1), ("verbose", None)])
def test_api_booleans_are_booleans(make_classifier, name, value):
    from art_adr import AdversarialTrainerADR, AdversarialTrainerTRADESADR

    for cls in (AdversarialTrainerADR, AdversarialTrainerTRADESADR):
        with pytest.raises(ValueError, match=f"{name} must be True or False, got {value!r}"):
            cls(make_classifier(), **{name: value}, **EPS)
    trainer = AdversarialTrainerADR(make_classifier(), **{"verbose": False, name: np.bool_(False)}, **EPS)
    assert getattr(trainer, name) is False


def test_fit_drop_last_and_seed_are_checked(make_classifier, blobs):
    from art_adr import AdversarialTrainerADR

    trainer = AdversarialTrainerADR(make_classifier(), verbose=False, **EPS)
    with pytest.raises(ValueError, match="drop_last must be True or False, got 'x'"):
        trainer.fit(*blobs, nb_epochs=1, batch_size=64, drop_last="x")
    assert trainer.epoch == 0 and trainer.history == []
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        AdversarialTrainerADR(make_classifier(), seed=-1, **EPS)


def test_load_state_dict_refuses_states_no_trainer_saves(make_classifier):
    import torch

    from art_adr import AdversarialTrainerADR

    trainer = AdversarialTrainerADR(make_classifier(), verbose=False, **EPS)
    state = AdversarialTrainerADR(make_classifier(seed=1), verbose=False, **EPS).state_dict()
    before = {k: v.clone() for k, v in trainer.student_module.state_dict().items()}
    name = next(iter(state["student"]))
    nan = {**state, "student": {**state["student"], name: torch.full_like(state["student"][name], float("nan"))}}
    for bad, text in ((nan, f"non-finite weights.*student.{name}"), ({**state, "epoch": -1}, r"state\['epoch'\]"),
                      ({**state, "step": 2.5}, r"state\['step'\] must be an integer")):
        with pytest.raises(ValueError, match=text):
            trainer.load_state_dict(bad)
        assert all(torch.equal(v, before[k]) for k, v in trainer.student_module.state_dict().items())


def test_a_model_on_the_meta_device_or_a_missing_gpu_is_a_clear_value_error(make_classifier):
    import torch

    from art_adr import AdversarialTrainerADR

    clf = make_classifier()
    clf.model.to("meta")
    with pytest.raises(ValueError, match="meta device"):
        AdversarialTrainerADR(clf, **EPS)
    clf = make_classifier()
    clf._device = torch.device("cuda", torch.cuda.device_count())  # one past the GPUs torch sees
    with pytest.raises(ValueError, match="is not available"):
        AdversarialTrainerADR(clf, **EPS)


def test_a_recipe_name_resolves_only_in_the_recipe_folder_and_a_path_must_look_like_one(tmp_path, monkeypatch):
    import os

    from art_adr.config import ConfigError, recipe_dir, resolve_config

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "recipe.yaml").write_text("epochs: 7\n")
    climbing = os.path.relpath(tmp_path / "x" / "recipe", recipe_dir())  # ../../.../x/recipe
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="recipe file .* not found .*read as a file path"):
        resolve_config(climbing)
    assert resolve_config("x/recipe.yaml").epochs == 7 and resolve_config("./x/recipe.yaml").epochs == 7
    assert resolve_config("fashion-mnist-at").method == "at"
    with pytest.raises(ConfigError, match="unknown recipe name 'recipe'.*e.g. ./recipe.yaml"):
        resolve_config("recipe")
    with pytest.raises(ConfigError, match="the shipped recipe is named 'fashion-mnist-at'"):
        resolve_config("fashion-mnist-at.yaml")
    _one_line_error(_cli("train", "-r", climbing, "--out", tmp_path / "run"), "not found")
