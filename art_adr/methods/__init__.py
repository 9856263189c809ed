"""Training methods as registered pieces: ``METHODS.get(name)`` is the :class:`TrainingMethod` subclass.

Adding a method is one new module in this package, named like the method (a :class:`TrainingMethod` dataclass
with ``name``, ``label``, ``citation``, ``attack`` and ``loss``; its hyper-parameters are dataclass fields named
like the ``RunConfig`` fields they are read from), and its one registration line below. ``art-adr train
--method``, ``RunConfig.validate``, the recipes generator, ``art-adr benchmark`` and ``benchmarks/throughput.py``
read the registry. The registrations are lazy (:meth:`~art_adr.registry.Registry.register_lazy`): the names and
``METHODS.names()`` need no torch (for ``--help``); asking for a method imports its module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    from .base import TrainingMethod

__all__ = ["METHODS", "AttackContext", "TrainingMethod", "get_method", "method_fields"]


def _is_method_named(name: str, cls: Any) -> None:
    from .base import TrainingMethod

    if not (isinstance(cls, type) and issubclass(cls, TrainingMethod) and cls.name == name):
        raise ImportError(f"training method {name!r} must be a TrainingMethod class whose name is {name!r}")


METHODS: Registry[type[TrainingMethod]] = Registry("training method", check=_is_method_named)
# the registry: one line per method, its class in the module of its name here
METHODS.register_lazy("at", "art_adr.methods.at:AT")
METHODS.register_lazy("trades", "art_adr.methods.trades:TRADES")
METHODS.register_lazy("mart", "art_adr.methods.mart:MART")
METHODS.register_lazy("standard", "art_adr.methods.standard:Standard")


def get_method(name: str) -> type[TrainingMethod]:
    """The registered method class called ``name`` (``ValueError`` listing the registered names otherwise)."""
    return METHODS.get(name)


def method_fields(cls: type[TrainingMethod]) -> tuple[str, ...]:
    """Names of a method's hyper-parameters (its dataclass fields)."""
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(cls))


def __getattr__(name: str) -> Any:
    if name in ("AttackContext", "TrainingMethod"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module 'art_adr.methods' has no attribute {name!r}")
