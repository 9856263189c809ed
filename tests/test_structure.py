"""The shape of the tree, read with ``ast`` (nothing is imported): no import circles, no private cross-imports.

What the checker reads, for every module of ``art_adr/``, ``cli/`` (installed as ``art_adr.cli``) and
``shims/autoattack`` (installed as ``autoattack``):

- **Edges** of the import graph: every ``import`` / ``from ... import`` statement, at module level and inside
  functions and classes, absolute and relative. ``from P import n`` is an edge to ``P.n`` when that is a module,
  else to ``P`` (for a package: its ``__init__``, its public face). Not edges: imports under
  ``if TYPE_CHECKING:`` (never run) and imports inside a module-level ``__getattr__`` (PEP 562: the lazy doors
  through which a name is imported on first use; they run when the attribute is asked for, never while a
  module imports). Dynamic imports (``importlib.import_module(f"...")``) are not seen.
- **Layers.** A library module (``art_adr/`` outside the tool packages ``runs``, ``evaluation``, ``analysis``,
  ``robustbench``, ``experiments``, and outside ``cli``) imports no tool package in any way it can run: at module
  level, in a function, in a module ``__getattr__`` or through ``importlib.import_module("constant")``
  (:data:`LAYER_EXCEPTIONS`: ``launch`` builds on ``runs``).
- **Packages.** A package's ``__init__`` may import (re-export) its own submodules: that is an ordinary edge,
  and it closes a circle only when a submodule imports its package's face back, which is the real hazard (the
  face is half-initialised while its submodules load): submodules import their siblings, never the face. The
  implicit step "importing ``P.x`` first runs ``P/__init__``" is not an edge: Python orders it itself.
- **Private names** (``_x``, not dunders) of another module: imported (``from .m import _x``), read as a module
  attribute (``m._x``, ``pkg.m._x``, ``getattr(m, "_x")``), or, for objects, an attribute ``obj._x`` (``obj``
  not ``self``/``cls``/``super()``) whose name only *another* module of the tree defines (a method ``_x`` or an
  assignment ``self._x = ...`` there, and not in the module reading it): ``trainer._raw`` read by the run layer.
  A module's own private names, and private names of libraries outside the tree (``torch._foreach_*``), are
  fine.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> installed package name (pyproject.toml's [tool.setuptools] package-dir)
SOURCES = {"art_adr": "art_adr", "cli": "art_adr.cli", "shims/autoattack": "autoattack"}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    edges: dict[str, int] = field(default_factory=dict)  # imported module -> first line
    # every module it can import, edges or not (``__getattr__`` doors, ``import_module("...")``): the layering rule
    imports: dict[str, int] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)  # local name -> internal module it names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def collect(root: Path, sources: dict[str, str] = SOURCES) -> dict[str, Module]:
    """Every ``.py`` file under the source folders, by its installed module name."""
    modules: dict[str, Module] = {}
    for folder, package in sources.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join([package, *parts])
            modules[name] = Module(name, path, is_package, ast.parse(path.read_text(), str(path)))
    return modules


def _walk_imports(node: ast.AST, in_getattr: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """``(import statement, counts as an edge)`` in ``node``, in any depth."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, not in_getattr
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _walk_imports(ast.Module(body=child.orelse, type_ignores=[]), in_getattr)
        else:
            lazy = in_getattr or (isinstance(child, ast.FunctionDef) and child.name == "__getattr__"
                                  and isinstance(node, ast.Module))
            yield from _walk_imports(child, lazy)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _base(module: Module, stmt: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if not stmt.level:
        return stmt.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    package = package[: len(package) - (stmt.level - 1)]
    return ".".join(package + ([stmt.module] if stmt.module else []))


def _known(name: str, modules: dict[str, Module]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the tree."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules:
            return ".".join(parts[:k])
    return None


def analyse(modules: dict[str, Module]) -> list[str]:
    """Fill every module's edges and bindings; return the private names imported from another module."""
    problems = []
    for mod in modules.values():
        for stmt, edge in _walk_imports(mod.tree):
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    target = _known(alias.name, modules)
                    if target is None:
                        continue
                    mod.imports.setdefault(target, stmt.lineno)
                    if edge:
                        mod.edges.setdefault(target, stmt.lineno)
                    bound = alias.name if alias.asname else alias.name.split(".")[0]
                    if _known(bound, modules) == bound:
                        mod.bindings[alias.asname or bound] = bound
                continue
            base = _base(mod, stmt)
            if _known(base, modules) is None:
                continue
            for alias in stmt.names:
                full = f"{base}.{alias.name}"
                target = full if full in modules else _known(base, modules)
                if target != mod.name:
                    mod.imports.setdefault(target, stmt.lineno)
                if edge and target != mod.name:
                    mod.edges.setdefault(target, stmt.lineno)
                if full in modules:
                    mod.bindings[alias.asname or alias.name] = full
                if _private(alias.name):
                    problems.append(f"{mod.path.relative_to(ROOT) if ROOT in mod.path.parents else mod.path}:"
                                    f"{stmt.lineno}: imports {alias.name} from {base}")
        for call in ast.walk(mod.tree):  # importlib.import_module("pkg.x"): a module named by a constant
            name = _dotted(call.func) if isinstance(call, ast.Call) else None
            if name and name[-1] == "import_module" and call.args and isinstance(call.args[0], ast.Constant):
                target = _known(str(call.args[0].value), modules)
                if target is not None and target != mod.name:
                    mod.imports.setdefault(target, call.lineno)
    return problems


# ---------------------------------------------------------------------------------------------- layering
TOOL_PACKAGES = ("runs", "evaluation", "analysis", "robustbench", "experiments")
# (library module, tool package) pairs docs/DESIGN.md allows: launching many runs builds on the run layer
LAYER_EXCEPTIONS = {("art_adr.launch", "art_adr.runs")}


def _tool_package(name: str, root: str) -> str | None:
    """``root.runs`` for ``root.runs`` or ``root.runs.files``; ``None`` for a module outside the tool packages."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[0] == root and parts[1] in TOOL_PACKAGES else None


def layer_violations(modules: dict[str, Module], root: str = "art_adr",
                     allowed: set[tuple[str, str]] = LAYER_EXCEPTIONS) -> list[str]:
    """Library modules of ``root`` (not a tool package, not ``root.cli``) that can import a tool package: at module
    level, in a function (lazily), in a module ``__getattr__`` or through ``import_module("...")``. Needs
    :func:`analyse` first."""
    problems = []
    for mod in modules.values():
        parts = mod.name.split(".")
        if parts[0] != root or _tool_package(mod.name, root) or (len(parts) > 1 and parts[1] == "cli"):
            continue
        for target, line in sorted(mod.imports.items()):
            tool = _tool_package(target, root)
            if tool is not None and (mod.name, tool) not in allowed:
                where = mod.path.relative_to(ROOT) if ROOT in mod.path.parents else mod.path
                problems.append(f"{where}:{line}: library module {mod.name} imports the tool package {target}")
    return problems


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` -> ``["a", "b", "c"]``; ``None`` for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def _defined_private(tree: ast.Module) -> set[str]:
    """Private attribute names a module defines: methods ``_x`` and assignments to ``self._x`` / ``cls._x``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name):
                    names.add(item.name)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return names


def private_accesses(modules: dict[str, Module]) -> list[str]:
    """Module attributes ``m._x`` of another module, and object attributes only another module defines."""
    owners: dict[str, set[str]] = {}
    for mod in modules.values():
        for name in _defined_private(mod.tree):
            owners.setdefault(name, set()).add(mod.name)
    problems = []
    for mod in modules.values():
        where = mod.path.relative_to(ROOT) if ROOT in mod.path.parents else mod.path
        for node in ast.walk(mod.tree):
            attr, chain = None, None
            if isinstance(node, ast.Attribute) and _private(node.attr):
                attr, chain = node.attr, _dotted(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "getattr", "setattr", "hasattr") and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                    and _private(node.args[1].value):
                attr, chain = node.args[1].value, _dotted(node.args[0])
            if attr is None:
                continue
            if chain is not None and chain[0] in mod.bindings:  # a module of the tree, maybe a.b.c
                target = _known(".".join([mod.bindings[chain[0]], *chain[1:]]), modules)
                if target is not None and target != mod.name:
                    problems.append(f"{where}:{node.lineno}: reads {attr} of module {target}")
                continue
            if chain is not None and chain[0] in ("self", "cls") and len(chain) == 1:
                continue
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) \
                    and isinstance(node.value.func, ast.Name) and node.value.func.id == "super":
                continue
            others = owners.get(attr, set()) - {mod.name}
            if others and mod.name not in owners.get(attr, set()):
                problems.append(f"{where}:{node.lineno}: reads {attr}, private to {', '.join(sorted(others))}")
    return problems


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The import circles: one per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in modules[v].edges:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in modules[v].edges:
                found.append(sorted(component))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return found


def _describe(component: list[str], modules: dict[str, Module]) -> str:
    inside = set(component)
    return "; ".join(f"{m} -> {t} (line {line})" for m in component for t, line in modules[m].edges.items()
                     if t in inside)


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    modules = collect(ROOT)
    analyse(modules)
    return modules


def test_the_tree_has_no_import_circles(tree):
    assert {"art_adr.runs", "art_adr.trainer", "art_adr.cli", "autoattack"} <= set(tree)
    assert tree["autoattack"].edges, "the shim's import of art_adr was not seen"
    found = cycles(tree)
    assert not found, "\n".join(_describe(c, tree) for c in found)


def test_the_library_never_imports_a_tool_package_not_even_lazily(tree):
    problems = layer_violations(tree)
    assert not problems, "\n".join(problems)


def test_no_module_imports_or_reads_another_modules_private_names():
    modules = collect(ROOT)
    problems = analyse(modules) + private_accesses(modules)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ the checker on planted trees
def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    modules = collect(tmp_path, {"pkg": "pkg"})
    return modules


def test_checker_finds_a_circle_through_a_function_level_import(tmp_path):
    modules = _plant(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "b.py": "def g():\n    from . import a  # the circle hides in a function\n    return a\n",
        "c.py": "from pkg import a\n",
    })
    analyse(modules)
    assert cycles(modules) == [["pkg.a", "pkg.b"]]


def test_checker_finds_a_submodule_importing_its_packages_face_but_not_a_re_export(tmp_path):
    files = {"__init__.py": "from .core import run\n", "core.py": "def run():\n    return 1\n",
             "__main__.py": "from pkg import run\n"}
    modules = _plant(tmp_path, files)
    analyse(modules)
    assert cycles(modules) == []  # the face re-exports; others import the face
    modules = _plant(tmp_path, {**files, "core.py": "from . import helper  # noqa\nfrom pkg import VERSION\n",
                                "helper.py": "", "__init__.py": "VERSION = 1\nfrom .core import run\n"})
    analyse(modules)
    assert cycles(modules) == [["pkg", "pkg.core"]]


def test_checker_ignores_type_checking_and_lazy_getattr_imports(tmp_path):
    modules = _plant(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nfrom .b import g\n",
        "b.py": "def __getattr__(name):\n    from .a import old\n    return old\n\ndef g():\n    pass\n",
    })
    analyse(modules)
    assert cycles(modules) == [] and set(modules["pkg.a"].edges) == {"pkg.b"}


def test_layering_checker_finds_lazy_getattr_and_import_module_imports_of_a_tool(tmp_path):
    modules = _plant(tmp_path, {
        "__init__.py": "", "runs/__init__.py": "from .files import RunLock\n", "runs/files.py": "RunLock = 1\n",
        "evaluation/__init__.py": "", "evaluation/zoo.py": "from ..models import Net\n",  # tool -> library: fine
        "launch.py": "from .runs import RunLock\n",  # allowed below
        "models.py": "Net = 1\n\ndef __getattr__(name):\n    from .evaluation import zoo\n    return zoo\n",
        "checkpoint.py": "def load():\n    from .runs.files import RunLock  # lazy\n    return RunLock\n",
        "trainer.py": "import importlib\n\ndef f():\n    return importlib.import_module('pkg.evaluation.zoo')\n",
        "cli/__init__.py": "from pkg.runs import RunLock\n",  # the command line sits above every layer
    })
    analyse(modules)
    text = "\n".join(layer_violations(modules, "pkg", {("pkg.launch", "pkg.runs")}))
    assert text.count("library module") == 3, text
    assert "pkg.models imports the tool package pkg.evaluation" in text  # a __getattr__ door
    assert "pkg.checkpoint imports the tool package pkg.runs.files" in text  # a function-level import
    assert "pkg.trainer imports the tool package pkg.evaluation.zoo" in text  # import_module("...")
    assert not any(name in text for name in ("pkg.launch ", "pkg.cli", "pkg.evaluation.zoo imports"))
    assert "pkg.evaluation" not in modules["pkg.models"].edges  # still no edge for the circle check


def test_checker_finds_private_imports_and_reads(tmp_path):
    modules = _plant(tmp_path, {
        "__init__.py": "",
        "a.py": "_SECRET = 1\n\nclass T:\n    def __init__(self):\n        self._raw = 0\n\n"
                "    def _evaluate(self):\n        return self._raw\n",
        "b.py": "from .a import _SECRET, T\nfrom . import a\nimport pkg.a\n\n"
                "def f(trainer: T):\n    trainer._evaluate = None\n    return trainer._raw, a._SECRET, pkg.a._SECRET,"
                " getattr(a, '_SECRET')\n",
        "c.py": "import torch\nfrom .a import T as _T  # a private alias of a public name is fine\n\n"
                "_alias = 1\n\nclass U:\n    def _own(self):\n        return self._own, torch._foreach_add_, _alias\n",
    })
    problems = analyse(modules) + private_accesses(modules)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "imports _SECRET from pkg.a" in text and "reads _evaluate, private to pkg.a" in text
    assert "reads _raw, private to pkg.a" in text and text.count("reads _SECRET of module pkg.a") == 3
    assert "c.py" not in text
