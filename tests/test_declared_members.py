"""Every class reads through ``self`` only what it declares: no mixin reading members of a host it does not know.

For each class defined in ``art_adr/``, ``cli/`` (installed as ``art_adr.cli``) and ``shims/autoattack``, an
attribute read ``self.x`` (or ``getattr(self, "x", ...)`` / ``hasattr(self, "x")``) in one of its methods must be
declared by the class or a class it inherits from. Declared, for a class of this tree: a method, property, nested
class, class-level assignment or annotation (dataclass fields) in its body, or, in one of its methods, an
assignment ``self.x = ...``, ``setattr(self, "x", ...)`` or ``self.register_buffer("x", ...)``; for a class from
a library (``nn.Module``, ART's ``Trainer``, ``Exception``): what ``dir()`` lists, and the attribute names its
``__init__`` sets. The classes are imported (for their method resolution order); their bodies are read with
``ast``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"art_adr": "art_adr", "cli": "art_adr.cli", "shims/autoattack": "autoattack"}
REGISTERS = ("register_buffer", "register_parameter", "register_module", "add_module")  # nn.Module's declarations


def _modules() -> list[str]:
    names = []
    for folder, package in SOURCES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            if parts[-1:] == ["__main__"]:  # runs the command line when imported
                continue
            names.append(".".join([package, *parts]))
    return names


def _self_name(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    if any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list):
        return None
    args = fn.args.posonlyargs + fn.args.args
    return args[0].arg if args else None


def _methods(node: ast.ClassDef) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [f for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _string_arg(call: ast.Call, owner: str) -> str | None:
    """``"x"`` of ``getattr(owner, "x", ...)`` / ``hasattr(owner, "x")`` / ``setattr(owner, "x", v)``."""
    if (isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr", "setattr") and len(call.args) >= 2
            and isinstance(call.args[0], ast.Name) and call.args[0].id == owner
            and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str)):
        return call.args[1].value
    return None


def declared_in_body(node: ast.ClassDef) -> set[str]:
    """What a class of this tree declares (see the module docstring)."""
    names: set[str] = set()
    for st in node.body:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(st.name)
        elif isinstance(st, ast.Assign):
            names.update(n.id for t in st.targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
            names.add(st.target.id)
    for fn in _methods(node):
        owner = _self_name(fn)
        for n in ast.walk(fn):
            if (isinstance(n, ast.Attribute) and not isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name)
                    and n.value.id == owner):
                names.add(n.attr)
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setattr":
                names.update(filter(None, [_string_arg(n, owner)]))
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in REGISTERS
                  and isinstance(n.func.value, ast.Name) and n.func.value.id == owner and n.args
                  and isinstance(n.args[0], ast.Constant)):
                names.add(n.args[0].value)  # self.register_buffer("mean", ...)
    return names


def reads(node: ast.ClassDef) -> list[tuple[str, int]]:
    """``(name, line)`` of every attribute its methods read through their ``self``."""
    found = []
    for fn in _methods(node):
        owner = _self_name(fn)
        if owner is None:
            continue
        for n in ast.walk(fn):
            if (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name)
                    and n.value.id == owner):
                found.append((n.attr, n.lineno))
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr"):
                name = _string_arg(n, owner)
                if name:
                    found.append((name, n.lineno))
    return found


def _library_declares(cls: type) -> set[str]:
    """A class from outside the tree: ``dir()`` and the names its ``__init__`` sets (``co_names`` / strings)."""
    names = set(dir(cls))
    init = getattr(cls.__dict__.get("__init__"), "__code__", None)
    if init is not None:
        names.update(init.co_names)
        names.update(c for c in init.co_consts if isinstance(c, str))
    return names


def _in_tree(cls: type) -> bool:
    return cls.__module__.split(".")[0] in ("art_adr", "autoattack") and _class_node(cls) is not None


_NODES: dict[type, ast.ClassDef | None] = {}


def _class_node(cls: type) -> ast.ClassDef | None:
    if cls not in _NODES:
        try:
            source = textwrap.dedent(inspect.getsource(cls))
            _NODES[cls] = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef))
        except (OSError, TypeError, StopIteration):
            _NODES[cls] = None
    return _NODES[cls]


def undeclared_reads(cls: type) -> list[str]:
    """``"Class.name (line)"`` for each read through ``self`` that no class of ``cls``'s MRO declares."""
    node = _class_node(cls)
    if node is None:
        return []
    declared: set[str] = set()
    for base in cls.__mro__:
        body = _class_node(base) if _in_tree(base) else None
        declared |= declared_in_body(body) if body is not None else _library_declares(base)
    first = inspect.getsourcelines(cls)[1]
    return [f"{cls.__module__}.{cls.__qualname__}.{name} (line {first + line - 1})"
            for name, line in reads(node) if name not in declared]


def _classes() -> list[type]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        found += [obj for obj in vars(module).values()
                  if inspect.isclass(obj) and obj.__module__ == module.__name__]
    return found


def test_every_class_reads_only_what_it_or_its_bases_declare():
    bad = [line for cls in _classes() for line in undeclared_reads(cls)]
    assert not bad, "read through self but declared by no class of its MRO:\n" + "\n".join(bad)


def test_the_trainer_inherits_no_mixin():
    from art.defences.trainer import Trainer

    from art_adr import trainer

    for cls in (trainer.AdversarialTrainerADR, trainer.AdversarialTrainerTRADESADR,
                trainer.AdversarialTrainerMARTADR, trainer.AdversarialTrainerAWPADR):
        extra = [b.__name__ for b in cls.__mro__ if b not in Trainer.__mro__ and not issubclass(b, Trainer)]
        assert not extra, f"{cls.__name__} inherits {extra}"


def test_checker_finds_a_mixin_reading_its_hosts_members():
    exec_globals: dict = {}
    source = ("class Mixin:\n    def run(self):\n        return self.device, getattr(self, 'validation', 'x')\n"
              "class Host(Mixin):\n    def __init__(self):\n        self.device = 1\n")
    node = ast.parse(source).body
    mixin, host = node
    assert [n for n, _ in reads(mixin) if n not in declared_in_body(mixin)] == ["device", "validation"]
    assert "device" in declared_in_body(host) and "validation" not in declared_in_body(host)
    exec(compile(source, "<test>", "exec"), exec_globals)
