"""`art-adr train`: recipes, run directories, plots, exact resume, atomic checkpoints, 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from art_adr.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from art_adr.cli import main
from art_adr.config import ConfigError, RunConfig, list_recipes, load_recipe, resolve_config

SYNTH = ["--dataset", "synthetic", "--set", "dataset_kwargs={n: 320, shape: [1, 12, 12], num_classes: 4}",
         "--val-size", "64", "--max-iter", "2", "--batch-size", "64", "--eps", "0.1", "--eps-step", "0.05",
         "--set", "eval_max_iter=2", "-q"]


def _train(*args: str) -> None:
    result = CliRunner().invoke(main, ["train", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_every_recipe_loads_and_validates():
    recipes = list_recipes()
    assert len(recipes) >= 70 and all(desc for desc in recipes.values())
    for name in recipes:
        cfg = resolve_config(name)
        assert cfg.recipe == name
    c = resolve_config("cifar100-at-adr-wa-awp")
    assert (c.temperature, c.interpolation, c.awp_rho, c.epochs) == ((2.0, 1.0), (0.7, 0.85), 0.005, 200)
    assert c.eps == pytest.approx(8 / 255) and c.eps_step == pytest.approx(2 / 255) and c.nesterov
    t = resolve_config("tinyimagenet-at-adr-wa-awp")
    assert (t.interpolation, t.awp_rho, t.epochs) == ((0.3, 0.9), 0.001, 80)
    assert resolve_config("tinyimagenet-trades-adr-wa-awp").interpolation == (0.5, 0.9)
    d = resolve_config("cifar100-ddpm-at-adr-wa-awp")
    assert (d.batch_size, d.extra_fraction, d.lr, d.lr_schedule, d.arch_kwargs) == (
        1024, 0.75, 0.4, "cosine", {"activation": "silu"})
    assert resolve_config("cifar10-at").adr is False and resolve_config("cifar10-trades-adr").method == "trades"


def test_flags_override_recipe_and_unknown_keys_are_errors(tmp_path):
    cfg = resolve_config("cifar10-at-adr", {"epochs": 3, "eps": "4/255", "temperature": ["3", "1"]})
    assert (cfg.epochs, cfg.temperature) == (3, (3.0, 1.0)) and cfg.eps == pytest.approx(4 / 255)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: cifar10-at\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match="unknown recipe"):
        resolve_config("cifar11-at")
    with pytest.raises(ConfigError, match="eps"):
        resolve_config(None, {"eps": 2})
    result = CliRunner().invoke(main, ["train", "--set", "nonsense=1"])
    assert result.exit_code != 0 and "unknown option 'nonsense'" in result.output


def test_recipes_command_lists_and_shows():
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0 and "cifar100-at-adr-wa-awp" in result.output and "_paper-common" not in result.output
    shown = yaml.safe_load(CliRunner().invoke(main, ["recipes", "--show", "fashion-mnist-at-adr"]).output)
    assert shown["dataset"] == "fashion-mnist" and shown["adr"] is True


def _check_run_dir(out: Path, epochs: int) -> None:
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "curves.png", "checkpoints/last.pt",
                 "checkpoints/best.pt", "checkpoints/final.pt"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for key in ("loss", "lr", "tau", "lambda", "train_robust_acc", "clean_acc", "pgd_acc", "teacher_clean_acc",
                "teacher_pgd_acc", "seconds"):
        assert key in rows[-1], key
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    RunConfig(**{k: v for k, v in saved.items()})  # the saved config is complete and loadable
    assert not list(out.rglob("*.tmp"))


def test_one_epoch_fashion_mnist_subset_writes_the_whole_run_dir(tmp_path):
    out = tmp_path / "fm"
    _train("--recipe", "fashion-mnist-at-adr", "--epochs", "1", "--subset", "256", "--val-size", "64",
           "--max-iter", "2", "--set", "eval_max_iter=2", "--out", str(out), "-q")
    _check_run_dir(out, 1)
    model, ckpt = load_model(out, which="teacher")
    assert ckpt["model"]["arch"] == "small-cnn" and ckpt["config"]["recipe"] == "fashion-mnist-at-adr"
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_one_epoch_on_synthetic_cifar_shaped_data(tmp_path):
    out = tmp_path / "c"
    _train("--recipe", "cifar10-trades-adr", "--arch", "small-cnn", "--set", "arch_kwargs={in_channels: 3}",
           "--dataset", "synthetic", "--set", "dataset_kwargs={n: 192, shape: [3, 32, 32], num_classes: 10}",
           "--epochs", "1", "--val-size", "64", "--max-iter", "1", "--set", "eval_max_iter=1", "--out", str(out), "-q")
    _check_run_dir(out, 1)
    assert load_checkpoint(out / "checkpoints" / "final.pt")["config"]["method"] == "trades"


def test_resume_after_a_stop_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(*SYNTH, "--epochs", "3", "--awp-rho", "0.01", "--out", str(straight))
    _train(*SYNTH, "--epochs", "3", "--awp-rho", "0.01", "--out", str(split), "--stop-after-epochs", "1")
    assert not (split / "checkpoints" / "final.pt").exists()
    assert load_checkpoint(split / "checkpoints" / "last.pt")["epoch"] == 1
    _train("--out", str(split), "--resume", "-q")
    a = load_checkpoint(straight / "checkpoints" / "final.pt")
    b = load_checkpoint(split / "checkpoints" / "final.pt")
    for which in ("student", "teacher"):
        for key in a[which]:
            assert torch.equal(a[which][key], b[which][key]), (which, key)
    drop = {"seconds", "train_seconds", "images_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b["history"]]


def test_refuses_to_overwrite_or_resume_with_new_options(tmp_path):
    out = tmp_path / "r"
    _train(*SYNTH, "--epochs", "1", "--out", str(out))
    again = CliRunner().invoke(main, ["train", *SYNTH, "--epochs", "1", "--out", str(out)])
    assert again.exit_code != 0 and "already holds a run" in again.output
    changed = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "5"])
    assert changed.exit_code != 0 and "--resume continues" in changed.output
    nothing = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert nothing.exit_code != 0 and "Error" in nothing.output and "Traceback" not in nothing.output


def test_missing_dataset_is_a_clear_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "-q",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and str(tmp_path) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_checkpoints_are_atomic_and_loaded_as_untrusted(tmp_path):
    path = tmp_path / "c.pt"

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(Exception, match="disk full"):
        save_checkpoint(path, {"student": {}, "model": {}, "x": Boom()})
    assert not path.exists() and not list(tmp_path.iterdir())
    torch.save({"format": "art-adr-checkpoint", "student": {}, "model": {}, "f": print}, path)  # code inside
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="not an art-adr checkpoint"):
        load_checkpoint(path)


@pytest.mark.skipif(sys.platform != "linux", reason="gloo on Linux")
def test_two_process_ddp_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "art_adr.cli", "train", *SYNTH, "--epochs", "2", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run_dir(out, 2)
    assert proc.stdout.count("run written to") == 1  # one writer
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 * 4  # 256 training images in global batches of 64
    assert "world_size: 2" in (out / "config.yaml").read_text()


def test_evaluate_uses_the_runs_epsilon_and_dataset_options(tmp_path):
    out = tmp_path / "r"
    _train(*SYNTH, "--epochs", "1", "--out", str(out))
    result = CliRunner().invoke(main, ["evaluate", str(out), "--attacks", "clean,pgd", "--n-examples", "16",
                                       "--out", str(tmp_path / "ev"), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["eps"] == pytest.approx(0.1) and report["n_examples"] == 16
    assert report["models"]["student"]["results"]["pgd"] <= report["models"]["student"]["results"]["clean"]


def test_cli_version_and_help_list_every_command():
    from art_adr import __version__

    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and __version__ in version.output
    helptext = CliRunner().invoke(main, ["--help"]).output
    for command in ("train", "recipes", "evaluate", "export", "benchmark", "sweep", "analyze"):
        assert f"  {command} " in helptext, command


def test_parse_sets_one_reader_for_every_command():
    import click

    from art_adr.cli import parse_sets

    assert parse_sets(["lr=0.1", "arch_kwargs={hidden: 8}", "milestones=[0.5, 0.9]", " note =a: b: c"]) == {
        "lr": 0.1, "arch_kwargs": {"hidden": 8}, "milestones": [0.5, 0.9], "note": "a: b: c"}
    with pytest.raises(click.UsageError, match="KEY=VALUE"):
        parse_sets(["lr0.1"])


def test_config_diff_ignores_the_device_and_the_adr_schedules_of_runs_without_adr():
    from art_adr.runs import config_diff

    old = {"adr": False, "temperature": [2.0, 1.5], "interpolation": [0.7, 0.9], "lr": 0.1, "device": "cpu"}
    new = {**old, "temperature": [2.5, 2.0], "interpolation": [0.7, 0.95], "device": "cuda"}
    assert config_diff(old, new) == []
    assert config_diff({**old, "adr": True}, {**new, "adr": True}) == ["interpolation", "temperature"]
    assert config_diff(old, {**new, "lr": 0.2}) == ["lr"]


def test_save_every_keeps_per_epoch_checkpoints_equal_to_last(tmp_path):
    out = tmp_path / "run"
    _train(*SYNTH, "--epochs", "3", "--set", "save_every=2", "--out", str(out))
    kept = sorted(p.name for p in (out / "checkpoints").glob("epoch-*.pt"))
    assert kept == ["epoch-0002.pt"]
    ck = load_checkpoint(out / "checkpoints" / "epoch-0002.pt")
    assert ck["epoch"] == 2 and ck["history"][-1]["epoch"] == 2
    final = load_checkpoint(out / "checkpoints" / "final.pt")
    assert any(not torch.equal(ck["student"][k], final["student"][k]) for k in final["student"])
    with pytest.raises(ConfigError, match="save_every"):
        resolve_config(None, {"save_every": -1})


def test_config_diff_ignores_the_description_text() -> None:
    from art_adr.runs import config_diff

    saved = {"description": "old words", "epochs": 3, "device": "cpu"}
    assert config_diff(saved, {**saved, "description": "new words", "device": "cuda"}) == []
    assert config_diff(saved, {**saved, "epochs": 4}) == ["epochs"]


def test_a_config_of_an_earlier_commit_differs_in_nothing(tmp_path):
    """tests/data/config-84dff65.yaml is the config.yaml an earlier commit wrote (fashion-mnist-ro-at-adr, 2
    epochs): read today, every field added since has the default that run trained with, so its ``last.pt`` (whose
    ``config`` is this dict) resumes instead of "trained with different options"."""
    import shutil

    import yaml

    from art_adr.runs import config_diff, load_run_config

    saved = yaml.safe_load((Path(__file__).parent / "data" / "config-84dff65.yaml").read_text())
    shutil.copy(Path(__file__).parent / "data" / "config-84dff65.yaml", tmp_path / "config.yaml")
    now = load_run_config(tmp_path)
    assert "ema_buffers" not in saved and now.ema_buffers == "average"
    assert config_diff(saved, now.to_dict()) == []
