"""``art-adr evaluate``: accuracy under the registered attacks (clean, PGD-k, margin = CW-∞, APGD-CE+T,
AutoAttack), appendix-E sanity checks, RobustBench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from art_adr.attacks import attack_names, attacks_help
from art_adr.cli import ExistingPath, Number, quiet_option

ROBUSTBENCH_N = 10_000  # RobustBench: the first 10 000 test images
# ε and α: numbers or fractions in (0, 1] (images in [0, 1]), checked before torch is imported
EPS = Number(low=0, high=1, low_open=True, what="eps", why="for [0, 1] images")


def _split_list(text: str, cast: Any = str) -> list[Any]:
    """``"a, b,"`` → ``["a", "b"]`` (each item through ``cast``)."""
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def _default_out(path: Path) -> Path:
    """``<run>/evaluation`` for a run directory, ``evaluation-<stem>`` beside a checkpoint file."""
    return path / "evaluation" if path.is_dir() else path.parent / f"evaluation-{path.stem}"


def _placement(entry: dict[str, Any], dataset: str, arch: str, which: str, n: int,
               config: dict[str, Any]) -> dict[str, Any]:
    from art_adr.robustbench import ARCH_NAMES, format_leaderboard, leaderboard_table, paper_fields

    ours = {"name": f"ours ({which})", "paper": paper_fields(config)["name"], "clean_acc": entry["results"]["clean"],
            "autoattack_acc": entry["results"]["aa"], "architecture": ARCH_NAMES.get(arch, arch)}
    rows = leaderboard_table(dataset, "Linf", ours=ours)
    rank = next(r["rank"] for r in rows if r["ours"])
    return {"dataset": dataset, "threat_model": "Linf", "rank": rank, "total": len(rows),
            "snapshot": rows[0]["source"], "snapshot_date": rows[0]["date"],
            "clean_acc": ours["clean_acc"], "autoattack_acc": ours["autoattack_acc"],
            "protocol": n >= ROBUSTBENCH_N, "table": format_leaderboard(rows)}


@click.command("evaluate",
               short_help="Evaluate a run or checkpoint: clean, PGD, CW, APGD, AutoAttack; a JSON report and a table.")
@click.argument("run_or_checkpoint", type=ExistingPath("checkpoint", Path))
@click.option("--which", type=click.Choice(["student", "teacher", "both"]), default="student", show_default=True,
              help="Student, EMA teacher (\"+WA\") or both.")
@click.option("--dataset", "-d", default=None, show_default="the checkpoint's dataset", help="Test set.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, show_default="the run's",
              help="Dataset root folder.")
@click.option("--attacks", default="clean,pgd,margin,aa", show_default=True,
              help=f"Comma list from {attacks_help()}; k: --eval-max-iter.")
@click.option("--n-examples", type=click.IntRange(min=1), default=None,
              show_default="all; 10 000 with --robustbench", help="Evaluate the first N test examples in order.")
@click.option("--norm", type=click.Choice(["inf", "2"]), default=None, show_default="the run's norm",
              help="Threat model of the attacks: L∞ (inf) or L2 (2; AutoAttack norm='L2').")
@click.option("--eps", type=EPS, default=None, show_default="the run's training ε, else 8/255",
              help="Radius, a number or fraction in (0, 1].")
@click.option("--eval-max-iter", type=click.IntRange(min=1), default=10, show_default=True,
              help="PGD iterations of the evaluation attacks (as the runs' eval_max_iter validates).")
@click.option("--cw-max-iter", type=click.IntRange(min=1), default=None, show_default="--eval-max-iter",
              help="Iterations of margin (PGD on the CW margin).")
@click.option("--eps-step", type=EPS, default=None, show_default="the run's step at its ε, else min(ε, 2.5·ε/max_iter)",
              help="PGD/margin step size α.")
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True, help="PGD/margin restarts.")
@click.option("--aa-version", "aa_version", type=click.Choice(["standard", "rand", "paper"]), default="standard",
              show_default=True,
              help="AutoAttack version: 'standard' (Croce & Hein), 'rand' (stochastic models), or 'paper': the ADR "
                   "code's protocol (torchattacks 3.3 AutoAttack defaults, run through pyautoattack): APGD-CE, "
                   "APGD-T, FAB-T at 10 iterations and 1 restart, n_classes−1 targets, Square 5000 queries. "
                   "Weaker than 'standard'; the report names the settings.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of PGD starts and AutoAttack.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Examples per batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              show_default="<run>/evaluation, or evaluation-<checkpoint> beside a .pt file", help="Output folder.")
@click.option("--sanity", is_flag=True, help="Appendix-E checks: accuracy vs ε (to the unbounded ε) and vs PGD steps.")
@click.option("--sanity-max-iter", default="1,2,4,8,16,32,64,100", show_default=True,
              help="Comma list of PGD iterations for the convergence curve.")
@click.option("--sanity-eps-max-iter", type=click.IntRange(min=1), default=100, show_default=True,
              help="PGD iterations of the accuracy-vs-ε curve.")
@click.option("--sanity-tolerance", type=float, default=1.0, show_default=True,
              help="Max change (percentage points) between the last two points of the convergence curve.")
@click.option("--robustbench", "robustbench", is_flag=True,
              help="RobustBench protocol (first 10 000 test images, AutoAttack standard, L∞ ε=8/255) + placement.")
@quiet_option("No progress bars.")
def evaluate_command(run_or_checkpoint: Path, which: str, dataset: str | None, data_dir: Path | None,
                     attacks: str, n_examples: int | None, norm: str | None, eps: float | None,
                     eval_max_iter: int, cw_max_iter: int | None, eps_step: float | None, restarts: int,
                     aa_version: str, seed: int, batch_size: int, device: str,
                     out: Path | None, sanity: bool, sanity_max_iter: str, sanity_eps_max_iter: int,
                     sanity_tolerance: float, robustbench: bool, quiet: bool) -> None:
    """Evaluate RUN_OR_CHECKPOINT (a run folder or .pt file) in the run's own threat model (L∞ or L2):
    JSON report + Markdown table in --out, naming the checkpoint file, its epoch and its SHA-256."""
    from art_adr.cli import resolve_cli_device
    from art_adr.data import DATASETS
    from art_adr.evaluation import evaluate_checkpoint, format_table

    eps_value, step_value = eps, eps_step  # parsed and checked by EPS
    attack_list = _registered_attacks(attacks)
    try:
        steps_list = _split_list(sanity_max_iter, int)
    except ValueError:
        raise click.BadParameter("must be a comma list of integers", param_hint="--sanity-max-iter") from None
    if dataset is not None and dataset not in DATASETS:
        raise click.BadParameter(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}",
                                 param_hint="--dataset")
    device = resolve_cli_device(device)
    changes: dict[str, Any] = {"norm": norm, "eps": eps_value, "steps": eval_max_iter, "restarts": restarts}
    if step_value is not None:
        changes["eps_step"] = step_value
    if robustbench:
        attack_list, aa_version, n_examples = _robustbench_settings(run_or_checkpoint, dataset, norm, eps_value,
                                                                    attack_list, aa_version, n_examples)
        changes.update(norm="inf", eps=8 / 255)
    sanity_kw = dict(steps_values=steps_list, eps_curve_steps=sanity_eps_max_iter, tolerance=sanity_tolerance)
    try:
        whom = "student and teacher" if which == "both" else f"the {which}"
        click.echo(f"evaluating {whom} of {run_or_checkpoint} ...", err=True)
        report = evaluate_checkpoint(
            run_or_checkpoint, which=which, attacks=attack_list, spec=changes, cw_steps=cw_max_iter,
            n_examples=n_examples, aa_version=aa_version, seed=seed, batch_size=batch_size, device=device,
            progress=not quiet, dataset=dataset, data_dir=data_dir,
            sanity=sanity_kw if sanity else None)
        if which == "both" and "teacher" not in report["models"]:
            click.echo("note: checkpoint has no teacher weights; evaluated the student only", err=True)
        if robustbench:
            from art_adr.checkpoint import load_checkpoint

            ckpt = load_checkpoint(report["checkpoint_info"]["file"])
            for w, entry in report["models"].items():
                entry["robustbench"] = _placement(entry, report["dataset"], ckpt["model"]["arch"], w,
                                                  report["n_examples"], ckpt.get("config") or {})
        paths = _write(report, out or _default_out(run_or_checkpoint))
    except (ValueError, ImportError, OSError) as exc:  # CheckpointError, DatasetError are ValueErrors
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(report))
    click.echo(f"wrote {paths['json']} and {paths['markdown']}")


def _registered_attacks(attacks: str) -> list[str]:
    """``--attacks`` → its names, each a registered attack (``BadParameter`` listing them otherwise)."""
    attack_list = _split_list(attacks)
    bad = [a for a in attack_list if a not in attack_names()]
    if bad or not attack_list:
        raise click.BadParameter(f"unknown attack(s) {bad}; choose from {','.join(attack_names())}",
                                 param_hint="--attacks")
    return attack_list


def _robustbench_settings(path: Path, dataset: str | None, norm: str | None, eps: float | None,
                          attacks: list[str], version: str, n: int | None) -> tuple[list[str], str, int]:
    """RobustBench's protocol: its datasets, L∞ ε = 8/255, AutoAttack standard (checked before any attack)."""
    from art_adr.checkpoint import load_checkpoint
    from art_adr.robustbench import ROBUSTBENCH_DATASETS

    try:
        dataset = dataset or load_checkpoint(path)["model"].get("dataset")
    except ValueError as exc:  # CheckpointError
        raise click.ClickException(str(exc)) from None
    if dataset not in ROBUSTBENCH_DATASETS:
        raise click.UsageError(f"--robustbench needs one of {', '.join(ROBUSTBENCH_DATASETS)}, not {dataset}")
    if (eps is not None and abs(eps - 8 / 255) > 1e-12) or norm not in (None, "inf"):
        raise click.UsageError("--robustbench uses RobustBench's L∞ ε = 8/255; drop --eps/--norm")
    if version != "standard":
        raise click.UsageError("--robustbench uses AutoAttack version 'standard'")
    attacks = list(dict.fromkeys(["clean", *attacks, "aa"]))
    return attacks, "standard", n if n is not None else ROBUSTBENCH_N


def _write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write the sanity plots (their paths go into the report), then the JSON/Markdown report (atomically)."""
    from art_adr.evaluation import write_report, write_sanity_plots

    for name, entry in report["models"].items():
        if "sanity" in entry:
            write_sanity_plots(entry["sanity"], out, name)
    return write_report(report, out)
