"""``art-adr export``: a RobustBench submission bundle (weights, model_info, model-zoo entry, issue text)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["robustbench"]), default="robustbench", show_default=True)
@click.option("--name", required=True, help="RobustBench model name, e.g. Wu2024Annealing_RN18.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder.")
@click.option("--which", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Student or EMA teacher (the \"+WA\" model).")
@click.option("--dataset", default=None, help="cifar10 or cifar100 (default: the checkpoint's dataset).")
@click.option("--eps", default="8/255", show_default=True)
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="evaluation.json from `art-adr evaluate` (supplies clean and AutoAttack accuracy).")
@click.option("--clean-acc", type=float, default=None, help="Clean accuracy in percent.")
@click.option("--autoattack-acc", type=float, default=None, help="AutoAttack accuracy in percent.")
@click.option("--reported", type=float, default=None, help="Accuracy reported in the paper (default: AA).")
@click.option("--additional-data/--no-additional-data", default=None,
              help="Extra training data used (default: from the checkpoint's config).")
@click.option("--footnote", default=None)
@click.option("--paper-name", default=None, help="Paper title (default: the ADR paper).")
@click.option("--link", default=None)
@click.option("--authors", default=None)
@click.option("--venue", default=None)
@click.option("--number-forward-passes", type=click.IntRange(min=1), default=None)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle of the same name.")
def export_command(run_or_checkpoint: Path, fmt: str, name: str, out: Path, which: str, dataset: str | None,
                   eps: str, report: Path | None, clean_acc: float | None, autoattack_acc: float | None,
                   reported: float | None, additional_data: bool | None, footnote: str | None,
                   paper_name: str | None, link: str | None, authors: str | None, venue: str | None,
                   number_forward_passes: int | None, overwrite: bool) -> None:
    """Export RUN_OR_CHECKPOINT as a RobustBench submission into --out."""
    from art_adr.evaluation import parse_eps
    from art_adr.robustbench import export_robustbench

    try:
        eps_value = parse_eps(eps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--eps") from None
    if report is None and (clean_acc is None or autoattack_acc is None):
        raise click.UsageError("give --report evaluation.json, or both --clean-acc and --autoattack-acc")
    try:
        paths = export_robustbench(
            run_or_checkpoint, out, name, which=which, dataset=dataset, eps=eps_value, clean_acc=clean_acc,
            autoattack_acc=autoattack_acc, reported=reported, report=report, additional_data=additional_data,
            footnote=footnote, paper_name=paper_name, overwrite=overwrite, link=link, authors=authors,
            venue=venue, number_forward_passes=number_forward_passes,
        )
    except (ValueError, ImportError, OSError) as exc:  # CheckpointError, ExportError are ValueErrors
        raise click.ClickException(str(exc)) from None
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
