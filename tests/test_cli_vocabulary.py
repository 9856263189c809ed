"""One vocabulary on the command line: every command names the same thing the same way, has the same short flags
and ``-q``, shows its defaults one way, and has no hidden options (no old spellings: 0.1.0 was never released)."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from art_adr.cli import long_flag, main
from art_adr.config import FIELDS

# concept -> (its one long flag, spellings that must not name it)
CONCEPTS = {
    "number of evaluation images": ("--n-examples", {"--n-eval", "--n-val", "--n-test", "--num-examples"}),
    "PGD iterations of an evaluation attack": ("--eval-max-iter", {"--pgd-steps", "--steps", "--eval-steps",
                                                                   "--pgd-iters", "--iterations"}),
    "model choice (student / teacher / both)": ("--which", {"--models", "--model"}),
    "attack list": ("--attacks", {"--attack"}),
    "AutoAttack version": ("--aa-version", {"--version"}),
    "output folder": ("--out", {"--output", "--out-dir", "--output-dir"}),
    "progress output": ("--quiet", {"--progress", "--no-progress", "--verbose", "--silent"}),
}
# options whose parameter name is not their flag (the function argument would shadow a builtin, or is plural)
DEST_EXCEPTIONS = {"--set": "sets", "--vs": "others", "--label": "labels", "--recipes": "recipe_names",
                   "--format": "fmt", "--long": "long_"}
# train's options that are not RunConfig fields (every other flag is named after the field it sets)
TRAIN_ONLY = {"recipe", "out", "resume", "sets", "stop_after_epochs", "logger", "quiet", "no_compile"}


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def _longs(option: click.Option) -> list[str]:
    return [o for o in option.opts + option.secondary_opts if o.startswith("--")]


def test_the_group_has_every_command():
    commands = _commands()
    assert set(commands) == {"train", "recipes", "evaluate", "export", "benchmark", "sweep", "analyze"}
    assert all(isinstance(c, click.Command) for c in commands.values()), commands


def test_no_command_has_a_hidden_option():
    hidden = [(name, p.opts) for name, command in _commands().items() for p in command.params
              if getattr(p, "hidden", False)]
    assert not hidden, f"hidden options (old spellings are not kept before the first release): {hidden}"


def test_one_name_per_concept():
    for name, command in _commands().items():
        for option in _options(command):
            for concept, (flag, old) in CONCEPTS.items():
                assert not set(_longs(option)) & old, f"{name} {option.opts}: {concept} is {flag}"
        visible = [o for option in _options(command) for o in _longs(option)]
        assert not [o for o in visible if o.endswith("-steps")], f"{name}: iterations are max-iter, as in RunConfig"


def test_a_long_flag_has_one_parameter_name_and_the_same_short_flags_everywhere():
    seen: dict[str, tuple[str, frozenset[str], str]] = {}
    for name, command in _commands().items():
        for option in _options(command):
            flag = long_flag(option)
            assert option.name == DEST_EXCEPTIONS.get(flag, flag[2:].replace("-", "_")), f"{name} {flag}"
            shorts = frozenset(o for o in option.opts if not o.startswith("--"))
            if flag in seen:
                other_name, other_shorts, first = seen[flag]
                assert (option.name, shorts) == (other_name, other_shorts), f"{flag}: {name} vs {first}"
            else:
                seen[flag] = (option.name, shorts, name)
    expected = {"--out": {"-o"}, "--recipe": {"-r", "-c"}, "--dataset": {"-d"}, "--quiet": {"-q"}}
    assert {flag: set(seen[flag][1]) for flag in expected} == expected


def test_every_command_has_quiet():
    for name, command in _commands().items():
        quiet = [o for o in _options(command) if o.name == "quiet"]
        assert quiet and set(quiet[0].opts) == {"--quiet", "-q"} and quiet[0].is_flag, name


def test_train_flags_are_named_after_their_run_config_fields():
    train = _commands()["train"]
    for option in _options(train):
        assert option.name in FIELDS or option.name in TRAIN_ONLY, option.opts
    for command in ("benchmark", "sweep"):  # the budget flags that become RunConfig overrides
        names = {o.name for o in _options(_commands()[command])}
        assert {"epochs", "subset", "val_size", "data_dir", "download", "amp", "device"} <= names, command


def test_defaults_are_shown_one_way():
    for name, command in _commands().items():
        for option in _options(command):
            text = option.help or ""
            assert "[default" not in text and "(default" not in text, f"{name} {option.opts}: use show_default"
            plain_switch = option.is_flag and not option.secondary_opts
            if plain_switch or option.multiple or option.required or option.count:
                continue
            assert option.show_default, f"{name} {option.opts} does not show its default"


def _sample(param: click.Parameter, tmp_path: Any) -> str:
    """A value the parameter's type accepts, as typed on the command line."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[-1])
    if isinstance(kind, click.Path):
        return str(tmp_path)
    if isinstance(kind, (click.IntRange, click.types.IntParamType)):
        return "3"
    if isinstance(kind, (click.FloatRange, click.types.FloatParamType)):
        return "0.5"
    return "1"


def _required_args(command: click.Command, tmp_path: Any) -> list[str]:
    args: list[str] = []
    for param in command.params:
        if param.required and isinstance(param, click.Argument):
            args.append(str(tmp_path))
        elif param.required:
            args += [long_flag(param), _sample(param, tmp_path)]
    return args


def _recording(command: click.Command) -> tuple[click.Command, dict[str, Any]]:
    """A copy of ``command`` whose function only records the arguments it is called with."""
    seen: dict[str, Any] = {}
    recorder = copy.copy(command)
    recorder.callback = lambda **kw: seen.update(kw)
    return recorder, seen


def test_the_removed_old_spellings_are_unknown_options():
    removed = {"evaluate": ("--n-eval", "--version", "--no-progress", "--pgd-steps", "--cw-steps", "--sanity-steps",
                            "--sanity-eps-steps"),
               "analyze": ("--steps",), "benchmark": ("--n-eval", "--attack", "--models"),
               "sweep": ("--n-val", "--attack", "--model", "--temperature", "--interpolation")}
    commands = _commands()
    for name, flags in removed.items():
        known = {o for p in commands[name].params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        assert not set(flags) & known, name
    result = CliRunner().invoke(main, ["evaluate", "run", "--n-eval", "5"])
    assert result.exit_code == 2 and "No such option '--n-eval'. Did you mean '--n-examples'?" in result.output


def _stopped(seen: dict[str, Any], key: str):
    def fake(*args: Any, **kw: Any) -> None:
        seen[key] = kw
        raise ValueError("stop here")
    return fake


def test_the_flags_reach_benchmark_and_sweep(tmp_path, monkeypatch):
    import art_adr.experiments

    seen: dict[str, Any] = {}
    monkeypatch.setattr(art_adr.experiments, "run_benchmark", _stopped(seen, "benchmark"))
    monkeypatch.setattr(art_adr.experiments, "run_sweep", _stopped(seen, "sweep"))
    runner = CliRunner()
    base = ["benchmark", "--dataset", "fashion-mnist", "--device", "cpu", "--out", str(tmp_path / "b")]
    result = runner.invoke(main, [*base, "--attacks", "clean,pgd,aa", "--which", "teacher", "--n-examples", "7",
                                  "--val-size", "40"])
    assert result.exit_code == 2 and "stop here" in result.output, result.output
    kw = seen.pop("benchmark")
    assert (kw["attacks"], kw["models"], kw["n_examples"]) == (("clean", "pgd", "aa"), ["teacher"], 7)
    assert kw["overrides"]["val_size"] == 40  # --val-size overrides the fashion-mnist budget's 500
    base = ["sweep", "-r", "fashion-mnist-at-adr", "--device", "cpu", "--out", str(tmp_path / "s")]
    result = runner.invoke(main, [*base, "--temperatures", "1.5,2", "--interpolations", "0.5", "--which", "teacher",
                                  "--attacks", "val,aa", "--n-examples", "9", "--val-size", "50"])
    assert result.exit_code == 2 and "stop here" in result.output, result.output
    kw = seen.pop("sweep")
    assert (kw["temperatures"], kw["interpolations"], kw["model"], kw["attack"], kw["n_examples"]) == \
        ([1.5, 2.0], [0.5], "teacher", "aa", 9)
    assert kw["overrides"]["val_size"] == 50
    result = runner.invoke(main, [*base, "--attacks", "val"])
    assert seen.pop("sweep")["attack"] == "val"
    result = runner.invoke(main, [*base, "--attacks", "val,xx"])
    assert result.exit_code == 2 and "--attacks" in result.output and "sweep" not in seen


def test_recipes_quiet_lists_only_the_names():
    result = CliRunner().invoke(main, ["recipes", "-q", "--match", "fashion-mnist-ro-"])
    names = result.output.split()
    assert result.exit_code == 0 and names and all(n.startswith("fashion-mnist-ro-") for n in names)
    assert "fashion-mnist-ro-at-adr" in names and len(names) == len(set(names))


def _command_lines(text: str) -> list[str]:
    """The ``art-adr <command> ...`` lines of a shell text (continuations joined, comments dropped)."""
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    return [re.split(r"\s#\s|\s\s+#", line[line.index("art-adr "):])[0] for line in lines if "art-adr " in line]


def _documented_commands() -> list[tuple[str, str]]:
    root = Path(__file__).resolve().parents[1]
    found = []
    for path in (root / "README.md", *sorted((root / "docs").rglob("*.md"))):
        text = path.read_text()
        found += [(path.name, line) for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
                  for line in _command_lines(block)]
        found += [(path.name, span) for span in re.findall(r"`(art-adr [^`]+)`", text)]
    for path in [root / "Makefile", *sorted((root / "benchmarks").glob("*.sh"))]:
        found += [(path.name, line) for line in _command_lines(path.read_text())]
    return found


def test_readme_design_makefile_and_scripts_use_only_the_current_spellings():
    commands = _commands()
    checked = 0
    for source, line in _documented_commands():
        if len(line.split()) < 2 or line.split()[1] not in commands:  # prose such as "art-adr did not install"
            continue
        words = shlex.split(line.replace("...", ""))
        visible = {o for option in _options(commands[words[1]]) for o in option.opts + option.secondary_opts}
        for word in words[2:]:
            flag = word.split("=")[0]
            if re.fullmatch(r"--?[a-z][a-z0-9-]*", flag):
                assert flag in visible | {"--help", "-h"}, f"{source}: {flag} is not an option of {words[1]}: {line}"
        checked += 1
    assert checked >= 30  # README, Makefile and benchmarks/fashion_mnist_ro.sh hold dozens


def test_resume_with_a_path_points_to_out(tmp_path):
    """timm's ``--resume PATH``: the run directory is ``--out`` here; the error says so, with the command."""
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert f"art-adr train --out {tmp_path} --resume" in result.output and "takes no path" in result.output
    other = CliRunner().invoke(main, ["train", "stray"])  # another extra argument: click's own message
    assert other.exit_code == 2 and "unexpected extra argument (stray)" in other.output


def test_config_is_recipes_short_form_not_a_second_option():
    train = _commands()["train"]
    recipe = [o for o in _options(train) if o.name == "recipe"]
    assert len(recipe) == 1 and {"-r", "--recipe", "-c", "--config"} == set(recipe[0].opts)
    assert "-c/--config" in recipe[0].help
    ctx = train.make_context("train", ["-c", "fashion-mnist-at-adr", "-q"])
    assert ctx.params["recipe"] == "fashion-mnist-at-adr"
