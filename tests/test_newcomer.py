"""What a newcomer reads and sees: start-up lines, help texts, tables, plots (issue 17, §3)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from art_adr.cli import main


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_says_what_it_does_first_and_never_imports_robustbench(tmp_path):
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print('robustbench' in sys.modules, file=sys.stderr))\n"
            "sys.argv = ['art-adr'] + sys.argv[1:]\n"
            "from art_adr.cli import main\nmain()\n")
    args = ["train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 40, shape: [1, 8, 8], num_classes: 4}",
            "--val-size", "100", "--out", str(tmp_path / "r")]  # fails after loading the data
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == "art-adr train: importing torch and ART ...", res.stderr
    assert "loading synthetic ..." in res.stdout and "val_size 100 leaves no training data" in res.stderr
    assert lines[-1] == "False", res.stderr  # robustbench was not imported


def test_help_texts_name_only_options_that_exist():
    sweep = " ".join(_cli("sweep", "--help").output.split())
    assert "--n-val" not in sweep and "AutoAttack on --n-examples" in sweep
    for command in ("train", "benchmark", "sweep"):  # the missing-data error suggests --download
        assert "--download / --no-download" in _cli(command, "--help").output, command


def test_benchmark_and_sweep_pass_download_on(tmp_path, monkeypatch):
    import art_adr.benchmark
    import art_adr.sweep

    seen = {}

    def fake_benchmark(dataset, out, **kw):
        seen["benchmark"] = kw["overrides"].get("download")
        raise ValueError("stop here")

    def fake_sweep(recipe, out, **kw):
        seen["sweep"] = kw["overrides"].get("download")
        raise ValueError("stop here")

    monkeypatch.setattr(art_adr.benchmark, "run_benchmark", fake_benchmark)
    monkeypatch.setattr(art_adr.sweep, "run_sweep", fake_sweep)
    _cli("benchmark", "--dataset", "cifar10", "--download", "--device", "cpu", "--out", tmp_path / "b")
    _cli("sweep", "--recipe", "cifar10-at-adr", "--download", "--device", "cpu", "--out", tmp_path / "s")
    assert seen == {"benchmark": True, "sweep": True}
