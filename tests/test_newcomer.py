"""What a newcomer reads and sees: start-up lines, help texts, tables, plots (issue 17, §3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
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
    assert "--n-val" not in sweep and "on --n-examples hold-out images" in sweep
    for command in ("train", "benchmark", "sweep"):  # the missing-data error suggests --download
        assert "--download / --no-download" in _cli(command, "--help").output, command


def test_benchmark_and_sweep_pass_download_on(tmp_path, monkeypatch):
    import art_adr.experiments

    seen = {}

    def fake_benchmark(dataset, out, **kw):
        seen["benchmark"] = kw["overrides"].get("download")
        raise ValueError("stop here")

    def fake_sweep(recipe, out, **kw):
        seen["sweep"] = kw["overrides"].get("download")
        raise ValueError("stop here")

    monkeypatch.setattr(art_adr.experiments, "run_benchmark", fake_benchmark)
    monkeypatch.setattr(art_adr.experiments, "run_sweep", fake_sweep)
    _cli("benchmark", "--dataset", "cifar10", "--download", "--device", "cpu", "--out", tmp_path / "b")
    _cli("sweep", "--recipe", "cifar10-at-adr", "--download", "--device", "cpu", "--out", tmp_path / "s")
    assert seen == {"benchmark": True, "sweep": True}


def test_fit_generator_in_art_awp_order_and_predict_keywords(blobs, make_classifier):
    import numpy as np
    import torch

    from art_adr import AdversarialTrainerADR

    x, y = blobs
    trainer = AdversarialTrainerADR(make_classifier(), eps=0.1, eps_step=0.05, max_iter=1, verbose=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x[:64]), torch.tensor(y[:64])),
                                         batch_size=32)
    with pytest.raises(ValueError, match="validation_data=\\(x, y\\) by keyword") as info:
        trainer.fit_generator(loader, (x[:32], y[:32]))
    assert len(str(info.value)) < 400 and "0." not in str(info.value)  # no array in the message
    with pytest.raises(ValueError, match="nb_epochs must be an integer, got a ndarray of shape \\(3,\\)"):
        trainer.fit_generator(loader, np.zeros(3))
    with pytest.warns(UserWarning, match="predict\\(\\) ignores the keyword\\(s\\) \\['training_mode'\\]"):
        trainer.predict(x[:4], training_mode=True)


def test_a_runs_config_replayed_as_recipe_keeps_its_recipe_name(tmp_path):
    import yaml

    from art_adr.config import resolve_config

    config = resolve_config("fashion-mnist-at-adr", {"epochs": 2})
    path = tmp_path / "config.yaml"
    path.write_text("# art_adr: 0.1.0\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    replay = resolve_config(str(path))
    assert replay.recipe == "fashion-mnist-at-adr" and replay.to_dict() == config.to_dict()
    other = tmp_path / "mine.yaml"
    other.write_text("base: fashion-mnist-at\nepochs: 3\n")
    assert resolve_config(str(other)).recipe == "mine"


def test_tables_name_what_they_are_and_label_non_default_schedules():
    from art_adr.config import resolve_config
    from art_adr.experiments.table1 import format_markdown, method_label, plan_runs

    assert method_label(resolve_config("fashion-mnist-at-adr")) == "AT + ADR"
    tuned = resolve_config("fashion-mnist-at-adr", {"temperature": [2.0, 1.5], "interpolation": [0.5, 0.9]})
    assert method_label(tuned) == "AT + ADR (τ 2→1.5, λ 0.5→0.9)"
    assert method_label(resolve_config("fashion-mnist-at", {"temperature": 3})) == "AT"  # τ unused without ADR
    auto = resolve_config("fashion-mnist-at-adr", {"temperature": "auto"})
    assert method_label(auto).startswith("AT + ADR (τ auto, λ ")
    plans = plan_runs(None, recipes=["fashion-mnist-at-adr"], overrides={"interpolation": [0.6, 0.9]})
    assert plans[0].label.endswith("λ 0.6→0.9)")
    row = {"method": "AT", "which": "student", "n_examples": 10, "pgd_best": 1.0, "pgd_final": 1.0, "pgd_diff": 0.0,
           "clean_best": 2.0, "clean_final": 2.0, "clean_diff": 0.0, "best_epoch": 1, "kind": "aggregate"}
    assert format_markdown([row], "fashion-mnist").startswith(
        "Table-1-style comparison on fashion-mnist (the paper reports no fashion-mnist results)")
    assert format_markdown([row], "cifar10").startswith("Table 1 reproduction on cifar10")


def _sweep_summary(taus, lams, const=False):
    cells = [{"temperature": [t, t - 0.5], "interpolation": [v, min(1.0, v + 0.3)], "seeds": [0, 1],
              "val_robust": 50.0 if const else 40.0 + 3 * i + j, "val_robust_std": 0.5, "val_metric": "pgd_acc",
              "val_aa": 45.0 if const else 35.0 + 3 * i + j, "val_aa_std": 0.4}
             for i, t in enumerate(taus) for j, v in enumerate(lams)]
    return {"grid": {"temperatures": taus, "interpolations": lams}, "cells": cells, "recipe": "fashion-mnist-ro-at-adr",
            "seeds": [0, 1], "selection": {"model": "student", "epoch": "best", "aa_version": "standard"},
            "selected": {"index": 0}}


def _no_overlap(boxes, fig_box):
    for name, box in boxes.items():
        assert fig_box.x0 - 1 <= box.x0 and box.x1 <= fig_box.x1 + 1 and box.y1 <= fig_box.y1 + 1, name
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)


@pytest.mark.parametrize("taus,lams", [([1.5, 2.5], [0.5, 0.9]), ([2.0], [0.5, 0.9])])
def test_sweep_heatmap_has_room_for_its_labels(taus, lams):
    import matplotlib.pyplot as plt

    from art_adr.experiments.sweep import heatmap_figure

    fig = heatmap_figure(_sweep_summary(taus, lams))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_title()]
    bars = [ax for ax in fig.axes if not ax.get_title()]
    assert len(panels) == 2 and len(bars) == 2
    boxes = {}
    for k, (ax, bar) in enumerate(zip(panels, bars)):
        boxes[f"title{k}"] = ax.title.get_window_extent(r)
        boxes[f"ylabel{k}"] = ax.yaxis.label.get_window_extent(r)
        boxes[f"bar{k}"] = bar.get_tightbbox(r)
    _no_overlap(boxes, fig.bbox)
    plt.close(fig)


@pytest.mark.parametrize("score", [None, 50.0, 0.0])
def test_sweep_heatmap_colours_on_a_fixed_0_to_100_scale(score):
    """Issue 29: a constant score (all cells 0 after a one-epoch sweep) no more gets a bar spanning −0.5…0.5 %."""
    import matplotlib.pyplot as plt

    from art_adr.experiments.sweep import heatmap_figure

    summary = _sweep_summary([2.0], [0.5, 0.9], const=score is not None)
    for c in summary["cells"] if score is not None else []:
        c["val_robust"] = c["val_aa"] = score
    fig = heatmap_figure(summary)
    for ax in [a for a in fig.axes if a.images]:
        assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.0, 100.0)
    bars = [a for a in fig.axes if not a.images]
    assert bars and all(min(a.get_ylim()) == 0.0 and max(a.get_ylim()) == 100.0 for a in bars)
    plt.close(fig)


def test_curves_of_a_short_run_read_like_the_tables():
    import matplotlib.pyplot as plt

    from art_adr.runs import curves_figure

    hist = [{"epoch": e, "loss": 2.0 - 0.1 * e, "train_robust_acc": 0.3, "clean_acc": 0.5, "pgd_acc": 0.4,
             "teacher_clean_acc": 0.5, "teacher_pgd_acc": 0.41, "tau": 2.0, "lambda": 0.6, "best_epoch": 1}
            for e in (1, 2)]
    fig = curves_figure(hist, "run", attack="pgd", attack_label="PGD-3")
    fig.canvas.draw()
    ax, ax2 = fig.axes[:2]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "%" in ax.get_ylabel() and max(max(line.get_ydata()) for line in ax.lines[:4]) == pytest.approx(50)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "student PGD-3" in labels and "teacher (WA) PGD-3" in labels
    assert ax2.get_title() == "training loss and ADR schedules"
    plt.close(fig)


def test_analyze_summary_names_and_aligns_its_columns():
    from art_adr.cli.analyze import summary_lines

    model = {"accuracy": 0.593, "adv_accuracy": 0.397, "ece_clean": 0.217, "ece_adv": 0.069, "js": {"mean": 0.015},
             "entropy": {"ood": {"mean": 2.04}}, "weight_landscape": [{"losses": [1.52, 2.88]}]}
    lines = summary_lines({"models": {"AT": model, "AT+ADR": {**model, "accuracy": 0.487}}})
    assert lines[0].split() == ["model", "clean", "PGD", "ECE", "clean", "ECE", "adv", "JS", "H_ood", "weight",
                                "loss"]
    assert len({len(line) for line in lines}) == 1  # aligned
    assert lines[0].index("ECE adv") + len("ECE adv") == lines[1].index("0.069") + len("0.069")


def test_analysis_histograms_have_no_unlabelled_overlap_colour():
    import matplotlib.pyplot as plt
    import numpy as np

    from art_adr.analysis import step_histogram

    fig, ax = plt.subplots()
    step_histogram(ax, np.array([0.1, 0.2, 0.3]), "a", (0, 1))
    step_histogram(ax, np.array([0.2, 0.3, 0.4]), "b", (0, 1))
    assert all(not p.get_fill() for p in ax.patches)  # outlines: no translucent blend outside the legend
    plt.close(fig)


def test_input_landscape_colour_scale_spans_the_slopes_shown():
    import numpy as np

    from art_adr.analysis import slope_norm

    slopes = np.linspace(0, 0.01, 25).reshape(5, 5)
    norm = slope_norm({"models": {"A": {"inputs": [{"slope": slopes}]}, "B": {"inputs": [{"slope": slopes / 2}]}}})
    assert norm.vmin == 0 and norm.vmax == pytest.approx(np.percentile(np.r_[slopes.ravel(), slopes.ravel() / 2], 99))
    assert norm(0.005) > 0.4  # mid-range slopes get mid-range colours, not the bottom of a [0, 1] scale


def test_cli_help_imports_no_torch():
    code = ("import sys; import art_adr.cli.train, art_adr.cli.sweep, art_adr.cli.benchmark; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.stdout.strip() == "False", res.stdout + res.stderr
