"""The shape of the package at a git revision: files, lines, the largest modules, the trainer's size and bases,
the registries (docs/DESIGN.md's "The house, before and after" table is this script's output).

    python scripts/house_stats.py ca6b143 HEAD     # one column per revision
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("art_adr", "cli")
TRAINER = "AdversarialTrainerADR"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def sources(rev: str) -> dict[str, str]:
    """Every ``.py`` file of the package folders at ``rev``: path -> text."""
    paths = [p for p in _git("ls-tree", "-r", "--name-only", rev, *FOLDERS).splitlines() if p.endswith(".py")]
    return {p: _git("show", f"{rev}:{p}") for p in paths}


def _class(files: dict[str, str], name: str) -> tuple[str, ast.ClassDef] | None:
    """``(path, class node)`` of the class ``name`` defined in one of ``files``."""
    for path, text in files.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name == name:
                return path, node
    return None


def _methods(cls: ast.ClassDef) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [f for f in cls.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]


def trainer_shape(files: dict[str, str], name: str) -> dict[str, object]:
    """The trainer class: its bases, methods (properties included; also with those of the bases defined in the
    package, i.e. mixins), the lines of the files defining it and its package bases, constructor parameters."""
    path, cls = _class(files, name)
    bases = [ast.unparse(b) for b in cls.bases]
    own = [_class(files, b) for b in bases if _class(files, b) is not None]
    init = next(f for f in _methods(cls) if f.name == "__init__")
    return {"bases": ", ".join(bases), "methods": len(_methods(cls)),
            "with_bases": len(_methods(cls)) + sum(len(_methods(node)) for _, node in own),
            "class_lines": sum(files[p].count("\n") for p in {path, *(p for p, _ in own)}),
            "init_params": len(init.args.args) - 1 + len(init.args.kwonlyargs)}


def stats(rev: str) -> dict[str, object]:
    """Files, lines, the five largest modules, the trainer's shape and the ``Registry`` instances at ``rev``."""
    files = sources(rev)
    lines = {p: t.count("\n") for p, t in files.items()}
    largest = sorted(lines.items(), key=lambda kv: -kv[1])[:5]
    registries = sum(t.count("= Registry(") for t in files.values())
    return {"rev": _git("rev-parse", "--short", rev).strip(), "files": len(files), "lines": sum(lines.values()),
            "largest": ", ".join(f"{Path(p).relative_to(p.split('/')[0])} {n}" for p, n in largest),
            **trainer_shape(files, TRAINER), "registries": registries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="+", help="git revisions, one column each")
    columns = [stats(rev) for rev in parser.parse_args().revs]
    rows = [("revision", "rev"), ("`.py` files in art_adr/ + cli/", "files"), ("lines", "lines"),
            ("largest modules (lines)", "largest"), ("`AdversarialTrainerADR` bases", "bases"),
            ("its methods and properties", "methods"), ("… with those of its mixins", "with_bases"),
            ("lines of the files defining it and its mixins", "class_lines"),
            ("its constructor parameters", "init_params"),
            ("`Registry` instances", "registries")]
    print("| | " + " | ".join(f"`{c['rev']}`" for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, key in rows[1:]:
        print(f"| {label} | " + " | ".join(str(c[key]) for c in columns) + " |")


if __name__ == "__main__":
    main()
