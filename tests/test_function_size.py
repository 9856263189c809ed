"""Functions that fit on a screen: no function or method under art_adr/ (library, run layer, tools) is longer
than MAX_LINES, counted from its `def` line to its last line (decorators not counted; a nested function counts
on its own and inside the one that holds it)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


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


def test_no_function_under_art_adr_is_longer_than_a_screen():
    offenders = [f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
                 for path in sorted((ROOT / "art_adr").rglob("*.py"))
                 for name, line, length in long_functions(path.read_text())]
    assert not offenders, f"functions over {MAX_LINES} lines (split them): " + "; ".join(offenders)
