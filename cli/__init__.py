"""The ``art-adr`` command line (click): train, recipes, evaluate, export, benchmark, analyze."""

from __future__ import annotations

import importlib

import click

from art_adr import __version__

# command name -> module (inside art_adr.cli) holding a click command of that name
COMMANDS = {
    "train": "train",
    "recipes": "train",
    "evaluate": "evaluate",
    "export": "export",
    "benchmark": "benchmark",
    "analyze": "analyze",
}


class LazyGroup(click.Group):
    """Imports each command's module only when it is run (keeps ``--help`` fast, torch imports lazy)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"art_adr.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"art_adr.cli.{module}":
                return None
            raise
        return getattr(mod, name.replace("-", "_") + "_command", None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="art-adr")
def main() -> None:
    """ADR (Annealing Self-Distillation Rectification) adversarial training for ART."""


if __name__ == "__main__":  # pragma: no cover
    main()
