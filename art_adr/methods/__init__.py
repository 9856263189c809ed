"""Training methods as registered pieces: ``METHODS[name]`` is the :class:`TrainingMethod` subclass.

Adding a method is one new module in this package, named like the method (a :class:`TrainingMethod` dataclass
with ``name``, ``label``, ``citation``, ``attack`` and ``loss``; its hyper-parameters are dataclass fields named
like the ``RunConfig`` fields they are read from), and its name in ``METHOD_NAMES`` below. ``art-adr train
--method``, ``RunConfig.validate``, the recipes generator, ``art-adr benchmark`` and ``benchmarks/throughput.py``
read the registry. ``METHOD_NAMES`` is importable without torch (for ``--help``); ``METHODS`` imports the modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import TrainingMethod

__all__ = ["METHODS", "METHOD_NAMES", "AttackContext", "TrainingMethod", "get_method", "method_fields"]

METHOD_NAMES = ("at", "trades", "mart")  # the registry: one line per method, the name of its module here

_registry: dict[str, type[TrainingMethod]] = {}


def _load() -> dict[str, type[TrainingMethod]]:
    from .base import TrainingMethod

    if not _registry:
        for name in METHOD_NAMES:
            module = importlib.import_module(f"{__name__}.{name}")
            found = [obj for obj in vars(module).values() if isinstance(obj, type)
                     and issubclass(obj, TrainingMethod) and obj.__module__ == module.__name__]
            if len(found) != 1 or found[0].name != name:
                raise ImportError(f"art_adr.methods.{name} must define one TrainingMethod whose name is {name!r}")
            _registry[name] = found[0]
    return _registry


def get_method(name: str) -> type[TrainingMethod]:
    """The registered method class called ``name`` (``ValueError`` listing the registered names otherwise)."""
    methods = _load()
    if not isinstance(name, str) or name not in methods:
        raise ValueError(f"unknown training method {name!r}; registered: {', '.join(methods)}")
    return methods[name]


def method_fields(cls: type[TrainingMethod]) -> tuple[str, ...]:
    """Names of a method's hyper-parameters (its dataclass fields)."""
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(cls))


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        return dict(_load())
    if name in ("AttackContext", "TrainingMethod"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module 'art_adr.methods' has no attribute {name!r}")
