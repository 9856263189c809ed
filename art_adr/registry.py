"""The one way to register a named piece (an attack, a dataset, a training method, an architecture, a logger, a
launcher, a command): a :class:`Registry` of one kind, filled at each piece's definition.

``REG.register(name, **meta)`` decorates the definition (``REG.register(name, obj, **meta)`` is the same as a
plain call); ``REG.register_lazy(name, "package.module:attribute", **meta)`` names a piece whose module is imported
only when the piece is first asked for (what keeps ``--help`` free of torch). A name is registered once. The
metadata (a one-line ``help``, whether an architecture is ``local``, a logger's ``package`` ...) is read without
importing anything, so command-line choices, help texts and the documentation's tables are generated from the
registry. This module imports nothing of art-adr and no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named pieces of one ``kind`` ("attack", "dataset" ...) in registration order, each with its metadata.

    ``error``: the ``ValueError`` subclass an unknown name raises (``DatasetError`` for datasets); ``check``:
    called as ``check(name, obj)`` on every piece when it is registered or, for a lazy one, first loaded (raise to
    refuse it).
    """

    def __init__(self, kind: str, *, error: type[ValueError] = ValueError,
                 check: Callable[[str, Any], None] | None = None) -> None:
        self.kind, self.error, self.check = kind, error, check
        self._objects: dict[str, Any] = {}
        self._targets: dict[str, str] = {}  # lazy entries not loaded yet: name -> "module:attribute"
        self._meta: dict[str, Mapping[str, Any]] = {}

    def register(self, name: str, obj: Any = None, **meta: Any) -> Any:
        """Add ``obj`` under ``name`` (a new name) with ``meta`` and return it; without ``obj``, a decorator that
        does so."""
        if obj is None:
            return lambda definition: self.register(name, definition, **meta)
        self._claim(name)
        if self.check is not None:
            self.check(name, obj)
        self._objects[name], self._meta[name] = obj, MappingProxyType(dict(meta))
        return obj

    def register_lazy(self, name: str, target: str, **meta: Any) -> None:
        """Add the piece ``target`` (``"package.module:attribute"``) under ``name``, imported on first use."""
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"a lazily imported {self.kind} is 'package.module:attribute', got {target!r}")
        self._claim(name)
        self._targets[name], self._meta[name] = target, MappingProxyType(dict(meta))

    def _claim(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"every {self.kind} needs a name, got {name!r}")
        if name in self:
            raise ValueError(f"{self.kind} name {name!r} is taken: a new {self.kind} needs a new name (registered: "
                             f"{self._listed()})")

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's or a plugin's own registration)."""
        if name not in self:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {self._listed()}")
        for table in (self._objects, self._targets, self._meta):
            table.pop(name, None)

    def names(self, **where: Any) -> tuple[str, ...]:
        """The registered names in registration order; with ``where``: those whose metadata has these values."""
        return tuple(n for n in self._meta if all(self._meta[n].get(k) == v for k, v in where.items()))

    def get(self, name: str) -> T:
        """The piece registered as ``name`` (its module imported first if it is lazy); ``error`` naming the
        registered ones for an unknown name."""
        if not isinstance(name, str) or name not in self:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {self._listed()}")
        if name in self._targets:
            module, _, attribute = self._targets[name].partition(":")
            obj = getattr(importlib.import_module(module), attribute)
            if self.check is not None:
                self.check(name, obj)
            self._objects[name] = obj
            del self._targets[name]
        return self._objects[name]

    def meta(self, name: str) -> Mapping[str, Any]:
        """The metadata ``name`` was registered with (read-only; nothing is imported)."""
        if name not in self:
            self.get(name)
        return self._meta[name]

    def describe(self, names: tuple[str, ...] | list[str] | None = None, key: str = "help") -> str:
        """``"a (its help), b, c (its help)"``: ``names`` (default all) with their ``key`` metadata, for help
        texts."""
        chosen = self.names() if names is None else names
        return ", ".join(f"{n} ({self.meta(n)[key]})" if self.meta(n).get(key) else n for n in chosen)

    def items(self) -> list[tuple[str, T]]:
        """``(name, piece)`` pairs in registration order (lazy pieces are imported)."""
        return [(name, self.get(name)) for name in self.names()]

    def values(self) -> list[T]:
        """The pieces in registration order (lazy pieces are imported)."""
        return [self.get(name) for name in self.names()]

    def _listed(self) -> str:
        return ", ".join(self._meta) or "none"

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._meta

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._meta)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self._listed()})"
