"""``art-adr sweep``: ADR's τ × λ grid (paper §5.6, Fig. 5), trained resumably and selected on a hold-out."""

from __future__ import annotations

from typing import Any

import click

from art_adr.attacks import attacks_help, robust_attack_names
from art_adr.cli import NumberList, parse_sets, quiet_option, resolve_cli_device
from art_adr.cli.launch_options import launch_options, launcher_from_options, run_launched


def _score_attack(text: str) -> str:
    """``--attacks`` → the attack that scores the cells: the registered attack listed (at most one), else ``val``
    (the runs' own validation score, always there)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    robust = [n for n in dict.fromkeys(names) if n != "val"]
    if not names or len(robust) > 1 or any(n not in robust_attack_names() for n in robust):
        raise click.BadParameter(f"{text!r}: val and at most one of {', '.join(robust_attack_names())}",
                                 param_hint="--attacks")
    return robust[0] if robust else "val"


@click.command("sweep", short_help="The τ × λ grid of ADR, each cell scored on the training set's hold-out.")
@click.option("--recipe", "-r", "--config", "-c", required=True,
              help="An ADR recipe (e.g. fashion-mnist-at-adr); its τ/λ are replaced. -c/--config: the same option "
                   "(timm's name).")
@click.option("--temperatures", type=NumberList(), default=None, show_default="the recipe's τ start",
              help="The grid's τ start values, a comma list, e.g. 1.5,2.0,2.5 (train's --temperature is one "
                   "start,end pair).")
@click.option("--interpolations", type=NumberList(), default=None, show_default="the recipe's λ start",
              help="The grid's λ start values, a comma list, e.g. 0.5,0.7,0.9.")
@click.option("--ends", type=click.Choice(["gap", "constant"]), default="gap", show_default=True,
              help="End values of the cosine schedules: 'gap' keeps the recipe's end − start (τ_end ≥ 0.1, λ_end "
                   "clipped to [0, 1]); 'constant' uses end = start (no annealing, the paper's Fig. 5).")
@click.option("--temperature-end", type=float, default=None, show_default="from --ends",
              help="Fix τ_end for every cell (overrides --ends).")
@click.option("--interpolation-end", type=float, default=None, show_default="from --ends",
              help="Fix λ_end for every cell (overrides --ends).")
@click.option("--which", type=click.Choice(["student", "teacher"]), default=None, show_default="the recipe's",
              help="Model scored and selected on (sets best_metric).")
@click.option("--epoch", type=click.Choice(["best", "final"]), default="best", show_default=True,
              help="Score the best validation epoch (best.pt) or the last one (final.pt).")
@click.option("--attacks", default="val", show_default=True,
              help="Hold-out scores, a comma list: val (always: the runs' per-epoch hold-out accuracy under their "
                   "validation attack, --set val_attack=..., default apgd) and at most one attack of "
                   f"{attacks_help(robust_attack_names())} on --n-examples hold-out images (e.g. aa). The cells are "
                   "selected by that attack when it is listed, else by val.")
@click.option("--n-examples", type=click.IntRange(min=1), default=None, show_default="the whole hold-out",
              help="With an attack besides val: first N hold-out images.")
@click.option("--aa-version", type=click.Choice(["standard", "rand", "paper"]), default="standard", show_default=True,
              help="AutoAttack version of --attacks aa (see `art-adr evaluate --help`).")
@click.option("--seeds", default="0", show_default=True, help="Training seeds per cell, e.g. 0,1,2 (scores averaged).")
@click.option("--epochs", type=int, show_default="the recipe's", help="Budget: epochs per run.")
@click.option("--subset", type=int, show_default="the recipe's", help="Budget: training examples per run.")
@click.option("--val-size", type=click.IntRange(min=0), show_default="the recipe's",
              help="Budget: images of each run's validation hold-out (taken from the training set).")
@click.option("--data-dir", type=click.Path(), show_default="the recipe's", help="Where the dataset lives.")
@click.option("--download/--no-download", default=None, show_default="the recipe's",
              help="Download the dataset if missing (needs internet).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (training and scoring).")
@click.option("--amp", type=click.Choice(["bf16", "fp16", "none"]), show_default="the recipe's",
              help="Mixed precision of training.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other training option, for every run.")
@click.option("--out", "-o", type=click.Path(file_okay=False), show_default="sweeps-out/<recipe>",
              help="Output folder.")
@launch_options
@quiet_option()
def sweep_command(recipe: str, temperatures: list[float] | None, interpolations: list[float] | None, ends: str,
                  temperature_end: float | None, interpolation_end: float | None, which: str | None, epoch: str,
                  attacks: str, n_examples: int | None, aa_version: str, seeds: str, epochs: int | None,
                  subset: int | None, val_size: int | None, data_dir: str | None, download: bool | None, device: str,
                  amp: str | None, sets: tuple[str, ...], out: str | None, quiet: bool, **launch: Any) -> None:
    """Train one run per (τ start, λ start) cell and seed under OUT/runs/, resumably (finished runs are reused,
    interrupted ones resumed), score every cell on the validation hold-out of the training set (never on test
    images), select the best, and write sweep.json (every cell, the selected one, the rule), sweep.md and
    sweep.png (τ × λ heat map of the hold-out validation score, and of the attack of --attacks, e.g. aa)."""
    from art_adr.config import ConfigError, parse_seeds, resolve_config

    attack = _score_attack(attacks)
    try:
        seed_list = parse_seeds(seeds)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--seeds") from None
    overrides: dict[str, Any] = {}
    for key, value in (("epochs", epochs), ("subset", subset), ("val_size", val_size), ("data_dir", data_dir),
                       ("download", download), ("amp", amp), ("device", device)):
        if value is not None:
            overrides[key] = value
    overrides.update(parse_sets(sets))
    bad = sorted({"temperature", "interpolation", "seed"} & set(overrides))
    if bad:
        raise click.UsageError(f"--set {bad[0]}=... is what the sweep varies; use --temperatures/--interpolations/"
                               "--seeds")
    try:  # the recipe and the options, before torch is imported
        base = resolve_config(recipe, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from art_adr.experiments import run_sweep

    eval_device = resolve_cli_device(device)
    launcher, loggers = launcher_from_options(launch)
    taus = temperatures or [base.temperature[0]]
    lams = interpolations or [base.interpolation[0]]
    try:
        result = run_launched(lambda: run_sweep(
                           recipe, out or f"sweeps-out/{recipe}", temperatures=taus, interpolations=lams, ends=ends,
                           temperature_end=temperature_end, interpolation_end=interpolation_end, seeds=seed_list,
                           model=which, epoch=epoch, attack=attack, n_examples=n_examples, aa_version=aa_version,
                           overrides=overrides, device=eval_device, verbose=not quiet, launcher=launcher,
                           loggers=loggers))
    except ValueError as exc:  # ConfigError, RunError, DatasetError, CheckpointError
        raise click.ClickException(str(exc)) from None
    if result is None:
        return
    click.echo(result["markdown"])
    sel = result["selected"]
    click.echo(f"selected: τ {sel['temperature'][0]:g}→{sel['temperature'][1]:g}, λ {sel['interpolation'][0]:g}→"
               f"{sel['interpolation'][1]:g} (hold-out score {sel['score']:.2f} %)")
    click.echo("written: " + ", ".join(str(p) for p in result["files"].values()))
