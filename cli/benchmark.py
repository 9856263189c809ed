"""``art-adr benchmark``: the paper's Table 1 experiment (AT, AT+ADR, TRADES, TRADES+ADR) end to end."""

from __future__ import annotations

from typing import Any

import click


@click.command("benchmark")
@click.option("--dataset", "-d", help="cifar10, cifar100, tinyimagenet or fashion-mnist (the CPU-sized default).")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Output folder (default benchmarks-out/<dataset>).")
@click.option("--methods", default="at,at-adr,trades,trades-adr", show_default=True,
              help="Comma-separated subset of at, at-adr, trades, trades-adr.")
@click.option("--wa", is_flag=True, help="Report the EMA teacher (+WA) and select by its PGD accuracy.")
@click.option("--awp", is_flag=True, help="Add AWP (implies --wa), as in the paper's Table 2.")
@click.option("--runs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Finished run directories: only evaluate and tabulate them (repeatable).")
@click.option("--epochs", type=int, help="Budget: epochs per method.")
@click.option("--subset", type=int, help="Budget: training examples per method.")
@click.option("--n-eval", type=int, help="Budget: first n test images (RobustBench order).")
@click.option("--attack", type=click.Choice(["aa", "pgd"]), default="aa", show_default=True,
              help="Robust accuracy by AutoAttack (pyautoattack) or PGD-10.")
@click.option("--aa-version", type=click.Choice(["standard", "rand"]), default="standard", show_default=True)
@click.option("--data-dir", type=click.Path(), help="Where the dataset lives.")
@click.option("--device", default="auto", show_default=True)
@click.option("--amp", type=click.Choice(["bf16", "fp16", "none"]))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other training option, for all methods.")
@click.option("--quiet", "-q", is_flag=True)
def benchmark_command(dataset: str | None, out: str | None, methods: str, wa: bool, awp: bool, runs: tuple[str, ...],
                      epochs: int | None, subset: int | None, n_eval: int | None, attack: str, aa_version: str,
                      data_dir: str | None, device: str, amp: str | None, seed: int, sets: tuple[str, ...],
                      quiet: bool) -> None:
    """Train each method with the dataset's recipe, keep best (PGD-10 selected) and final checkpoints, evaluate
    both, and write table1.{md,csv,json} and curves.png. Re-running reuses finished runs and resumes broken ones."""
    import torch

    from art_adr.benchmark import CPU_DEFAULTS, run_benchmark
    from art_adr.checkpoint import CheckpointError
    from art_adr.config import ConfigError
    from art_adr.data import DatasetError
    from art_adr.runs import RunError

    if not dataset and not runs:
        raise click.UsageError("give --dataset (e.g. fashion-mnist) or --runs DIR ...")
    defaults: dict[str, Any] = CPU_DEFAULTS.get(dataset or "", {})
    overrides: dict[str, Any] = {"seed": seed}
    for key, value in (("epochs", epochs if epochs is not None else defaults.get("epochs")),
                       ("subset", subset if subset is not None else defaults.get("subset")),
                       ("val_size", defaults.get("val_size")), ("data_dir", data_dir), ("amp", amp),
                       ("device", device)):
        if value is not None:
            overrides[key] = value
    for item in sets:
        if "=" not in item:
            raise click.UsageError(f"--set expects KEY=VALUE, got {item!r}")
        import yaml

        k, v = item.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v)
    n_eval = n_eval if n_eval is not None else defaults.get("n_eval")
    eval_device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    out = out or f"benchmarks-out/{dataset or 'runs'}"
    try:
        result = run_benchmark(
            dataset, out, methods=[m.strip() for m in methods.split(",") if m.strip()], wa=wa or awp, awp=awp,
            runs=runs, overrides=overrides, n_eval=n_eval, attacks=("clean", attack),
            version=aa_version, device=eval_device, seed=seed, verbose=not quiet,
        )
    except (ConfigError, RunError, DatasetError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result["markdown"])
    click.echo("written: " + ", ".join(str(p) for p in result["files"].values()))
