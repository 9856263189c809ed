"""``art-adr analyze``: output, calibration and loss-landscape figures (ADR §3.2, §5.5, App. E)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from art_adr.attacks import attacks_help, example_attack_names
from art_adr.cli import NUMBER, quiet_option

ANALYSES = ("outputs", "weights", "inputs")


def _default_label(path: str) -> str:
    p = Path(path)
    if p.is_dir() or p.stem in ("best", "final", "last"):
        run = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return run.name if p.is_dir() else f"{run.name}/{p.stem}"
    return p.stem


def _labels(paths: list[str], given: tuple[str, ...]) -> list[str]:
    if given and len(given) != len(paths):
        raise click.BadParameter(f"got {len(given)} --label for {len(paths)} models", param_hint="--label")
    labels = list(given) if given else [_default_label(p) for p in paths]
    seen: dict[str, int] = {}
    for i, name in enumerate(labels):
        if name in seen:
            seen[name] += 1
            labels[i] = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
    return labels


def _sample(ds: Any, n: int, seed: int, device: str) -> tuple[Any, Any, int]:
    """A seeded random sample of ``n`` examples of ``ds`` (sorted indices) as float ``[0, 1]`` tensors."""
    import numpy as np
    import torch

    idx = np.random.default_rng(seed).permutation(len(ds.y))[: min(n, len(ds.y))]
    idx.sort()
    x = torch.as_tensor(np.asarray(ds.x[idx]), dtype=torch.float32).div_(255.0).to(device)
    y = torch.as_tensor(np.asarray(ds.y[idx]), dtype=torch.long).to(device)
    return x, y, int(ds.num_classes)


def _ood(name: str, shape: tuple[int, ...], data_dir: str | None, n: int, seed: int, device: str) -> Any:
    from art_adr.analysis import adapt_images, digits_ood

    if name.lower() == "none":
        return None
    if name.lower() == "digits":
        return digits_ood(shape, n=n, seed=seed).to(device)
    from art_adr.data import load_dataset

    x, _, _ = _sample(load_dataset(name, "test", data_dir=data_dir), n, seed, "cpu")
    return adapt_images(x, shape).to(device)


@click.command("analyze",
               short_help="The paper's analyses of trained models: calibration, entropy, JS divergence, landscapes.")
@click.argument("run_or_checkpoint", type=click.Path(exists=True))
@click.option("--vs", "others", multiple=True, type=click.Path(exists=True),
              help="Further run directories / checkpoints to compare side by side (repeatable).")
@click.option("--label", "labels", multiple=True, help="Legend name per model, in order (repeatable).")
@click.option("--which", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Weights to analyse: the student or the EMA teacher.")
@click.option("--dataset", "-d", default=None, show_default="the first checkpoint's dataset", help="Test set.")
@click.option("--data-dir", type=click.Path(), default=None, show_default="the run's", help="Where the dataset lives.")
@click.option("--ood", default="digits", show_default=True,
              help="OOD set: 'digits' (scikit-learn 8×8, resized), a dataset name, or 'none'.")
@click.option("--n-examples", type=click.IntRange(1), default=500, show_default=True,
              help="Test examples (a seeded random sample) for the entropy, JS and calibration analyses.")
@click.option("--n-ood", type=click.IntRange(1), default=500, show_default=True, help="OOD examples.")
@click.option("--norm", type=click.Choice(["inf", "2"]), default=None, show_default="the first run's norm",
              help="Threat model of the PGD attack: L∞ (inf) or L2 (2).")
@click.option("--eps", type=NUMBER, default=None, show_default="the first run's training ε, else 8/255",
              help="Radius, e.g. 0.1 or 8/255.")
@click.option("--eps-step", type=NUMBER, default=None,
              show_default="the run's step at its ε, else min(ε, 2.5·ε/max_iter)",
              help="PGD step size α.")
@click.option("--eval-max-iter", type=click.IntRange(1), default=10, show_default=True, help="PGD iterations.")
@click.option("--output-attack", type=click.Choice(example_attack_names()), default="pgd", show_default=True,
              help="Attack whose adversarial examples the entropy, JS and calibration analyses measure: "
                   f"{attacks_help(example_attack_names())}; k = --eval-max-iter (the weight landscape keeps PGD).")
@click.option("--bins", type=click.IntRange(1), default=15, show_default=True, help="ECE confidence bins.")
@click.option("--directions", type=click.IntRange(1), default=1, show_default=True,
              help="Random weight directions for the weight loss landscape.")
@click.option("--magnitude", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Largest |α| along each weight direction.")
@click.option("--points", type=click.IntRange(2), default=11, show_default=True,
              help="α values per direction.")
@click.option("--weight-examples", type=click.IntRange(1), default=256, show_default=True,
              help="Test examples per point of the weight landscape (each re-attacked with PGD).")
@click.option("--input-examples", type=click.IntRange(1), default=3, show_default=True,
              help="Images for the input loss landscape.")
@click.option("--grid", type=click.IntRange(2), default=21, show_default=True,
              help="Points per axis of the input loss landscape.")
@click.option("--radius", type=NUMBER, default=None, show_default="2ε",
              help="Half-width of the input landscape's axes.")
@click.option("--style", type=click.Choice(["surface", "contour"]), default="surface", show_default=True,
              help="Input landscape plot style.")
@click.option("--skip", multiple=True, type=click.Choice(ANALYSES),
              help="Analyses to leave out: outputs (entropy/JS/ECE), weights, inputs (repeatable).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="Examples per batch.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the example sample, PGD starts and landscape directions.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="analysis", show_default=True,
              help="Folder for the PNGs and analysis.json.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@quiet_option("No progress bars.")
def analyze_command(
    run_or_checkpoint: str, others: tuple[str, ...], labels: tuple[str, ...], which: str, dataset: str | None,
    data_dir: str | None, ood: str, n_examples: int, n_ood: int, norm: str | None, eps: float | None,
    eps_step: float | None, eval_max_iter: int, output_attack: str, bins: int, directions: int, magnitude: float,
    points: int, weight_examples: int,
    input_examples: int, grid: int, radius: float | None, style: str, skip: tuple[str, ...], batch_size: int,
    seed: int, out: str, device: str, quiet: bool,
) -> None:
    """Entropy / JS / calibration histograms and weight & input loss landscapes of one or more models.

    \b
    Example:
      art-adr analyze runs/standard --vs runs/at --vs runs/at-adr --label Standard --label AT --label AT+ADR
    """
    import numpy as np
    import torch

    from art_adr.analysis import analyze_models, plot_all, summarize
    from art_adr.cli import resolve_cli_device
    from art_adr.evaluation import checkpoint_info

    paths = [run_or_checkpoint, *others]
    names = _labels(paths, labels)
    dev = resolve_cli_device(device)
    torch.manual_seed(seed)
    models, ckpts = _load_models(names, paths, which, dev)
    dataset, x, y = _test_sample(names, ckpts, dataset, data_dir, n_examples, seed, dev)
    spec = _attack_spec(ckpts[0], norm, eps, eps_step, eval_max_iter)
    x_ood = None
    analyses = [a for a in ANALYSES if a not in skip]
    if "outputs" in analyses:
        try:
            x_ood = _ood(ood, tuple(x.shape[1:]), data_dir, n_ood, seed, dev)
        except (FileNotFoundError, ValueError, KeyError, ImportError) as exc:
            raise click.ClickException(f"cannot load the OOD set {ood!r}: {exc}") from None
    results = analyze_models(
        models, x, y, spec=spec, x_ood=x_ood, n_bins=bins,
        magnitudes=np.linspace(-magnitude, magnitude, points).tolist(), directions=directions,
        weight_examples=weight_examples, input_examples=input_examples, grid=grid, radius=radius,
        analyses=analyses, batch_size=batch_size, seed=seed, progress=not quiet, output_attack=output_attack,
    )
    results["settings"].update({"dataset": dataset, "ood": ood if x_ood is not None else None, "which": which,
                                "models": dict(zip(names, paths)),
                                "checkpoints": {n: checkpoint_info(p, c) for n, p, c in zip(names, paths, ckpts)}})
    out_dir = Path(out)
    figures = plot_all(results, out_dir, style=style)
    summary = summarize(results)
    summary["figures"] = [p.name for p in figures]
    (out_dir / "analysis.json").write_text(json.dumps(summary, indent=1))
    _report(summary, out_dir, figures)


def _load_models(names: list[str], paths: list[str], which: str, device: str) -> tuple[dict[str, Any], list[dict]]:
    """``({label: model}, [checkpoint dict])`` of every path; an unreadable one is one error naming it."""
    from art_adr.checkpoint import CheckpointError, load_model

    models, ckpts = {}, []
    for name, path in zip(names, paths):
        try:
            model, ckpt = load_model(path, which=which, device=device)
        except (CheckpointError, ValueError) as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        models[name] = model
        ckpts.append(ckpt)
    return models, ckpts


def _test_sample(names: list[str], ckpts: list[dict], dataset: str | None, data_dir: str | None, n_examples: int,
                 seed: int, device: str) -> tuple[str, Any, Any]:
    """``(dataset, x, y)``: the seeded sample of the first checkpoint's test set that every model must fit."""
    from art_adr.evaluation import load_split

    dataset = dataset or ckpts[0]["model"].get("dataset")
    if not dataset:
        raise click.UsageError("the checkpoint names no dataset; pass --dataset")
    try:  # the test set as `evaluate` loads it (the run's data_dir and dataset options)
        x, y, num_classes = _sample(load_split(ckpts[0], "test", dataset, data_dir), n_examples, seed, device)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot load the {dataset} test set: {exc}") from None
    for name, ckpt in zip(names, ckpts):
        if int(ckpt["model"]["num_classes"]) != num_classes:
            raise click.ClickException(
                f"{name} has {ckpt['model']['num_classes']} classes, {dataset} has {num_classes}")
    return dataset, x, y


def _attack_spec(ckpt: dict[str, Any], norm: str | None, eps: float | None, eps_step: float | None,
                 eval_max_iter: int) -> Any:
    """The first run's own attack (norm, ε, step), as `art-adr evaluate` uses it, with the options' changes."""
    from art_adr.attacks import AttackSpec

    changes: dict[str, Any] = {"norm": norm, "eps": eps, "steps": eval_max_iter}
    if eps_step is not None:
        changes["eps_step"] = eps_step
    try:
        return AttackSpec.from_config(ckpt.get("config") or {}, **changes)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """One aligned row per model under a header naming every column (accuracies as fractions, ECE of clean and
    of adversarial outputs, mean JS divergence, mean OOD entropy, weight-landscape loss range)."""
    head = ["model", "clean", "PGD", "ECE clean", "ECE adv", "JS", "H_ood", "weight loss"]
    rows = []
    for name, m in summary["models"].items():
        row = [name] + [""] * (len(head) - 1)
        if "accuracy" in m:
            row[1:6] = [f"{m['accuracy']:.3f}", f"{m['adv_accuracy']:.3f}", f"{m['ece_clean']:.3f}",
                        f"{m['ece_adv']:.3f}", f"{m['js']['mean']:.3f}"]
            if "ood" in m["entropy"]:
                row[6] = f"{m['entropy']['ood']['mean']:.2f}"
        if "weight_landscape" in m:
            losses = m["weight_landscape"][0]["losses"]
            row[7] = f"{min(losses):.2f}..{max(losses):.2f}"
        rows.append(row)
    used = [i for i in range(len(head)) if i == 0 or any(r[i] for r in rows)]
    widths = {i: max(len(head[i]), *(len(r[i]) for r in rows)) for i in used}

    def fmt(cells: list[str]) -> str:
        return "  ".join(cells[i].ljust(widths[i]) if i == 0 else cells[i].rjust(widths[i]) for i in used).rstrip()

    return [fmt(head)] + [fmt(r) for r in rows]


def _report(summary: dict[str, Any], out: Path, figures: list[Path]) -> None:
    for line in summary_lines(summary):
        click.echo(line)
    for p in figures:
        click.echo(f"wrote {p}")
    click.echo(f"wrote {out / 'analysis.json'}")
