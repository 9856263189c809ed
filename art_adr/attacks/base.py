"""The one attack registry: what validation (``--val-attack``, the trainers' per-epoch selecting attack) and
evaluation (``evaluate`` / ``benchmark`` / ``sweep --attacks``, reports, Table 1) run.

An attack is a frozen dataclass registered at its definition (:func:`register_attack`) with a ``name`` (what the
options take; metric names ``<name>_acc`` / ``teacher_<name>_acc`` in a run's history), a short ``label``, a
``help`` phrase for the options, ``validates`` (cheap enough to select checkpoints with: ``--val-attack`` accepts
it), its cost in forward passes per image (:meth:`Attack.forwards`), and :meth:`Attack.flags`, which returns which
points of a batch stay correct. :meth:`Attack.run` attacks a whole image set batch by batch with ``flags`` (an
attack that works on a whole set, as AutoAttack, overrides it). Options are dataclass fields named like the keyword
arguments they are read from (``cw_steps``, ``aa_version``, ``targets``).

This module imports no torch (the command line's ``--help`` reads the registry); the attacks import it when they
run. The built-in attacks are one module each in this package, imported by its ``__init__``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .core import AttackSpec

__all__ = ["ATTACKS", "Attack", "register_attack", "attack_names", "validating_attack_names", "robust_attack_names",
           "example_attack_names", "get_attack", "attacks_help"]

Forward = Callable[["Tensor"], "Tensor"]


def _named_as_registered(name: str, cls: Any) -> None:
    if getattr(cls, "name", None) != name:
        raise ValueError(f"attack {name!r} must be a class whose name is {name!r}")


ATTACKS: Registry[type[Attack]] = Registry("attack", check=_named_as_registered)


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to :data:`ATTACKS` under its ``name`` (a new one), with its ``help`` and
    ``validates`` as the entry's metadata."""
    return ATTACKS.register(cls.name, cls, help=cls.help, validates=cls.validates,
                            gives_examples=cls.gives_examples)


@dataclass(frozen=True)
class Attack:
    """One attack. ``flags(forward, x, y, spec, ...)`` → bool ``[N]``, True where ``x`` stays correct.

    ``spec`` is the PGD :class:`~art_adr.attacks.AttackSpec` it runs against (norm, ε, step, ``k`` = ``steps``:
    the trainer's ``eval_max_iter`` in validation, ``--eval-max-iter`` in evaluation).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    help: ClassVar[str] = ""
    validates: ClassVar[bool] = False
    gives_examples: ClassVar[bool] = False  # implements examples(): what art-adr analyze --output-attack takes

    def forwards(self, spec: AttackSpec) -> int:
        """Worst-case passes per image through the model (a clean forward counts 1): ``k`` forward+backward
        steps and the forward that scores the result."""
        return spec.steps + 1

    def forward_equivalents(self, spec: AttackSpec) -> float:
        """Worst-case cost per image in forwards F (a forward+backward is 3F): one scoring forward, the other
        passes with their backward."""
        return 1.0 + 3.0 * (self.forwards(spec) - 1)

    def describe(self, spec: AttackSpec) -> str:
        """Short name of what runs, e.g. ``"PGD-10"`` (validation curves, progress bars)."""
        return f"{self.label}-{spec.steps}"

    def details(self, spec: AttackSpec) -> str:
        """What runs in full, for a report (``models[w]["attacks"][name]``); default :meth:`describe`."""
        return self.describe(spec)

    def column(self, settings: Mapping[str, Any]) -> str:
        """Table header for the evaluation ``settings`` (``pgd_steps``, ``cw_steps``, ``norm`` ``Linf``/``L2``,
        ``aa_version``: ``None`` leaves the version out), e.g. ``"PGD-10"``."""
        return self.name

    def flags(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *, clip_values: tuple[float, float],
              generator: torch.Generator, autocast: Callable[[], Any] | None = None) -> Tensor:
        """Bool ``[N]``: is each point of the batch ``(x, y)`` still correct after the attack?"""
        raise NotImplementedError(f"attack {self.name!r} runs only on a whole set (run)")

    def examples(self, forward: Forward, x: Tensor, y: Tensor, spec: AttackSpec, *,
                 clip_values: tuple[float, float], generator: torch.Generator,
                 autocast: Callable[[], Any] | None = None) -> Tensor:
        """The adversarial batch itself (``gives_examples``): what the analyses' outputs are measured on."""
        raise NotImplementedError(f"attack {self.name!r} gives no adversarial examples (only robust flags)")

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0, batch_size: int = 256,
            device: Any = "cpu", start_flags: Tensor | None = None, progress: bool = False) -> Tensor | dict[str, Any]:
        """Bool ``[N]`` (CPU) over an image set: :meth:`flags` batch by batch on the points of ``start_flags``
        (default: the clean-correct ones), random starts from a generator seeded with ``seed``."""
        from .batches import batched_flags

        return batched_flags(self, model, x, y, spec=spec, seed=seed, batch_size=batch_size, device=device,
                             start_flags=start_flags, progress=progress)

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        """Add what ran to a report's model ``entry`` (default: ``entry["attacks"][name] = details(spec)``)."""
        entry["attacks"][self.name] = self.details(spec)


def attack_names() -> tuple[str, ...]:
    """Every registered attack, ``clean`` first, in registration order."""
    return ATTACKS.names()


def robust_attack_names() -> tuple[str, ...]:
    """The registered attacks other than ``clean`` (``art-adr benchmark --attacks``)."""
    return tuple(name for name in ATTACKS.names() if name != "clean")


def validating_attack_names() -> tuple[str, ...]:
    """The attacks cheap enough to select checkpoints with (``validates``): what ``--val-attack`` takes."""
    return ATTACKS.names(validates=True)


def example_attack_names() -> tuple[str, ...]:
    """The attacks that give their adversarial examples (``gives_examples``): what ``art-adr analyze --output-attack``
    takes."""
    return ATTACKS.names(gives_examples=True)


def get_attack(name: str, *, validates: bool = False, **options: Any) -> Attack:
    """The attack ``name`` with those ``options`` that are its fields (the others, and ``None``, are ignored);
    ``ValueError`` listing the choices for an unknown one (with ``validates``: ``val_attack``, only the attacks
    that validate)."""
    if validates and name not in validating_attack_names():
        raise ValueError(f"val_attack must be one of {', '.join(validating_attack_names())}, got {name!r}")
    cls = ATTACKS.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


def attacks_help(names: Sequence[str] | None = None) -> str:
    """``"clean, pgd (PGD-k on the cross-entropy), ..."``: the attacks ``names`` (default all) with their help."""
    return ATTACKS.describe(names)
