"""``art-adr export``: a RobustBench submission bundle (weights, model_info, model-zoo entry, issue text)."""

from __future__ import annotations

from pathlib import Path

import click

from art_adr.cli import disk_full, disk_full_error, quiet_option


@click.command("export")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["robustbench"]), default="robustbench", show_default=True,
              help="Bundle format.")
@click.option("--name", required=True, help="RobustBench model name, e.g. Wu2024Annealing_RN18.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Bundle folder.")
@click.option("--which", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Student or EMA teacher (the \"+WA\" model).")
@click.option("--eps", default="8/255", show_default=True, help="L∞ radius of the evaluation.")
@click.option("--report", type=click.Path(path_type=Path), default=None, show_default="none",
              help="evaluation.json from `art-adr evaluate` (supplies clean and AutoAttack accuracy and the "
                   "number of test images).")
@click.option("--clean-acc", type=float, default=None, show_default="from --report",
              help="Clean accuracy in percent.")
@click.option("--autoattack-acc", type=float, default=None, show_default="from --report",
              help="AutoAttack accuracy in percent.")
@click.option("--n-examples", type=click.IntRange(min=1), default=None,
              show_default="the report's; 10000 with --clean-acc/--autoattack-acc",
              help="Test images the accuracies were measured on.")
@click.option("--allow-partial", is_flag=True, default=False, show_default=True,
              help="Export an evaluation on fewer than the 10 000 test images, marked as partial in model_info.")
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
@quiet_option("Do not list the written files (warnings and notes still go to stderr).")
def export_command(run_or_checkpoint: Path, fmt: str, name: str, out: Path, which: str, eps: str,
                   report: Path | None, clean_acc: float | None, autoattack_acc: float | None,
                   n_examples: int | None, allow_partial: bool, reported: float | None,
                   additional_data: bool | None, footnote: str | None, paper_name: str | None, link: str | None,
                   authors: str | None, venue: str | None, number_forward_passes: int | None, device: str,
                   overwrite: bool, quiet: bool) -> None:
    """Export RUN_OR_CHECKPOINT as a RobustBench submission into --out.

    RobustBench evaluates on all 10 000 test images: a smaller evaluation is refused unless --allow-partial.
    The dataset is the checkpoint's (cifar10 or cifar100).
    """
    import json
    import re

    from art_adr.budget import parse_eps
    from art_adr.estimator import resolve_device
    from art_adr.robustbench import PLACEHOLDERS, ROBUSTBENCH_N_EXAMPLES, export_robustbench

    try:
        eps_value = parse_eps(eps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--eps") from None
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    if report is None and (clean_acc is None or autoattack_acc is None):
        raise click.UsageError("give --report evaluation.json, or both --clean-acc and --autoattack-acc")
    try:
        paths = export_robustbench(
            run_or_checkpoint, out, name, which=which, eps=eps_value, clean_acc=clean_acc,
            autoattack_acc=autoattack_acc, reported=reported, report=report, additional_data=additional_data,
            footnote=footnote, paper_name=paper_name, overwrite=overwrite, link=link, authors=authors,
            venue=venue, number_forward_passes=number_forward_passes, n_examples=n_examples,
            allow_partial=allow_partial, device=dev,
        )
    except (ValueError, ImportError, OSError) as exc:  # CheckpointError, ExportError are ValueErrors
        if disk_full(exc):
            raise disk_full_error(exc, f"nothing was exported (no partial bundle is left in {out}) and "
                                       f"{run_or_checkpoint} is unchanged; free some space and export again") from None
        raise click.ClickException(str(exc)) from None
    if not quiet:
        for kind, path in paths.items():
            click.echo(f"{kind}: {path}")
    info = json.loads(paths["model_info"].read_text())
    partial = re.match(r"Partial evaluation: (\d+) of", info.get("footnote") or "")
    if partial:
        click.echo(f"warning: partial evaluation on {partial[1]} of the {ROBUSTBENCH_N_EXAMPLES} test images, "
                   "marked in model_info's footnote; not a RobustBench leaderboard result", err=True)
    blanks = [k for k, v in PLACEHOLDERS.items() if info.get(k) == v]
    if blanks:
        click.echo(f"note: trained without ADR, so model_info is not the ADR paper's: name {info['name']!r}, "
                   f"placeholders in {', '.join(blanks)} (set --paper-name, --link, --authors, --venue)", err=True)
