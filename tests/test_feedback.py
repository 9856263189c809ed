"""Feedback (issue 29 §5): bad paths and numbers are errors that name the option and come before torch is
imported; progress bars and log lines; plots with integer epoch ticks and fixed 0–100 % scales."""

from __future__ import annotations

import json
import subprocess
import sys

# Each case runs through click's CliRunner in one fresh interpreter; after each, whether torch was imported.
_BEFORE_TORCH = """
import json, sys
from click.testing import CliRunner
from art_adr.cli import main
out = []
for args in json.loads(sys.argv[1]):
    res = CliRunner().invoke(main, args)
    out.append({"args": args, "code": res.exit_code, "output": res.output, "torch": "torch" in sys.modules})
    if out[-1]["torch"]:
        break
print(json.dumps(out))
"""


def _before_torch(cases: list[list[str]], cwd) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", _BEFORE_TORCH, json.dumps(cases)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


BAD_INPUTS = [  # (arguments, what the one error line must say)
    (["evaluate", "runs/nonexistent"], "checkpoint not found: runs/nonexistent"),
    (["evaluate", "run", "--eps", "2"], "Invalid value for '--eps': eps must be in (0, 1]"),
    (["evaluate", "run", "--eps-step", "eight"], "Invalid value for '--eps-step': not a number: 'eight'"),
    (["train", "--lr", "abc"], "Invalid value for '--lr': not a number: 'abc'"),
    (["train", "--eps", "8/x"], "Invalid value for '--eps': not a number: '8/x'"),
    (["train", "--ema-decay", "0.99.9"], "Invalid value for '--ema-decay': not a number"),
    (["train", "--temperature", "2.5,abc"], "Invalid value for '--temperature': not a number: 'abc'"),
    (["train", "--interpolation", "0.1,0.2,0.3"], "Invalid value for '--interpolation'"),
    (["train", "--set", "lr=abc"], "lr: not a number: 'abc'"),
    (["train", "--recipe", "no-such-recipe"], "unknown recipe name 'no-such-recipe'"),
    (["train", "--lr", "-1"], "lr"),
    (["train", "--extra-data", "nowhere.npz"], "Invalid value for '--extra-data': file not found: nowhere.npz"),
    (["train", "--resume", "--out", "runs/nonexistent"], "runs/nonexistent/config.yaml not found"),
    (["analyze", "runs/nonexistent"], "runs/nonexistent"),
    (["analyze", "run", "--radius", "abc"], "Invalid value for '--radius': not a number: 'abc'"),
    (["sweep", "--recipe", "fashion-mnist-at-adr", "--temperatures", "1,abc"],
     "Invalid value for '--temperatures': not a number: 'abc'"),
    (["sweep", "--recipe", "no-such-recipe"], "unknown recipe name 'no-such-recipe'"),
    (["sweep", "--recipe", "fashion-mnist-at-adr", "--seeds", "a,b"], "--seeds: seeds must be integers"),
    (["benchmark", "--dataset", "fashion-mnist", "--seeds", "a,b"], "--seeds: seeds must be integers"),
]


def test_bad_paths_and_numbers_fail_naming_them_before_torch_is_imported(tmp_path):
    (tmp_path / "run").mkdir()  # an existing run folder for the cases whose other option is bad
    results = _before_torch([args for args, _ in BAD_INPUTS], tmp_path)
    assert len(results) == len(BAD_INPUTS), f"torch imported by: art-adr {' '.join(results[-1]['args'])}"
    for (args, text), res in zip(BAD_INPUTS, results):
        lines = res["output"].strip().splitlines()
        assert res["code"] == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (args, res["output"])
        assert text in lines[0], (args, lines[0])


def test_the_before_torch_check_sees_an_import_of_torch(tmp_path):
    """The check is real: a command that gets as far as loading a checkpoint has imported torch."""
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    res = _before_torch([["evaluate", "x.pt", "--device", "cpu"]], tmp_path)[0]
    assert res["code"] == 2 and res["torch"], res


def _history(epochs: int, acc: float = 0.0) -> list[dict]:
    return [{"epoch": e, "loss": 2.0, "train_robust_acc": acc, "clean_acc": acc, "pgd_acc": acc,
             "teacher_clean_acc": acc, "teacher_pgd_acc": acc, "apgd_acc": acc, "teacher_apgd_acc": acc,
             "best_epoch": 1} for e in range(1, epochs + 1)]


def _integer_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_benchmark_curves_have_integer_epochs_and_a_fixed_0_to_100_scale():
    import matplotlib.pyplot as plt

    from art_adr.experiments.table1 import methods_figure

    for histories in ({"AT": _history(1)}, {"AT": _history(3, 0.4), "AT + ADR": _history(3, 0.5)}):
        fig = methods_figure(histories, "fashion-mnist")
        fig.canvas.draw()
        assert len(fig.axes) == 3  # the selecting attack (APGD), PGD-10, clean
        for ax in fig.axes:
            assert ax.get_ylim() == (0.0, 100.0), ax.get_title()
            ticks = _integer_ticks(ax)
            assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
        plt.close(fig)


def test_run_curves_have_a_fixed_0_to_100_scale():
    import matplotlib.pyplot as plt

    from art_adr.runs import curves_figure

    fig = curves_figure(_history(1), "run")
    fig.canvas.draw()
    assert fig.axes[0].get_ylim() == (0.0, 100.0)
    assert all(float(t).is_integer() for t in _integer_ticks(fig.axes[0]))
    plt.close(fig)


def test_the_calibration_legend_and_titles_cover_no_panel(tmp_path):
    """Three models with the longest attack name: the legend sits below the panels and every title inside the
    figure, clear of the other titles."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from art_adr.analysis.plots import calibration_figure, plot_calibration

    edges = np.linspace(0, 1, 11)
    curve = {"bin_edges": edges, "counts": np.full(10, 5), "accuracy": np.linspace(0.05, 0.95, 10),
             "confidence": np.linspace(0.1, 1.0, 10)}
    outputs = {"reliability_clean": curve, "reliability_adv": curve, "ece_clean": 0.05, "ece_adv": 0.05}
    results = {"models": {"Standard": {"outputs": outputs}, "AT": {"outputs": outputs},
                          "AT+ADR": {"outputs": outputs}},
               "settings": {"max_iter": 10, "output_attack": "APGD-CE-10+APGD-T-10×3"}}
    fig = calibration_figure(results)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    legend = fig.legends[0].get_window_extent(renderer)
    assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    for i, title in enumerate(titles):
        assert fig.bbox.contains(title.x0, title.y0) and fig.bbox.contains(title.x1, title.y1), fig.axes[i].get_title()
        assert not any(title.overlaps(other) for other in titles[i + 1:]), fig.axes[i].get_title()
    assert plot_calibration(results, tmp_path / "calibration.png").is_file()


def test_benchmark_jobs_says_what_it_evaluates_before_the_bar(monkeypatch, capsys):
    """``benchmark --jobs 2``: the "== evaluating …" lines come before the bar of the parallel evaluations, once."""
    from types import SimpleNamespace

    from art_adr.experiments import table1

    events = []
    monkeypatch.setattr(table1, "warm_evaluations", lambda tasks, jobs, verbose: events.append(("bar", len(tasks))))
    monkeypatch.setattr(table1, "evaluate_run", lambda *a, **k: {})
    monkeypatch.setattr(table1, "_row", lambda *a, **k: {})
    monkeypatch.setattr(table1, "read_history", lambda run_dir: [])
    monkeypatch.setattr(table1, "say", lambda text, err=False: events.append(("say", text)))
    entries = [(label, "r", f"runs/{label}", SimpleNamespace(seed=0, best_metric="pgd_acc"))
               for label in ("AT", "AT + ADR")]
    table1.evaluate_entries(entries, "fashion-mnist", ["student", "teacher"], ["aa"], n_examples=8,
                            version="standard", device="cpu", verbose=True, jobs=2)
    assert [kind for kind, _ in events] == ["say"] * 4 + ["bar"], events
    assert events[0][1] == "== evaluating AT (student, seed 0; best and final: clean, aa)"
    events.clear()
    table1.evaluate_entries(entries, "fashion-mnist", ["student"], ["aa"], n_examples=8, version="standard",
                            device="cpu", verbose=True, jobs=1)  # one at a time: each header before its own bars
    assert [kind for kind, _ in events] == ["say", "say"]


def test_log_lines_go_through_tqdm_write_and_keep_their_order_with_a_bar(capsys):
    from tqdm import tqdm

    from art_adr.console import say

    bar = tqdm(total=3, desc="bar", file=sys.stderr)
    bar.update(1)
    say("first")
    say("second", err=True)
    bar.close()
    out, err = capsys.readouterr()
    assert out == "first\n" and "second\n" in err
    assert err.index("second\n") > err.index("bar")  # the bar was drawn, cleared, the line written, redrawn


def test_training_shows_a_validation_bar_unless_quiet(tmp_path):
    from click.testing import CliRunner

    from art_adr.cli import main

    args = ["train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 96, shape: [1, 8, 8], num_classes: 4}",
            "--val-size", "32", "--epochs", "1", "--max-iter", "1", "--batch-size", "32", "--set", "eval_max_iter=1",
            "--set", "eval_batch_size=8", "--device", "cpu"]
    loud = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert loud.exit_code == 0, loud.output
    assert "validation 1:" in loud.output and "/4 [" in loud.output  # 32 images in batches of 8
    # the epoch's line comes after its validation bar, at the start of a line (the bar's carriage return first)
    line = loud.output.index("epoch 1/1 loss")
    assert loud.output.rindex("validation 1") < line and loud.output[line - 1] in "\r\n", repr(loud.output[-300:])
    quiet = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "-q"])
    assert quiet.exit_code == 0 and "validation" not in quiet.output, quiet.output
