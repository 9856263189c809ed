"""``art-adr train`` and ``art-adr recipes``: launch, resume and list training runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from art_adr.attacks import ATTACKS, validating_attack_names
from art_adr.cli import (
    NUMBER,
    ExistingPath,
    LateHelpOption,
    NumberList,
    disk_full,
    disk_full_error,
    parse_sets,
    quiet_option,
)
from art_adr.data import dataset_names
from art_adr.loggers import LOGGERS
from art_adr.methods import METHODS


def _default(field: str) -> str:
    """``show_default`` of a flag: flags override the recipe, which overrides RunConfig's default
    (art_adr.defaults)."""
    from art_adr.config import FIELDS

    value = FIELDS[field].default
    if callable(FIELDS[field].default_factory):  # dict fields
        value = FIELDS[field].default_factory()
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"the recipe's, else {value}"


def _architectures() -> str:
    """The registered architectures and their help, for ``--arch`` (read when the help is shown)."""
    from art_adr.architectures import ARCHITECTURES

    return ARCHITECTURES.describe() + "."


def _schedule_text(value: Any) -> str:
    return value if isinstance(value, str) else f"{value[0]:g}→{value[1]:g}"


class _TrainCommand(click.Command):
    """``train``, whose ``--resume PATH`` (timm's ``--resume``) says where the path goes: ``--out``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.UsageError as exc:
            at = args.index("--resume") if "--resume" in args else -1
            path = args[at + 1] if 0 <= at < len(args) - 1 else ""
            if not path or path.startswith("-") or "unexpected extra argument" not in exc.format_message():
                raise
            raise click.UsageError(f"--resume takes no path: it continues the run in --out; to continue {path}: "
                                   f"art-adr train --out {path} --resume", ctx) from None


@click.command("train", cls=_TrainCommand,
               short_help="Train one model from a recipe and flags into a resumable run directory.")
@click.option("--recipe", "-r", "--config", "-c", show_default="none: RunConfig's defaults",
              help="Recipe name (see `art-adr recipes`) or a YAML file. -c/--config: the same option (timm's "
                   "name).")
@click.option("--out", "-o", type=click.Path(file_okay=False), show_default="runs/<recipe>-<time>",
              help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option("--dataset", "-d", show_default=_default("dataset"),
              help="A registered dataset (art_adr.data): " + ", ".join(dataset_names()) + ".")
@click.option("--data-dir", type=click.Path(), show_default="the usual places", help="Where the dataset lives.")
@click.option("--download/--no-download", default=None, show_default=_default("download"),
              help="Download the dataset if missing (needs internet).")
@click.option("--arch", cls=LateHelpOption, show_default=_default("arch"),
              help="A registered architecture (art_adr.architectures):", late_help=_architectures)
@click.option("--method", type=click.Choice(METHODS.names()), show_default=_default("method"),
              help="Training method (art_adr.methods).")
@click.option("--adr/--no-adr", default=None, show_default=_default("adr"),
              help="Rectify labels with the EMA teacher (ADR).")
@click.option("--epochs", type=int, show_default=_default("epochs"), help="Epochs of the run.")
@click.option("--batch-size", type=int, show_default=_default("batch_size"), help="Batch size (all processes).")
@click.option("--lr", type=NUMBER, show_default=_default("lr"), help="Peak SGD learning rate.")
@click.option("--eps", type=NUMBER, show_default=_default("eps"), help="Attack radius, e.g. 8/255.")
@click.option("--eps-step", type=NUMBER, show_default="the recipe's, else min(eps, 2.5*eps/max_iter)",
              help="Attack step, e.g. 2/255.")
@click.option("--max-iter", type=int, show_default=_default("max_iter"), help="PGD iterations of the training attack.")
@click.option("--temperature", type=NumberList(auto=True, most=2), show_default=_default("temperature"),
              help="ADR temperature τ start,end, or auto (calibrated on the hold-out under attack).")
@click.option("--interpolation", type=NumberList(auto=True, most=2), show_default=_default("interpolation"),
              help="ADR interpolation λ start,end, or auto (the teacher's hold-out robust accuracy).")
@click.option("--val-attack", metavar="NAME", show_default=_default("val_attack"),
              help="Validation attack that selects best.pt, a registered attack that validates (the run's config "
                   "checks it): " + ", ".join(f"{name} = {ATTACKS[name].label}" for name in validating_attack_names())
                   + ".")
@click.option("--eval-max-iter", type=int, show_default=_default("eval_max_iter"),
              help="PGD iterations of the validation attack.")
@click.option("--ema-decay", type=NUMBER, show_default=_default("ema_decay"), help="EMA teacher decay γ.")
@click.option("--beta", type=NUMBER, show_default=_default("beta"), help="TRADES / MART β.")
@click.option("--awp-rho", type=NUMBER, show_default=_default("awp_rho"), help="AWP radius ρ (0 = off).")
@click.option("--subset", type=int, show_default="the recipe's, else all",
              help="Train on this many (seeded random) training examples.")
@click.option("--val-split", type=click.Choice(["holdout", "test"]), show_default=_default("val_split"),
              help="Validation images: a seeded hold-out of the training set, or the whole test set (as the "
                   "ADR authors).")
@click.option("--val-size", type=int, show_default=_default("val_size"),
              help="Images of the hold-out (--val-split holdout; test is the whole test set).")
@click.option("--eval-every", type=int, show_default=_default("eval_every"), help="Validate every k epochs.")
@click.option("--extra-data", type=ExistingPath("file"), show_default="none",
              help=".npz with image/label arrays (DDPM data).")
@click.option("--extra-fraction", type=NUMBER, show_default=_default("extra_fraction"),
              help="Fraction of each batch from --extra-data.")
@click.option("--extra-sampling", type=click.Choice(["shuffle", "replacement"]),
              show_default=_default("extra_sampling"),
              help="How the --extra-data images are drawn: shuffle (the ADR authors' loader: a permutation per "
                   "pass, cycled) or replacement (uniform draws per batch, art-adr's former sampling).")
@click.option("--seed", type=int, show_default=_default("seed"),
              help="Seed of init, batch order, augmentation and attacks.")
@click.option("--device", show_default=_default("device"), help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["bf16", "fp16", "none"]), show_default=_default("amp"),
              help="Mixed precision.")
@click.option("--channels-last/--no-channels-last", default=None, show_default=_default("channels_last"),
              help="NHWC memory format.")
@click.option("--compile", "compile", is_flag=False, flag_value="default", default=None, metavar="[MODE]",
              show_default=_default("compile"),
              help="torch.compile the student's and teacher's forwards; MODE: default (the flag alone), "
                   "reduce-overhead (+ CUDA graphs), max-autotune (+ CUDA graphs), max-autotune-no-cudagraphs.")
@click.option("--no-compile", "no_compile", is_flag=True, default=False, help="Eager forwards (overrides a recipe).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config field, repeatable.")
@click.option("--stop-after-epochs", type=click.IntRange(min=1), show_default="run to the end",
              help="Stop cleanly after N epochs of this invocation (preemptible jobs).")
@click.option("--logger", "logger", metavar="NAME[,NAME]", show_default="none; with --resume the run's",
              help=f"Follow the run live: {LOGGERS.describe()} (each needs its package); "
                   "every epoch of metrics.jsonl is written once, resumes included. --resume keeps the run's loggers "
                   "unless --logger is given (none: without them).")
@quiet_option("No progress bars.")
def train_command(recipe: str | None, out: str | None, resume: bool, sets: tuple[str, ...],
                  stop_after_epochs: int | None, logger: str | None, quiet: bool, **flags: Any) -> None:
    """Train a model with a paper recipe; flags override the recipe; the resolved config is saved."""
    try:
        _train(recipe, out, resume, sets, stop_after_epochs, quiet, logger, **flags)
    finally:
        _leave_process_group()


def _given_options(flags: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """The flags given (every flag is named after its RunConfig field; ``--no-compile`` is ``compile: false``;
    numbers and τ/λ pairs already parsed by their option types), then ``--set``."""
    given = {k: v for k, v in flags.items() if v is not None}
    if given.pop("no_compile", False):
        given["compile"] = False
    given.update(_sets(sets, given))
    return given


def _run_config(recipe: str | None, out: str | None, resume: bool, given: dict[str, Any]) -> tuple[Any, str]:
    """``(RunConfig, run directory)``: the saved config of ``--resume`` (only ``--device`` may change), else the
    recipe with the flags; a new run without ``--out`` goes to ``runs/<name>-<time>``."""
    from art_adr.config import resolve_config

    if resume:
        if out is None:
            raise click.UsageError("--resume needs --out RUN_DIR")
        if recipe or set(given) - {"device"}:
            raise click.UsageError(
                "--resume continues the saved config.yaml; pass only --out (and --device). A run cannot be "
                "extended or changed: its cosine τ/λ and LR schedules are planned over its epochs. To train "
                "longer or with other options, start a new run: art-adr train <recipe/options> --epochs N "
                "--out NEW_DIR")
        saved = Path(out) / "config.yaml"
        if not saved.is_file():  # checked before torch is imported (art_adr.runs imports it)
            raise click.ClickException(f"{saved} not found: not a run directory")
        from art_adr.runs import load_run_config

        config = load_run_config(out)
        if "device" in given:
            config.device = given["device"]
    else:
        config = resolve_config(recipe, given)
    if out is None:
        name = config.recipe or f"{config.dataset}-{config.method}"
        out = str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return config, out


def _diverged(exc: Any, out: str | None) -> click.ClickException:
    """The one error line of a diverged run: what was kept, and why ``--resume`` would not help."""
    last = Path(out) / "checkpoints" / "last.pt" if out is not None else None
    kept = (f"{last} holds the last finished epoch, with finite weights" if last is not None and last.is_file()
            else "no finite epoch was saved")
    return click.ClickException(
        f"{exc.reason or exc} ({kept}; --resume repeats the same options and would likely diverge again: "
        f"start a new run with other options, e.g. a lower --lr, and another --out)")


def _train(recipe: str | None, out: str | None, resume: bool, sets: tuple[str, ...],
           stop_after_epochs: int | None, quiet: bool, logger: str | None = None, **flags: Any) -> None:
    given = _given_options(flags, sets)
    loggers = _loggers(logger, out if resume else None, quiet)
    try:  # the recipe and the options (or the resumed run's config) are checked before torch is imported
        config, out = _run_config(recipe, out, resume, given)
    except ValueError as exc:  # ConfigError, RunError
        raise click.ClickException(" ".join(str(exc).split())) from None
    if not quiet and os.environ.get("RANK", "0") == "0":  # the imports and the data take seconds: say so first
        click.echo("art-adr train: importing torch and ART ...", err=True)
    from art_adr.checkpoint import CheckpointError
    from art_adr.config import ConfigError
    from art_adr.data import DatasetError
    from art_adr.runs import RunError, RunInterrupted, resume_hint, train_run
    from art_adr.trainer import TrainingDivergedError

    try:
        path = train_run(config, out, resume=resume, stop_after_epochs=stop_after_epochs, verbose=not quiet,
                         command=" ".join(["art-adr"] + sys.argv[1:]), loggers=loggers)
    except (ConfigError, RunError, DatasetError, CheckpointError) as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except TrainingDivergedError as exc:
        raise _diverged(exc, out) from None
    except OSError as exc:
        if not disk_full(exc):
            raise
        raise disk_full_error(exc, f"free some space, then {resume_hint(out)}") from None
    except RunInterrupted as exc:  # SIGTERM: stopped cleanly at a checkpoint
        click.echo(f"\n{exc}", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("\ninterrupted" + (f"; {resume_hint(out)}" if out is not None else ""), err=True)
        sys.exit(130)
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"run written to {path}")


def _sets(sets: tuple[str, ...], flags: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values; a field also given by its own flag with another value is a usage error naming both."""
    from art_adr.config import ConfigError, coerce

    values = parse_sets(sets)
    for key in set(values) & set(flags):
        try:
            same = coerce(key, values[key]) == coerce(key, flags[key])
        except ConfigError:  # a bad value: resolve_config names it
            same = True
        if not same:
            value = flags[key]
            flag = "--no-compile" if key == "compile" and value is False else \
                f"--{key.replace('_', '-')} {','.join(value) if isinstance(value, list) else value}"
            raise click.UsageError(f"{flag} and --set {key}={values[key]} give {key} two values: give it once")
    return values


def _loggers(logger: str | None, resumed: str | None, quiet: bool) -> tuple[str, ...]:
    """``--logger``'s loggers; a resumed run (``resumed``: its directory) without ``--logger`` keeps the loggers
    it was followed with (``--logger none``: none)."""
    from art_adr.loggers import LoggerError, check_loggers, parse_loggers, run_loggers

    kept = logger is None and resumed is not None
    try:
        loggers = run_loggers(resumed) if kept else parse_loggers(logger)
        if kept and loggers and not quiet and os.environ.get("RANK", "0") == "0":
            click.echo(f"resuming with the run's loggers: {','.join(loggers)} (--logger none: without them)", err=True)
        check_loggers(loggers)
    except LoggerError as exc:
        raise click.ClickException(str(exc) + ("; or resume with --logger none" if kept else "")) from None
    return loggers


def _leave_process_group() -> None:
    """Under ``torchrun``: leave the process group on every way out (torch warns, and gloo may abort, when a
    process exits with the group still up); nothing to do when torch was never imported (a bad option)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()



@click.command("recipes", short_help="List the shipped recipes, or show one resolved.")
@click.option("--show", metavar="NAME", show_default="none", help="Print one recipe's resolved options.")
@click.option("--match", metavar="TEXT", show_default="all recipes",
              help="Only recipes whose name contains TEXT (e.g. cifar100, mart, -ro-).")
@click.option("--long", "long_", is_flag=True, help="Full descriptions instead of one line per recipe.")
@quiet_option("Only the names, one per line (for scripts).")
def recipes_command(show: str | None, match: str | None, long_: bool, quiet: bool) -> None:
    """List the shipped recipes, grouped by dataset: method, epochs, τ/λ of ADR runs, description (or show one
    resolved with --show)."""
    import shutil

    import yaml

    from art_adr.config import ConfigError, list_recipes, resolve_config

    if show:
        try:
            click.echo(yaml.safe_dump(resolve_config(show).to_dict(), sort_keys=False))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        return
    recipes = {k: v for k, v in list_recipes().items() if match is None or match in k}
    if not recipes:
        raise click.ClickException(f"no recipe name contains {match!r}; `art-adr recipes` lists them all")
    if quiet:
        for name in recipes:
            click.echo(name)
        return
    rows = []
    for name, desc in recipes.items():
        cfg = resolve_config(name)
        what = cfg.method + ("+adr" if cfg.adr else "") + ("+wa" if cfg.best_metric.startswith("teacher_") else "") \
            + ("+awp" if cfg.awp_rho > 0 else "")
        anneal = (f"τ {_schedule_text(cfg.temperature)} λ {_schedule_text(cfg.interpolation)}") if cfg.adr else ""
        rows.append((cfg.dataset, name, what, str(cfg.epochs), anneal, desc))
    widths = [max(len(r[i]) for r in rows) for i in range(1, 5)]
    room = shutil.get_terminal_size((120, 24)).columns - sum(widths) - 8
    dataset = None
    for ds, name, what, epochs, anneal, desc in rows:
        if ds != dataset:
            click.echo(("" if dataset is None else "\n") + click.style(ds, bold=True))
            dataset = ds
        if not long_ and len(desc) > max(room, 20):
            desc = desc[: max(room, 20) - 1] + "…"
        click.echo(f"  {name:<{widths[0]}}  {what:<{widths[1]}}  {epochs:>{widths[2]}}  {anneal:<{widths[3]}}  {desc}")
