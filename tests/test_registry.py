"""art_adr.registry: the one way every named piece is registered, and every registry of the package using it."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from art_adr.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def _registries() -> dict[str, Registry]:
    from art_adr.architectures import ARCHITECTURES
    from art_adr.attacks import ATTACKS
    from art_adr.cli import COMMANDS
    from art_adr.data import DATASETS
    from art_adr.launch import LAUNCHERS
    from art_adr.loggers import LOGGERS
    from art_adr.methods import METHODS

    return {"attack": ATTACKS, "dataset": DATASETS, "training method": METHODS, "architecture": ARCHITECTURES,
            "logger": LOGGERS, "launcher": LAUNCHERS, "command": COMMANDS}


def test_every_registry_of_the_package_is_a_registry_and_lists_its_pieces():
    for kind, registry in _registries().items():
        assert isinstance(registry, Registry) and registry.kind == kind
        names = registry.names()
        assert names and tuple(registry) == names and len(registry) == len(names)
        assert [name for name, _ in registry.items()] == list(names)
        assert all(name in registry and registry.get(name) is registry[name] for name in names)
        with pytest.raises(ValueError, match=f"unknown {kind} 'no-such-{kind}'; registered: {', '.join(names)}$"):
            registry.get(f"no-such-{kind}")


def test_no_module_keeps_a_registry_of_its_own_making():
    """Every module-level registry of art_adr/ and cli/ is ``Registry(...)``: no dict or tuple of names beside it."""
    found = {}
    for path in [*sorted((ROOT / "art_adr").rglob("*.py")), *sorted((ROOT / "cli").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", None) == "Registry":
                found[node.target.id] = path.relative_to(ROOT).as_posix()
    assert set(found) == {"ATTACKS", "DATASETS", "METHODS", "ARCHITECTURES", "LOGGERS", "LAUNCHERS", "COMMANDS"}


def test_metadata_drives_the_listings():
    from art_adr.architectures import ARCHITECTURES
    from art_adr.launch import LAUNCHERS
    from art_adr.loggers import LOGGERS

    assert set(ARCHITECTURES.names(local=True)) | set(ARCHITECTURES.names(local=False)) == set(ARCHITECTURES)
    assert all(ARCHITECTURES.meta(n)["help"] for n in ARCHITECTURES)
    assert all({"package", "install", "mark", "help"} <= set(LOGGERS.meta(n)) for n in LOGGERS)
    assert all(LAUNCHERS.meta(n)["help"] for n in LAUNCHERS)


def test_registering_keeps_order_and_metadata_and_works_as_decorator_and_call():
    reg: Registry[object] = Registry("widget")

    @reg.register("b", help="the b")
    def b() -> None:
        pass

    obj = object()
    assert reg.register("a", obj) is obj and b.__name__ == "b"
    reg.register("c", 3, help="", flag=True)
    assert reg.names() == ("b", "a", "c") and reg.items() == [("b", b), ("a", obj), ("c", 3)]
    assert reg.meta("b")["help"] == "the b" and dict(reg.meta("a")) == {} and reg.names(flag=True) == ("c",)
    assert reg.describe() == "b (the b), a, c" and "a" in reg and "z" not in reg
    with pytest.raises(TypeError):
        reg.meta("b")["help"] = "changed"  # read-only
    reg.unregister("a")
    assert reg.names() == ("b", "c")


def test_a_taken_name_is_refused_and_an_unknown_one_names_the_registered():
    reg: Registry[int] = Registry("widget")
    reg.register("one", 1)
    reg.register("two", 2)
    for again in (1, 5):
        with pytest.raises(ValueError, match="widget name 'one' is taken"):
            reg.register("one", again)
    with pytest.raises(ValueError, match="needs a name"):
        reg.register("", 3)
    with pytest.raises(ValueError, match="^unknown widget 'three'; registered: one, two$"):
        reg.get("three")
    with pytest.raises(ValueError, match="unknown widget"):
        reg.unregister("three")

    class Mine(ValueError):
        pass

    with pytest.raises(Mine, match="registered: none"):
        Registry("gadget", error=Mine).get("x")


def test_lazy_entries_import_their_module_on_first_use(monkeypatch):
    module = types.ModuleType("planted_widgets")
    module.Widget = object()
    monkeypatch.setitem(sys.modules, "planted_widgets", module)
    checked = []
    reg: Registry[object] = Registry("widget", check=lambda name, obj: checked.append(name))
    reg.register_lazy("w", "planted_widgets:Widget", help="lazy")
    assert reg.names() == ("w",) and reg.meta("w")["help"] == "lazy" and checked == []
    assert reg.get("w") is module.Widget and reg.get("w") is module.Widget and checked == ["w"]
    with pytest.raises(ValueError, match="taken"):
        reg.register_lazy("w", "planted_widgets:Widget")
    with pytest.raises(ValueError, match="module:attribute"):
        reg.register_lazy("v", "planted_widgets")


def test_the_registry_module_and_the_lazy_registries_import_no_torch():
    code = ("import sys; from art_adr.methods import METHODS; from art_adr.cli import COMMANDS; "
            "from art_adr.launch import LAUNCHERS; from art_adr.loggers import LOGGERS; "
            "from art_adr.data import DATASETS; METHODS.names(); COMMANDS.names(); "
            "assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
