"""``art-adr benchmark``: the paper's Table 1 experiment (AT, AT+ADR, TRADES, TRADES+ADR) end to end."""

from __future__ import annotations

from typing import Any

import click

from art_adr.attacks import attacks_help, robust_attack_names
from art_adr.cli import LateHelpOption, parse_sets, quiet_option, resolve_cli_device
from art_adr.cli.launch_options import launch_options, launcher_from_options, run_launched
from art_adr.methods import METHODS


def _recipe_datasets() -> str:
    """The registered datasets that have ``<dataset>-at`` recipes, for ``--dataset`` (read when the help is shown)."""
    from art_adr.config import list_recipes
    from art_adr.data import dataset_names
    from art_adr.experiments.table1 import CPU_DEFAULTS

    recipes = list_recipes()
    return ", ".join(f"{d} (with CPU-sized budget defaults)" if d in CPU_DEFAULTS else d
                     for d in dataset_names() if f"{d}-at" in recipes) + "."


@click.command("benchmark",
               short_help="The Table-1 benchmark: methods × seeds trained, best and final checkpoints evaluated.")
@click.argument("more_runs", nargs=-1, type=click.Path(exists=True, file_okay=False), metavar="[RUN_DIR]...")
@click.option("--dataset", "-d", cls=LateHelpOption,
              show_default="none: give this, --recipe-prefix, --recipes or --runs",
              help="Required unless --recipe-prefix, --recipes or --runs is given: the dataset whose "
                   "<dataset>-<method> recipes to train, a registered dataset with recipes:",
              late_help=_recipe_datasets)
@click.option("--recipe-prefix", show_default="<dataset>",
              help="Use recipes <prefix>-<method> (e.g. fashion-mnist-ro → fashion-mnist-ro-at, "
                   "fashion-mnist-ro-at-adr, ...) instead of <dataset>-<method>; the recipes' own budgets apply.")
@click.option("--recipes", "recipe_names", show_default="from --methods",
              help="Comma list of recipe names to run as the table's rows (replaces --methods/--dataset); the "
                   "recipes' own budgets apply.")
@click.option("--out", "-o", type=click.Path(file_okay=False), show_default="benchmarks-out/<dataset or prefix>",
              help="Output folder.")
@click.option("--methods", default="at,at-adr,trades,trades-adr", show_default=True,
              help="Comma-separated training methods (art_adr.methods), each optionally with -adr: "
                   + ", ".join(f"{m}, {m}-adr" for m in METHODS.names()) + ".")
@click.option("--wa", is_flag=True, help="Report the EMA teacher (+WA) and select by its validation-attack accuracy.")
@click.option("--awp", is_flag=True, help="Add AWP (implies --wa), as in the paper's Table 2.")
@click.option("--runs", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR [DIR ...]",
              help="Finished run directories: only evaluate and tabulate them (--runs A B, or --runs A --runs B).")
@click.option("--epochs", type=int, show_default="the recipe's; --dataset fashion-mnist: 4",
              help="Budget: epochs per method.")
@click.option("--subset", type=int, show_default="the recipe's; --dataset fashion-mnist: 8000",
              help="Budget: training examples per method.")
@click.option("--n-examples", type=click.IntRange(min=1), show_default="all; --dataset fashion-mnist: 100",
              help="Evaluate the first N test images (RobustBench order).")
@click.option("--val-size", type=click.IntRange(min=0), show_default="the recipe's; --dataset fashion-mnist: 500",
              help="Budget: images of each run's validation hold-out (taken from the training set).")
@click.option("--attacks", default="aa", show_default=True,
              help=f"Comma list of robust attacks from {attacks_help(robust_attack_names())}, k = 10; clean "
                   "accuracy is always measured: e.g. pgd,aa gives clean, PGD-10 and AutoAttack in one table.")
@click.option("--aa-version", type=click.Choice(["standard", "rand", "paper"]), default="standard",
              show_default=True, help="AutoAttack version; 'paper': the ADR code's protocol (10-iteration APGD-CE, "
                                      "APGD-T, FAB-T + Square 5000; see `art-adr evaluate --help`).")
@click.option("--which", type=click.Choice(["student", "teacher", "both"]), default="both", show_default=True,
              help="Models of every run to evaluate: the student, the EMA teacher (\"+WA\") or both.")
@click.option("--data-dir", type=click.Path(), show_default="the recipe's", help="Where the dataset lives.")
@click.option("--download/--no-download", default=None, show_default="the recipe's",
              help="Download the dataset if missing (needs internet).")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N (training and evaluation).")
@click.option("--amp", type=click.Choice(["bf16", "fp16", "none"]), show_default="the recipe's",
              help="Mixed precision of training.")
@click.option("--seed", type=int, default=0, show_default=True, help="One training seed (= --seeds N).")
@click.option("--seeds", show_default="--seed", help="Training seeds, e.g. 0,1,2 or 0-4: every method × seed is "
              "trained under runs/<recipe>-s<seed>; the table shows mean ± std over seeds.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other training option, for all methods.")
@launch_options
@quiet_option()
def benchmark_command(more_runs: tuple[str, ...], dataset: str | None, recipe_prefix: str | None,
                      recipe_names: str | None, out: str | None, methods: str, wa: bool, awp: bool,
                      runs: tuple[str, ...], epochs: int | None, subset: int | None, n_examples: int | None,
                      val_size: int | None, attacks: str, aa_version: str, which: str, data_dir: str | None,
                      download: bool | None, device: str, amp: str | None, seed: int, seeds: str | None,
                      sets: tuple[str, ...], quiet: bool, **launch: Any) -> None:
    """Train each method with the dataset's recipe, keep best (selected on the hold-out by the validation attack)
    and final checkpoints, evaluate both (student and EMA teacher) in the runs' threat model, and write
    table1.{md,csv,json} (per-seed rows and mean ± std) and curves.png. Re-running reuses finished runs and cached
    evaluations and resumes broken runs.

    \b
    Examples:
      art-adr benchmark --dataset fashion-mnist
      art-adr benchmark --runs runs/a runs/b --out tables/     # only evaluate + tabulate
      art-adr benchmark --dataset cifar100 --seeds 0,1,2 --launcher slurm --slurm-partition gpu --logger tensorboard"""
    runs, recipes = _sources(more_runs, runs, dataset, recipe_names, recipe_prefix)
    attack_list = _robust_attacks(attacks)
    model_list = ["student", "teacher"] if which == "both" else [which]
    seed_list = _seed_list(seeds, seed)
    from art_adr.checkpoint import CheckpointError  # torch: after the options were checked
    from art_adr.config import ConfigError
    from art_adr.data import DatasetError
    from art_adr.experiments import CPU_DEFAULTS, run_benchmark
    from art_adr.runs import RunError

    # the CPU-sized budget belongs to the <dataset>-<method> recipes, not to named ones
    defaults: dict[str, Any] = {} if recipes or recipe_prefix else CPU_DEFAULTS.get(dataset or "", {})
    budget = {"epochs": epochs, "subset": subset, "val_size": val_size}
    overrides = _overrides(seed_list[0], {k: v if v is not None else defaults.get(k) for k, v in budget.items()},
                           {"data_dir": data_dir, "download": download, "amp": amp, "device": device}, sets)
    n_examples = n_examples if n_examples is not None else defaults.get("n_examples")
    eval_device = resolve_cli_device(device)
    launcher, loggers = launcher_from_options(launch)
    out = out or f"benchmarks-out/{recipe_prefix or dataset or 'runs'}"
    try:
        result = run_launched(lambda: run_benchmark(
            dataset, out, methods=[m.strip() for m in methods.split(",") if m.strip()], wa=wa or awp, awp=awp,
            runs=runs, overrides=overrides, n_examples=n_examples, attacks=("clean", *attack_list),
            version=aa_version, device=eval_device, seed=seed_list[0], seeds=seed_list, recipes=recipes,
            recipe_prefix=recipe_prefix, models=model_list, verbose=not quiet, launcher=launcher, loggers=loggers,
        ))
    except (ConfigError, RunError, DatasetError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    if result is None:
        return
    click.echo(result["markdown"])
    click.echo("written: " + ", ".join(str(p) for p in result["files"].values()))


def _sources(more_runs: tuple[str, ...], runs: tuple[str, ...], dataset: str | None, recipe_names: str | None,
             recipe_prefix: str | None) -> tuple[tuple[str, ...], list[str]]:
    """``(run directories, recipe names)`` of the table; a usage error when it has no source at all."""
    if more_runs and not runs:
        raise click.UsageError(f"unexpected argument {more_runs[0]!r}: run directories follow --runs "
                               "(--runs A B)")
    runs = (*runs, *more_runs)
    recipes = [r.strip() for r in (recipe_names or "").split(",") if r.strip()]
    if not dataset and not runs and not recipes and not recipe_prefix:
        raise click.UsageError("give --dataset (e.g. fashion-mnist), --recipe-prefix, --recipes or --runs DIR ...")
    return runs, recipes


def _robust_attacks(attacks: str) -> list[str]:
    """``--attacks`` → the robust attacks, in order, without ``clean`` (always measured)."""
    attack_list = [a for a in dict.fromkeys(a.strip() for a in attacks.split(",")) if a and a != "clean"]
    if not attack_list or any(a not in robust_attack_names() for a in attack_list):
        raise click.BadParameter(f"{attacks!r}: a comma list of {', '.join(robust_attack_names())}",
                                 param_hint="--attacks")
    return attack_list


def _seed_list(seeds: str | None, seed: int) -> list[int]:
    """``--seeds`` (``0,1,2``, ``0-4``) or else ``[--seed]``."""
    from art_adr.config import ConfigError, parse_seeds

    try:
        return parse_seeds(seeds) if seeds else [seed]
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--seeds") from None


def _overrides(seed: int, budget: dict[str, Any], options: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """Every run's ``RunConfig`` overrides: the first seed, the budget and options that are set, then ``--set``."""
    overrides: dict[str, Any] = {"seed": seed}
    overrides.update({k: v for k, v in {**budget, **options}.items() if v is not None})
    overrides.update(parse_sets(sets))
    return overrides
