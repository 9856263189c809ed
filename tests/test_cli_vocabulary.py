"""One vocabulary on the command line: every command names the same thing the same way, has the same short flags
and ``-q``, shows its defaults one way, and keeps its old spellings only as hidden aliases that warn."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from art_adr.cli import Command, DeprecatedOption, deprecation_warning, long_flag, main
from art_adr.config import FIELDS

# concept -> (its one long flag, spellings that must not name it any more, except as a hidden alias)
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


def _options(command: click.Command, hidden: bool = False) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.hidden == hidden]


def _longs(option: click.Option) -> list[str]:
    return [o for o in option.opts + option.secondary_opts if o.startswith("--")]


def test_the_group_has_every_command_as_a_vocabulary_command():
    commands = _commands()
    assert set(commands) == {"train", "recipes", "evaluate", "export", "benchmark", "sweep", "analyze"}
    assert all(isinstance(c, Command) for c in commands.values()), commands


def test_one_name_per_concept():
    for name, command in _commands().items():
        for option in _options(command):
            for concept, (flag, old) in CONCEPTS.items():
                assert not set(_longs(option)) & old, f"{name} {option.opts}: {concept} is {flag}"
        for option in _options(command, hidden=True):
            for concept, (flag, old) in CONCEPTS.items():
                if set(_longs(option)) & old:
                    new = next(p for p in command.params if p.name == option.replaced_by)
                    assert long_flag(new) == flag, f"{name}: {option.opts} is an alias of {concept}, {flag}"
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
    expected = {"--out": {"-o"}, "--recipe": {"-r"}, "--dataset": {"-d"}, "--quiet": {"-q"}}
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
    return "student,teacher" if param.name == "deprecated_models" else "1"


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


def _aliases() -> list[tuple[str, str]]:
    return [(name, option.name) for name, command in _commands().items()
            for option in _options(command, hidden=True)]


def test_the_five_old_aliases_and_the_renamed_flags_are_all_there():
    flags = {(name, opt) for name, command in _commands().items() for o in _options(command, hidden=True)
             for opt in o.opts + o.secondary_opts}
    older = {("evaluate", "--n-eval"), ("evaluate", "--version"), ("evaluate", "--no-progress"),
             ("benchmark", "--n-eval"), ("sweep", "--n-val")}
    renamed = {("evaluate", "--pgd-steps"), ("evaluate", "--cw-steps"), ("evaluate", "--sanity-steps"),
               ("evaluate", "--sanity-eps-steps"), ("analyze", "--steps"), ("benchmark", "--attack"),
               ("benchmark", "--models"), ("sweep", "--attack"), ("sweep", "--model"), ("sweep", "--temperature"),
               ("sweep", "--interpolation")}
    assert older | renamed <= flags


@pytest.mark.parametrize("command_name,alias", _aliases())
def test_every_hidden_option_is_an_old_spelling_that_warns_and_still_works(tmp_path, command_name, alias):
    command = _commands()[command_name]
    option = next(p for p in command.params if p.name == alias)
    assert isinstance(option, DeprecatedOption), f"{command_name} {option.opts}: hidden, but not a deprecated alias"
    new = next(p for p in command.params if p.name == option.replaced_by)
    if option.is_flag:  # a flag pair: its second spelling (--no-progress)
        typed, args = option.spelling(False), [option.secondary_opts[0]]
        expected = option.convert(False) if option.convert else False
    else:
        value = _sample(option, tmp_path)
        typed, args = option.spelling(), [option.opts[0], value]
        expected = option.type.convert(value, option, None)
        expected = option.convert(expected) if option.convert else expected
    recorder, seen = _recording(command)
    result = CliRunner().invoke(recorder, [*_required_args(command, tmp_path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert deprecation_warning(typed, long_flag(new)) in result.output
    assert seen[new.name] == expected and alias not in seen


def test_an_old_and_a_new_spelling_that_disagree_are_a_usage_error():
    evaluate = _commands()["evaluate"]
    recorder, seen = _recording(evaluate)
    result = CliRunner().invoke(recorder, ["run", "--n-eval", "5", "--n-examples", "6"])
    assert result.exit_code == 2 and "--n-eval is the old spelling of --n-examples" in result.output and not seen
    result = CliRunner().invoke(recorder, ["run", "--n-eval", "5", "--n-examples", "5"])
    assert result.exit_code == 0 and seen["n_examples"] == 5
    result = CliRunner().invoke(recorder, ["run", "-q", "--no-progress"])  # they agree: quiet
    assert result.exit_code == 0 and seen["quiet"] is True and "--no-progress is deprecated" in result.output


def test_a_command_refuses_an_alias_of_an_option_it_lacks():
    from art_adr.cli import deprecated_option

    with pytest.raises(ValueError, match="--old replaces 'new'"):
        click.command("x", cls=Command)(deprecated_option("--old", "new")(lambda: None))


def test_old_models_list_is_read_as_which():
    from art_adr.cli.benchmark import which_from_models

    assert [which_from_models(t) for t in ("student,teacher", "teacher", " student ")] == ["both", "teacher",
                                                                                          "student"]
    with pytest.raises(click.BadParameter, match="student and/or teacher"):
        which_from_models("ema")


def _stopped(seen: dict[str, Any], key: str):
    def fake(*args: Any, **kw: Any) -> None:
        seen[key] = kw
        raise ValueError("stop here")
    return fake


def test_old_spellings_reach_benchmark_and_sweep_as_the_new_ones(tmp_path, monkeypatch):
    import art_adr.experiments

    seen: dict[str, Any] = {}
    monkeypatch.setattr(art_adr.experiments, "run_benchmark", _stopped(seen, "benchmark"))
    monkeypatch.setattr(art_adr.experiments, "run_sweep", _stopped(seen, "sweep"))
    runner = CliRunner()
    base = ["benchmark", "--dataset", "fashion-mnist", "--device", "cpu", "--out", str(tmp_path / "b")]
    for args in (["--attack", "pgd,aa", "--models", "teacher", "--n-eval", "7"],
                 ["--attacks", "clean,pgd,aa", "--which", "teacher", "--n-examples", "7", "--val-size", "40"]):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 2 and "stop here" in result.output, result.output
        kw = seen.pop("benchmark")
        assert (kw["attacks"], kw["models"], kw["n_eval"]) == (("clean", "pgd", "aa"), ["teacher"], 7)
    assert kw["overrides"]["val_size"] == 40  # --val-size overrides the fashion-mnist budget's 500
    base = ["sweep", "-r", "fashion-mnist-at-adr", "--device", "cpu", "--out", str(tmp_path / "s")]
    for args in (["--temperature", "1.5,2", "--interpolation", "0.5", "--model", "teacher", "--attack", "aa",
                  "--n-val", "9"],
                 ["--temperatures", "1.5,2", "--interpolations", "0.5", "--which", "teacher", "--attacks", "val,aa",
                  "--n-examples", "9", "--val-size", "50"]):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 2 and "stop here" in result.output, result.output
        kw = seen.pop("sweep")
        assert (kw["temperatures"], kw["interpolations"], kw["model"], kw["attack"], kw["n_val"]) == \
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
    for path in (root / "README.md", root / "docs" / "DESIGN.md"):
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
