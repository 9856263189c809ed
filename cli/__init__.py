"""The ``art-adr`` command line (click): train, recipes, evaluate, export, benchmark, sweep, analyze."""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from art_adr import __version__
from art_adr.registry import Registry

# the registry: each command, lazily, as the click command ``<name>_command`` of its module here (imported when
# the command runs or its help is shown)
COMMANDS: Registry[click.Command] = Registry("command")
COMMANDS.register_lazy("train", "art_adr.cli.train:train_command")
COMMANDS.register_lazy("recipes", "art_adr.cli.train:recipes_command")
COMMANDS.register_lazy("evaluate", "art_adr.cli.evaluate:evaluate_command")
COMMANDS.register_lazy("export", "art_adr.cli.export:export_command")
COMMANDS.register_lazy("benchmark", "art_adr.cli.benchmark:benchmark_command")
COMMANDS.register_lazy("sweep", "art_adr.cli.sweep:sweep_command")
COMMANDS.register_lazy("analyze", "art_adr.cli.analyze:analyze_command")


def commands_table() -> str:
    """The Markdown table of the commands and their one-line help (README's "Commands" table is this text)."""
    from art_adr.tables import markdown_table

    ctx = click.Context(main)
    rows = [[f"`art-adr {name}`", main.get_command(ctx, name).get_short_help_str(limit=200)]
            for name in main.list_commands(ctx)]
    return "\n".join(markdown_table(["command", "what it does"], rows))


class LazyGroup(click.Group):
    """Imports each command's module only when it is run (keeps ``--help`` fast, torch imports lazy)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return COMMANDS.get(name) if name in COMMANDS else None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; expected errors become one ``Error: ...`` line and exit code 2 (``--debug``: traceback)."""
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C: one line and 130 in every command (click's "Aborted!" is exit 1)
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            if debug and exc.__context__ is not None:
                traceback.print_exception(exc.__context__, file=sys.stderr)
            raise one_line_click_error(exc) from None
        except Exception as exc:
            if type(exc).__name__ == "RunInterrupted" and not debug:  # SIGTERM: stopped at a checkpoint
                click.echo(f"\n{exc}", err=True)
                sys.exit(128 + int(getattr(exc, "signum", 15)))
            if debug or not expected_error(exc):
                raise
            if disk_full(exc):
                raise disk_full_error(exc, "free some space and run the same command again") from None
            error = click.ClickException(one_line(exc))
            error.exit_code = 2
            raise error from None


def one_line_click_error(exc: click.ClickException) -> click.ClickException:
    """Any click error as one ``Error: ...`` line, exit code 2: a usage error names the command's ``--help``
    instead of click's three-line usage header, and a message with line breaks is joined."""
    text = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError):
        path = exc.ctx.command_path if exc.ctx is not None else "art-adr"
        text += f" (see: {path} --help)"
    error = click.ClickException(text)
    error.exit_code = 2 if exc.exit_code in (1, 2) else exc.exit_code
    return error


def expected_error(exc: BaseException) -> bool:
    """A user-facing mistake or environment problem (bad value, missing file, disk full, no GPU memory),
    not a bug: ``ValueError`` (``ConfigError``, ``DatasetError``, ``CheckpointError``, ``RunError``,
    ``TrainingDivergedError`` ...), ``OSError``, ``ImportError`` or torch's out-of-memory error."""
    return isinstance(exc, (ValueError, OSError, ImportError)) or type(exc).__name__ == "OutOfMemoryError"


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for want of space (a full disk or an exhausted quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(exc: BaseException, safe: str) -> click.ClickException:
    """The one ``Error:`` line (exit code 2) of a full disk: the file that could not be written and ``safe``,
    what is left as it was and what to do."""
    where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
    error = click.ClickException(f"disk full: no space left on device{where}; {safe}")
    error.exit_code = 2
    return error


def one_line(exc: BaseException) -> str:
    """The error's message on one line; the type is named unless it is one of art-adr's own errors."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    own = type(exc).__module__.startswith("art_adr")
    return text if own else f"{type(exc).__name__}: {text}"


def long_flag(param: click.Parameter) -> str:
    """An option's long flag (``--quiet`` of ``-q/--quiet``), an argument's name."""
    flags = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return flags[0] if flags else str(param.name)


def quiet_option(help: str = "No progress output.") -> Callable[[Any], Any]:
    """``-q/--quiet``, which every command has."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


class Number(click.ParamType):
    """A number or a fraction (``0.1``, ``8/255``) as a float, read with the command line — before a command
    imports torch — so a bad value is an error in well under a second that names the option. ``low``/``high``:
    an optional range (``low_open``: ``low`` itself excluded); ``what`` names the value in the range error."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False,
                 what: str = "the value", why: str = "") -> None:
        self.low, self.high, self.low_open, self.what, self.why = low, high, low_open, what, why

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from art_adr.budget import parse_number

        try:
            number = parse_number(value)
        except ValueError:
            self.fail(f"not a number: {value!r}; give a number or a fraction like 8/255", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        if number != number or too_low or (self.high is not None and number > self.high):
            left = "(" if self.low_open else "["
            interval = f"{left}{'-∞' if self.low is None else f'{self.low:g}'}, " \
                       f"{'∞)' if self.high is None else f'{self.high:g}]'}"
            self.fail(f"{self.what} must be in {interval}{' ' + self.why if self.why else ''}, got {value!r}",
                      param, ctx)
        return number


class NumberList(click.ParamType):
    """A comma list of numbers or fractions (``1.5,2,8/255``) as floats, checked with the command line; with
    ``auto``: also the word ``auto`` (kept as the text ``"auto"``), and at most ``most`` numbers."""

    name = "numbers"

    def __init__(self, auto: bool = False, most: int | None = None) -> None:
        self.auto, self.most = auto, most

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "START[,END]|auto" if self.auto else "NUMBER[,NUMBER...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if self.auto and value.strip().lower() == "auto":
            return "auto"
        items = [t for t in value.replace(":", ",").split(",") if t.strip()] if self.auto else \
            [t for t in value.split(",") if t.strip()]
        what = "a number or start,end" + (" or auto" if self.auto else "") if self.most == 2 \
            else "a comma list of numbers"
        if not items or (self.most is not None and len(items) > self.most):
            self.fail(f"{value!r}: {what}", param, ctx)
        return [Number().convert(t, param, ctx) for t in items]


NUMBER = Number()


class LateHelpOption(click.Option):
    """An option whose help text ends with ``late_help()``, made when the help is shown: for a list read from a
    registry that imports torch (the architectures), so that importing the command stays torch-free."""

    def __init__(self, *args: Any, late_help: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.late_help, self.first_help = late_help, self.help or ""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = f"{self.first_help} {self.late_help()}".strip()
        return super().get_help_record(ctx)


class ExistingPath(click.Path):
    """A path that must exist, checked with the command line (before torch is imported); the error names it as
    ``what`` (``checkpoint not found: PATH``)."""

    def __init__(self, what: str, path_type: type = str) -> None:
        super().__init__(path_type=path_type)
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if not Path(path).exists():
            self.fail(f"{self.what} not found: {value}", param, ctx)
        return path


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="art-adr")
@click.option("--debug", is_flag=True, help="Show the full Python traceback of errors (for bug reports).")
def main(debug: bool) -> None:
    """ADR (Annealing Self-Distillation Rectification) adversarial training for ART."""
    from art_adr.logs import show_messages

    show_messages()  # the trainers' epoch summaries (module loggers) print above the progress bars


def resolve_cli_device(name: str) -> str:
    """``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) through art-adr's one device picker
    (``art_adr.estimator.resolve_device``); a missing GPU or a bad name is one ``Error: --device: ...`` line
    (exit code 2), not a usage header."""
    from art_adr.estimator import resolve_device

    try:
        return str(resolve_device(name))
    except ValueError as exc:
        error = click.ClickException(f"--device: {exc}")
        error.exit_code = 2
        raise error from None


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items → ``{key: value}``; values are read as YAML (``0.1``, ``[1, 2]``, ``{a: 1}``),
    falling back to the plain string."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.UsageError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if _yaml_tag(text):
            raise click.UsageError(f"--set {key}: YAML tags ({_yaml_tag(text)}) are not allowed in values; quote "
                                   f"the text to mean it literally: --set \"{key}='...'\"")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if key in out and out[key] != value:
            raise click.UsageError(f"--set {key}={out[key]!r} and --set {key}={value!r} give {key} two values: "
                                   f"give it once")
        out[key] = value
    return out


def _yaml_tag(text: str) -> str | None:
    """The first YAML tag (``!!python/object/apply:...``, ``!!str``, ``!x``) of a ``--set`` value, else ``None``."""
    import yaml

    try:
        for token in yaml.scan(text):
            if isinstance(token, yaml.TagToken):
                handle, suffix = token.value
                return f"{handle or ''}{suffix}"
    except yaml.YAMLError:  # not YAML: read as plain text, where a '!' is only a character
        return None
    return None
