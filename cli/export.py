"""``art-adr export``: a RobustBench submission bundle (weights, model_info, model-zoo entry, issue text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from art_adr.cli import disk_full, disk_full_error, quiet_option


@click.command("export", short_help="Export a run or checkpoint as a RobustBench-format bundle, or check one.")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(["robustbench"]), default="robustbench", show_default=True,
              help="Bundle format.")
@click.option("--name", default=None, show_default="required; with --check the bundle's only model",
              help="RobustBench model name, e.g. Wu2024Annealing_RN18.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None, show_default="required",
              help="Bundle folder.")
@click.option("--which", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Student or EMA teacher (the \"+WA\" model).")
@click.option("--eps", default=None, show_default="the report's; 8/255 with --external-numbers",
              help="L∞ radius of the evaluation.")
@click.option("--report", type=click.Path(path_type=Path), default=None, show_default="none",
              help="evaluation.json of this checkpoint from `art-adr evaluate` (its SHA-256 is checked): the "
                   "clean and AutoAttack accuracy, the number of test images and the AutoAttack log.")
@click.option("--external-numbers", is_flag=True, default=False, show_default=True,
              help="Take --clean-acc/--autoattack-acc, measured elsewhere, instead of a report; recorded as "
                   "external in model_info and the issue text.")
@click.option("--clean-acc", type=float, default=None, show_default="from --report",
              help="Clean accuracy in percent (with --external-numbers).")
@click.option("--autoattack-acc", type=float, default=None, show_default="from --report",
              help="AutoAttack accuracy in percent (with --external-numbers).")
@click.option("--n-examples", type=click.IntRange(min=1), default=None,
              show_default="the report's; 10000 with --external-numbers",
              help="Test images the accuracies were measured on.")
@click.option("--allow-partial", is_flag=True, default=False, show_default=True,
              help="Export an evaluation on fewer than the 10 000 test images of a leaderboard dataset, marked as "
                   "partial in model_info.")
@click.option("--reported", type=float, default=None, show_default="the AutoAttack accuracy",
              help="Accuracy reported in the paper.")
@click.option("--additional-data/--no-additional-data", default=None, show_default="from the checkpoint's config",
              help="Extra training data used.")
@click.option("--footnote", default=None, show_default="the \"+WA\" note for the teacher, else none",
              help="model_info footnote.")
@click.option("--paper-name", default=None,
              show_default="the ADR paper; for a run without ADR e.g. \"PGD-AT (art-adr)\"",
              help="Paper title (model_info `name`).")
@click.option("--link", default=None, show_default="the ADR paper's; a placeholder without ADR", help="Paper URL.")
@click.option("--authors", default=None, show_default="the ADR paper's; a placeholder without ADR",
              help="Paper authors.")
@click.option("--venue", default=None, show_default="ICLR 2024; a placeholder without ADR", help="Paper venue.")
@click.option("--number-forward-passes", type=click.IntRange(min=1), default=None, show_default="1",
              help="Forward passes per prediction.")
@click.option("--device", default="auto", show_default=True,
              help="Device of the logits check: auto (GPU if any), cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, default=False, show_default=True,
              help="Replace an existing bundle of the same name.")
@click.option("--check", "check", type=click.Path(path_type=Path), default=None, show_default="none",
              help="Check the bundle in this folder instead of exporting (files, model_info schema, numbers "
                   "against the report, load round trip, clean re-evaluation of the first test images).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, show_default="the usual places",
              help="With --check: where the test set is.")
@click.option("--check-examples", type=click.IntRange(min=1), default=None, show_default="the report's",
              help="With --check: test images to re-evaluate.")
@quiet_option("Do not list the written files (warnings and notes still go to stderr).")
def export_command(run_or_checkpoint: Path | None, fmt: str, name: str | None, out: Path | None, which: str,
                   eps: str | None, report: Path | None, external_numbers: bool, clean_acc: float | None,
                   autoattack_acc: float | None, n_examples: int | None, allow_partial: bool,
                   reported: float | None, additional_data: bool | None, footnote: str | None,
                   paper_name: str | None, link: str | None, authors: str | None, venue: str | None,
                   number_forward_passes: int | None, device: str, overwrite: bool, check: Path | None,
                   data_dir: Path | None, check_examples: int | None, quiet: bool) -> None:
    """Export RUN_OR_CHECKPOINT as a RobustBench-format bundle into --out, or check one (--check BUNDLE).

    The numbers come from `art-adr evaluate`'s report of this checkpoint (--report), or are typed and marked
    external (--external-numbers). Where RobustBench has a leaderboard (cifar10, cifar100) the bundle is a
    submission, placed against the leaderboard; an evaluation on fewer than its 10 000 test images is refused
    unless --allow-partial. Elsewhere (e.g. fashion-mnist) the bundle is in RobustBench's format and loads
    through its own load_bundle.py.
    """
    if check is not None:
        if run_or_checkpoint is not None:
            raise click.UsageError("--check BUNDLE checks a bundle; drop RUN_OR_CHECKPOINT")
        _check(check, name, data_dir, check_examples, quiet)
        return
    if run_or_checkpoint is None or name is None or out is None:
        raise click.UsageError("give RUN_OR_CHECKPOINT, --name and --out (or --check BUNDLE)")
    if external_numbers and (clean_acc is None or autoattack_acc is None):
        raise click.UsageError("--external-numbers needs both --clean-acc and --autoattack-acc")
    if not external_numbers and (clean_acc is not None or autoattack_acc is not None):
        raise click.UsageError("--clean-acc/--autoattack-acc typed by hand need --external-numbers (they are "
                               "recorded as not measured by art-adr); else give --report evaluation.json")
    if report is None and not external_numbers:
        raise click.UsageError("give --report evaluation.json (from `art-adr evaluate` of this checkpoint), or "
                               "--external-numbers with --clean-acc and --autoattack-acc")
    kwargs = dict(which=which, eps=_parse(eps, device), clean_acc=clean_acc, autoattack_acc=autoattack_acc,
                  external_numbers=external_numbers, reported=reported, report=report,
                  additional_data=additional_data, footnote=footnote, paper_name=paper_name, overwrite=overwrite,
                  link=link, authors=authors, venue=venue, number_forward_passes=number_forward_passes,
                  n_examples=n_examples, allow_partial=allow_partial)
    paths = _export(run_or_checkpoint, out, name, kwargs, device)
    _summary(paths, quiet)


def _parse(eps: str | None, device: str) -> float | None:
    from art_adr.budget import parse_eps
    from art_adr.estimator import resolve_device

    try:
        value = parse_eps(eps) if eps is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--eps") from None
    try:
        resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    return value


def _export(source: Path, out: Path, name: str, kwargs: dict[str, Any], device: str) -> dict[str, Path]:
    from art_adr.estimator import resolve_device
    from art_adr.robustbench import export_robustbench

    try:
        return export_robustbench(source, out, name, device=resolve_device(device), **kwargs)
    except (ValueError, ImportError, OSError) as exc:  # CheckpointError, ExportError are ValueErrors
        if disk_full(exc):
            raise disk_full_error(exc, f"nothing was exported (no partial bundle is left in {out}) and "
                                       f"{source} is unchanged; free some space and export again") from None
        raise click.ClickException(str(exc)) from None


def _summary(paths: dict[str, Path], quiet: bool) -> None:
    """The files written, then what the bundle is: a leaderboard placement, or a note that there is none."""
    import json
    import re

    from art_adr.robustbench import (
        PLACEHOLDERS,
        ROBUSTBENCH_DATASETS,
        ROBUSTBENCH_N_EXAMPLES,
        format_leaderboard,
        leaderboard_table,
    )

    if not quiet:
        for kind, path in paths.items():
            click.echo(f"{kind}: {path}")
    info = json.loads(paths["model_info"].read_text())
    partial = re.match(r".*Partial evaluation: (\d+) of", info.get("footnote") or "")
    if partial:
        click.echo(f"warning: partial evaluation on {partial[1]} of the {ROBUSTBENCH_N_EXAMPLES} test images, "
                   "marked in model_info's footnote; not a RobustBench leaderboard result", err=True)
    if "External numbers" in (info.get("footnote") or ""):
        click.echo("note: external numbers, recorded as not measured by art-adr (no report in the bundle)", err=True)
    blanks = [k for k, v in PLACEHOLDERS.items() if info.get(k) == v]
    if blanks:
        click.echo(f"note: trained without ADR, so model_info is not the ADR paper's: name {info['name']!r}, "
                   f"placeholders in {', '.join(blanks)} (set --paper-name, --link, --authors, --venue)", err=True)
    if info["dataset"] in ROBUSTBENCH_DATASETS:
        ours = {"name": paths["weights"].stem, "paper": info["name"], "clean_acc": info["clean_acc"],
                "autoattack_acc": info["autoattack_acc"], "architecture": info["architecture"],
                "additional_data": info["additional_data"]}
        click.echo(format_leaderboard(leaderboard_table(info["dataset"], "Linf", ours=ours)))
    else:
        click.echo(f"note: RobustBench has no L∞ leaderboard for {info['dataset']!r}: the bundle is in its format, "
                   f"not a submission; load it with {paths['loader']} (load_model)", err=True)
    click.echo(f"check it with: art-adr export --check {paths['loader'].parent}", err=True)


def _check(bundle: Path, name: str | None, data_dir: Path | None, n_check: int | None, quiet: bool) -> None:
    from art_adr.robustbench import check_bundle

    try:
        lines = check_bundle(bundle, name, data_dir=data_dir, n_check=n_check)
    except (ValueError, ImportError, OSError) as exc:
        raise click.ClickException(f"bundle check failed: {exc}") from None
    if not quiet:
        for line in lines:
            click.echo(f"ok: {line}")
    click.echo(f"bundle {bundle} passes the checks")
