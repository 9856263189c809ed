"""``art-adr evaluate``: clean / PGD-k / CW-∞ / AutoAttack accuracy, appendix-E sanity checks, RobustBench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

ROBUSTBENCH_N = 10_000  # RobustBench: the first 10 000 test images


def _split_list(text: str, cast: Any = str) -> list[Any]:
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def _default_out(path: Path) -> Path:
    return path / "evaluation" if path.is_dir() else path.parent / f"evaluation-{path.stem}"


def _load_models(path: Path, which: str, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Models to evaluate (``student``/``teacher``) and the checkpoint dict (``CheckpointError`` on failure)."""
    from art_adr.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(path)
    names = ["student", "teacher"] if which == "both" else [which]
    if which == "both" and ckpt.get("teacher") is None:
        click.echo("note: checkpoint has no teacher weights; evaluating the student only", err=True)
        names = ["student"]
    return {n: model_from_checkpoint(ckpt, which=n, device=device) for n in names}, ckpt


def _load_data(dataset: str, data_dir: Path | None, n: int | None, num_classes: int,
               config: dict[str, Any]) -> Any:
    """The test split; the run's own ``data_dir`` and ``dataset_kwargs`` apply when it is the run's dataset."""
    from art_adr.data import DATASETS, load_dataset

    if dataset != "synthetic" and DATASETS[dataset].num_classes != num_classes:  # before touching the disk
        raise click.ClickException(f"checkpoint has {num_classes} classes but {dataset} has "
                                   f"{DATASETS[dataset].num_classes}")
    kwargs: dict[str, Any] = {}
    if dataset == config.get("dataset"):
        data_dir = data_dir or config.get("data_dir")
        kwargs = dict(config.get("dataset_kwargs") or {})
    ds = load_dataset(dataset, "test", data_dir, **kwargs)
    if ds.num_classes != num_classes:
        raise click.ClickException(f"checkpoint has {num_classes} classes but {dataset} has {ds.num_classes}")
    return ds.subset(n) if n is not None else ds


def _placement(entry: dict[str, Any], dataset: str, arch: str, which: str, n: int) -> dict[str, Any]:
    from art_adr.robustbench import ARCH_NAMES, format_leaderboard, leaderboard_table

    ours = {"name": f"ours ({which})", "clean_acc": entry["results"]["clean"],
            "autoattack_acc": entry["results"]["aa"], "architecture": ARCH_NAMES.get(arch, arch)}
    rows = leaderboard_table(dataset, "Linf", ours=ours)
    rank = next(r["rank"] for r in rows if r["ours"])
    return {"dataset": dataset, "threat_model": "Linf", "rank": rank, "total": len(rows),
            "snapshot": rows[0]["source"], "snapshot_date": rows[0]["date"],
            "clean_acc": ours["clean_acc"], "autoattack_acc": ours["autoattack_acc"],
            "protocol": n >= ROBUSTBENCH_N, "table": format_leaderboard(rows)}


@click.command("evaluate")
@click.argument("run_or_checkpoint", type=click.Path(path_type=Path))
@click.option("--which", type=click.Choice(["student", "teacher", "both"]), default="student", show_default=True,
              help="Student, EMA teacher (\"+WA\") or both.")
@click.option("--dataset", default=None, help="Test set (default: the checkpoint's dataset).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Dataset root folder.")
@click.option("--attacks", default="clean,pgd,cw,aa", show_default=True,
              help="Comma list from clean, pgd, cw (CW-∞: PGD on the CW margin), aa (AutoAttack).")
@click.option("--n-examples", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N test examples in order (default: all; 10 000 with --robustbench).")
@click.option("--eps", default=None,
              help="L∞ radius, a number or fraction in (0, 1] (default: the run's training ε, else 8/255).")
@click.option("--pgd-steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--cw-steps", type=click.IntRange(min=1), default=None, help="CW-∞ steps (default: --pgd-steps).")
@click.option("--eps-step", default=None, help="PGD step size (default: min(ε, 2.5·ε/steps)).")
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True, help="PGD/CW restarts.")
@click.option("--version", "aa_version", type=click.Choice(["standard", "rand", "paper"]), default="standard",
              show_default=True,
              help="AutoAttack version: 'standard' (Croce & Hein), 'rand' (stochastic models), or 'paper': the ADR "
                   "code's protocol (torchattacks 3.3 AutoAttack defaults, run through pyautoattack): APGD-CE, "
                   "APGD-T, FAB-T at 10 iterations and 1 restart, n_classes−1 targets, Square 5000 queries. "
                   "Weaker than 'standard'; the report names the settings.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of PGD starts and AutoAttack.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: <run>/evaluation or evaluation-<checkpoint> beside it).")
@click.option("--sanity", is_flag=True, help="Appendix-E checks: accuracy vs ε (to ε=1) and vs PGD steps.")
@click.option("--sanity-steps", default="1,2,4,8,16,32,64,100", show_default=True,
              help="PGD steps for the convergence curve.")
@click.option("--sanity-eps-steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="PGD steps for the accuracy-vs-ε curve.")
@click.option("--sanity-tolerance", type=float, default=1.0, show_default=True,
              help="Max change (percentage points) between the last two points of the steps curve.")
@click.option("--robustbench", "robustbench", is_flag=True,
              help="RobustBench protocol (first 10 000 test images, AutoAttack standard, ε=8/255) + placement.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def evaluate_command(run_or_checkpoint: Path, which: str, dataset: str | None, data_dir: Path | None,
                     attacks: str, n_examples: int | None, eps: str | None, pgd_steps: int, cw_steps: int | None,
                     eps_step: str | None, restarts: int, aa_version: str, seed: int, batch_size: int, device: str,
                     out: Path | None, sanity: bool, sanity_steps: str, sanity_eps_steps: int,
                     sanity_tolerance: float, robustbench: bool, progress: bool) -> None:
    """Evaluate RUN_OR_CHECKPOINT (a run folder or .pt file): JSON report + Markdown table in --out."""
    from art_adr.data import DATASETS
    from art_adr.evaluation import ATTACKS, parse_eps

    try:
        eps_value = parse_eps(eps) if eps is not None else None
        step_value = parse_eps(eps_step) if eps_step is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--eps/--eps-step") from None
    attack_list = _split_list(attacks)
    bad = [a for a in attack_list if a not in ATTACKS]
    if bad or not attack_list:
        raise click.BadParameter(f"unknown attack(s) {bad}; choose from {','.join(ATTACKS)}", param_hint="--attacks")
    try:
        steps_list = _split_list(sanity_steps, int)
    except ValueError:
        raise click.BadParameter("must be a comma list of integers", param_hint="--sanity-steps") from None
    if dataset is not None and dataset not in DATASETS:
        raise click.BadParameter(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}",
                                 param_hint="--dataset")
    from art_adr.estimator import resolve_device

    try:
        device = str(resolve_device(device))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    try:
        models, ckpt = _load_models(run_or_checkpoint, which, device)
        desc = ckpt["model"]
        dataset = dataset or desc.get("dataset")
        config = ckpt.get("config") or {}
        if eps_value is None:
            eps_value = 8 / 255 if robustbench else float(config.get("eps", 8 / 255))
        if dataset not in DATASETS:
            raise click.UsageError(f"checkpoint does not name a known dataset ({dataset!r}); pass --dataset")
        if robustbench:
            attack_list, aa_version, n_examples = _robustbench_settings(dataset, eps_value, attack_list,
                                                                        aa_version, n_examples)
        ds = _load_data(dataset, data_dir, n_examples, int(desc["num_classes"]), config)
        report, plots = _run(models, ds, locals_=dict(
            attacks=attack_list, eps=eps_value, pgd_steps=pgd_steps, restarts=restarts, eps_step=step_value,
            cw_steps=cw_steps or pgd_steps, version=aa_version, seed=seed, batch_size=batch_size,
            device=device, progress=progress), sanity=sanity, steps_list=steps_list,
            sanity_eps_steps=sanity_eps_steps, tolerance=sanity_tolerance)
        if robustbench:
            for w, entry in report["models"].items():
                entry["robustbench"] = _placement(entry, dataset, desc["arch"], w, len(ds))
        report.update(checkpoint=str(run_or_checkpoint), dataset=dataset)
        paths = _write(report, plots, out or _default_out(run_or_checkpoint))
    except (ValueError, ImportError, OSError) as exc:  # CheckpointError, DatasetError are ValueErrors
        raise click.ClickException(str(exc)) from None
    from art_adr.evaluation import format_table

    click.echo(format_table(report))
    click.echo(f"wrote {paths['json']} and {paths['markdown']}")


def _robustbench_settings(dataset: str, eps: float, attacks: list[str], version: str,
                          n: int | None) -> tuple[list[str], str, int]:
    from art_adr.robustbench import ROBUSTBENCH_DATASETS

    if dataset not in ROBUSTBENCH_DATASETS:
        raise click.UsageError(f"--robustbench needs one of {', '.join(ROBUSTBENCH_DATASETS)}, not {dataset}")
    if abs(eps - 8 / 255) > 1e-12:
        raise click.UsageError("--robustbench uses RobustBench's L∞ ε = 8/255; drop --eps")
    if version != "standard":
        raise click.UsageError("--robustbench uses AutoAttack version 'standard'")
    attacks = list(dict.fromkeys(["clean", *attacks, "aa"]))
    return attacks, "standard", n if n is not None else ROBUSTBENCH_N


def _run(models: dict[str, Any], ds: Any, locals_: dict[str, Any], sanity: bool, steps_list: list[int],
         sanity_eps_steps: int, tolerance: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate every model (and run the sanity checks); plots are written later, with the report."""
    import torch

    from art_adr.evaluation import build_report, evaluate_model, sanity_checks

    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
    kw = locals_
    entries, sanity_results = {}, {}
    for name, model in models.items():
        click.echo(f"evaluating {name} on {len(y)} {ds.name} test examples ...", err=True)
        entries[name] = evaluate_model(model, x, y, attacks=kw["attacks"], eps=kw["eps"],
                                       pgd_steps=kw["pgd_steps"], restarts=kw["restarts"],
                                       eps_step=kw["eps_step"], cw_steps=kw["cw_steps"], version=kw["version"],
                                       seed=kw["seed"], batch_size=kw["batch_size"], device=kw["device"],
                                       progress=kw["progress"])
        if sanity:
            res = sanity_checks(model, x, y, eps=kw["eps"], steps_values=steps_list,
                                eps_curve_steps=sanity_eps_steps, tolerance=tolerance, seed=kw["seed"],
                                batch_size=kw["batch_size"], device=kw["device"], name=name,
                                progress=kw["progress"])
            entries[name]["sanity"] = sanity_results[name] = res
    settings = {"attacks": kw["attacks"], "pgd_steps": kw["pgd_steps"], "restarts": kw["restarts"],
                "eps_step": kw["eps_step"], "cw_steps": kw["cw_steps"], "aa_version": kw["version"]}
    report = build_report(entries, checkpoint="", dataset=ds.name, n_examples=len(y), eps=kw["eps"],
                          seed=kw["seed"], batch_size=kw["batch_size"], device=kw["device"], settings=settings)
    return report, sanity_results


def _write(report: dict[str, Any], sanity: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write sanity plots, then the JSON/Markdown report (each file atomically)."""
    from art_adr.evaluation import write_report, write_sanity_plots

    for name, res in sanity.items():
        write_sanity_plots(res, out, name)
    return write_report(report, out)
