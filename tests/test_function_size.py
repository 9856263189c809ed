"""Functions that fit on a screen: no function or method under art_adr/ (library, run layer, tools), cli/
(installed as art_adr.cli) or scripts/ is longer than MAX_LINES, counted from its `def` line to its last line
(decorators not counted; a nested function counts on its own and inside the one that holds it)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60
FOLDERS = ("art_adr", "cli", "scripts")  # the library and its tools, the command line, the recipe generator


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """``(name, first line, length)`` of every function in ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return sorted(found, key=lambda f: f[1])


def _function(name: str, lines: int, decorators: int = 0, indent: str = "") -> str:
    """Source of a function ``lines`` long (the def line included) under ``decorators`` decorator lines."""
    body = [f"{indent}@staticmethod"] * decorators + [f"{indent}def {name}():"]
    body += [f"{indent}    x = {i}" for i in range(lines - 1)]
    return "\n".join(body) + "\n"


def test_the_checker_counts_def_to_last_line():
    assert long_functions(_function("ok", 60)) == []
    assert long_functions(_function("too_long", 61)) == [("too_long", 1, 61)]
    assert long_functions("class A:\n" + _function("m", 60, decorators=5, indent="    ")) == []
    nested = "def outer():\n" + textwrap.indent(_function("inner", 61), "    ") + "    return inner\n"
    assert [f[0] for f in long_functions(nested)] == ["outer", "inner"]
    assert long_functions("async " + _function("coro", 61)) == [("coro", 1, 61)]


def offenders(root: Path, folders: tuple[str, ...] = FOLDERS) -> list[str]:
    """``path:line name (N lines)`` of every function over :data:`MAX_LINES` in ``folders`` under ``root``."""
    return [f"{path.relative_to(root)}:{line} {name} ({length} lines)"
            for folder in folders for path in sorted((root / folder).rglob("*.py"))
            for name, line, length in long_functions(path.read_text())]


def test_the_walk_covers_cli_and_scripts(tmp_path):
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ok.py").write_text(_function("fine", 60))
    (tmp_path / "cli" / "cmd.py").write_text(_function("command", 61))
    (tmp_path / "scripts" / "gen.py").write_text("x = 1\n\n" + _function("main", 70))
    assert offenders(tmp_path) == ["cli/cmd.py:1 command (61 lines)", "scripts/gen.py:3 main (70 lines)"]


def test_no_function_of_the_library_cli_or_scripts_is_longer_than_a_screen():
    found = offenders(ROOT)
    assert not found, f"functions over {MAX_LINES} lines (split them): " + "; ".join(found)
