"""The options ``art-adr benchmark`` and ``art-adr sweep`` share: where the runs train (``--launcher``, local GPUs,
SLURM through submitit) and how they are followed (``--logger``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import click

from art_adr.cli import parse_sets
from art_adr.launch import LAUNCHERS
from art_adr.loggers import LOGGERS

LAUNCH_OPTIONS = ("launcher", "gpus", "jobs", "slurm_partition", "gpus_per_run", "timeout_min",
                  "slurm_array_parallelism", "set_slurm", "no_wait", "logger")


def launch_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the launcher and logger options to a click command (they arrive as keyword arguments)."""
    options = [
        click.option("--launcher", type=click.Choice(LAUNCHERS.names()), default="local", show_default=True,
                     help="; ".join(f"{name}: {LAUNCHERS.meta(name)['help']}" for name in LAUNCHERS) + "."),
        click.option("--gpus", metavar="ID[,ID]", show_default="none: in this process",
                     help="--launcher local: device ids for CUDA_VISIBLE_DEVICES, one run per device at a time "
                          "(e.g. 0,1,2,3)."),
        click.option("--jobs", "-j", type=click.IntRange(min=1), show_default="none: in this process",
                     help="--launcher local without --gpus: train N runs at a time as CPU jobs (no GPU visible to "
                          "them), each with cores/N threads (OMP_NUM_THREADS when set), and evaluate N at a time; "
                          "the numbers are those of the in-process runs."),
        click.option("--slurm-partition", show_default="the cluster's default", help="SLURM partition."),
        click.option("--gpus-per-run", type=click.IntRange(min=0), default=1, show_default=True,
                     help="SLURM: GPUs of each run's job."),
        click.option("--timeout-min", type=click.IntRange(min=1), default=24 * 60, show_default=True,
                     help="SLURM: time limit of each job in minutes; a run that needs longer is requeued and resumes."),
        click.option("--slurm-array-parallelism", type=click.IntRange(min=1), show_default="all runs at once",
                     help="SLURM: at most this many jobs of the array run at the same time."),
        click.option("--set-slurm", "set_slurm", multiple=True, metavar="KEY=VALUE",
                     help="Any other submitit/SLURM parameter, repeatable: cpus_per_task=8, mem_gb=32, qos=high, "
                          "account=..., constraint=..., max_num_timeout=10, \"setup=[module load cuda]\"."),
        click.option("--no-wait", is_flag=True,
                     help="SLURM: return after submitting; rerun the same command to wait, then evaluate and "
                          "tabulate (finished runs are kept, running jobs are not submitted again)."),
        click.option("--logger", metavar="NAME[,NAME]", show_default="none",
                     help=f"Follow every run live: {LOGGERS.describe()} (each needs its package; tensorboard puts "
                          f"the table in OUT/tb/); the evaluation table at the end."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def launcher_from_options(options: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """``(Launcher or None, loggers)`` from the options of :func:`launch_options` (popped from ``options``); bad
    values and missing packages are one ``Error:`` line."""
    from art_adr.launch import Launcher, LaunchError, check_gpus, parse_gpus
    from art_adr.loggers import LoggerError, check_loggers, parse_loggers

    values = {name: options.pop(name) for name in LAUNCH_OPTIONS}
    try:
        loggers = parse_loggers(values["logger"])
        check_loggers(loggers)
        launcher = Launcher(kind=values["launcher"], gpus=parse_gpus(values["gpus"]),
                            jobs=values["jobs"] or 0,
                            partition=values["slurm_partition"], gpus_per_run=values["gpus_per_run"],
                            timeout_min=values["timeout_min"], array_parallelism=values["slurm_array_parallelism"],
                            slurm=parse_sets(values["set_slurm"]), wait=not values["no_wait"]).validate()
        check_gpus(launcher.gpus)
        needs = LAUNCHERS.meta(launcher.kind)
        if needs.get("package") and importlib.util.find_spec(needs["package"]) is None:
            raise LaunchError(f"--launcher {launcher.kind} needs {needs['package']}: {needs['install']}")
    except (LaunchError, LoggerError) as exc:
        raise click.ClickException(str(exc)) from None
    return (None if launcher.in_process else launcher), loggers


def run_launched(run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``run()`` (a benchmark or sweep that launches runs): a stop signal to its jobs exits 128 + signal after one
    line; a ``--no-wait`` result that left runs unfinished is reported and gives ``None``; else the result."""
    import sys

    from art_adr.launch import LaunchInterrupted

    try:
        result = run()
    except LaunchInterrupted as exc:
        click.echo(f"\n{exc}", err=True)
        sys.exit(128 + exc.signum)
    if result["unfinished"]:
        echo_unfinished(result["unfinished"])
        return None
    return result


def echo_unfinished(unfinished: list[Any]) -> None:
    """What a ``--no-wait`` invocation left running."""
    click.echo(f"{len(unfinished)} run(s) not finished yet (their jobs are queued or running): "
               + ", ".join(str(r) for r in unfinished))
    click.echo("rerun the same command to wait for them, then evaluate and tabulate")
