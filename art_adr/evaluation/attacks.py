"""Evaluation attacks as registered pieces: one class per attack, added to :data:`EVAL_ATTACKS` at its definition.

An evaluation attack has a ``name`` (what ``art-adr evaluate --attacks`` and ``art-adr benchmark --attacks`` take),
a ``help`` phrase for those options, a table ``column`` (``"PGD-10"``, ``"AutoAttack (paper)"``), a ``describe``
text of what ran, and ``run(model, x, y, *, spec, seed, batch_size, device, start_flags, progress)``, which
returns the boolean ``[N]`` flags of the points still correct (or, for AutoAttack, its details with
``"robust_flags"``). Its options are dataclass fields named like the keyword arguments of
:func:`~art_adr.evaluation.evaluate_model` they are read from (``cw_steps``, ``aa_version``).

The built-in attacks (``clean``, ``pgd``, ``cw``, ``apgd``, ``aa``) are defined here; another is one module of
this package that defines its class under ``@register_attack``, and one import line in
``art_adr/evaluation/__init__.py`` (docs/DESIGN.md shows one). This module imports no torch (``--help`` reads it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

    from ..attacks import AttackSpec

__all__ = ["EVAL_ATTACKS", "EvalAttack", "register_attack", "get_eval_attack", "attack_names",
           "robust_attack_names", "attacks_help", "parse_eps"]

EVAL_ATTACKS: dict[str, type[EvalAttack]] = {}


def register_attack(cls: type[EvalAttack]) -> type[EvalAttack]:
    """Class decorator: add an evaluation attack to :data:`EVAL_ATTACKS` under its ``name``."""
    if not cls.name or cls.name in EVAL_ATTACKS and EVAL_ATTACKS[cls.name] is not cls:
        raise ValueError(f"an evaluation attack needs a new name, got {cls.name!r} ({', '.join(EVAL_ATTACKS)} taken)")
    EVAL_ATTACKS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class EvalAttack:
    """One evaluation attack. ``run`` attacks the points of ``start_flags`` (the clean-correct ones) and returns
    which stay correct; ``record`` adds its description to a report entry (``entry["attacks"][name]``)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""

    def column(self, settings: Mapping[str, Any]) -> str:
        """Table header for the evaluation ``settings`` (``pgd_steps``, ``cw_steps``, ``norm`` ``Linf``/``L2``,
        ``aa_version``: ``None`` leaves the version out), e.g. ``"PGD-10"``."""
        return self.name

    def describe(self, spec: AttackSpec) -> str:
        """What runs against the PGD attack ``spec``, e.g. ``"PGD-10 L∞ ε=8/255 α=2/255"``."""
        return self.name

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> Tensor | dict[str, Any]:
        raise NotImplementedError

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        """Add what ran to a report's model ``entry`` (default: ``entry["attacks"][name] = describe(spec)``)."""
        entry["attacks"][self.name] = self.describe(spec)


@register_attack
@dataclass(frozen=True)
class Clean(EvalAttack):
    """No attack: is each image classified correctly? Always evaluated first; its flags start the others."""

    name: ClassVar[str] = "clean"

    def column(self, settings: Mapping[str, Any]) -> str:
        return "Clean"

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> Tensor:
        from .flags import correct_flags

        return correct_flags(model, x, y, batch_size=batch_size, device=device, progress=progress)

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        pass


@register_attack
@dataclass(frozen=True)
class PGD(EvalAttack):
    """PGD-k on the cross-entropy from a uniform random start (Madry et al. 2018): the evaluation's ``spec``."""

    name: ClassVar[str] = "pgd"
    help: ClassVar[str] = "PGD-k on the cross-entropy"

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"PGD-{settings['pgd_steps']}"

    def describe(self, spec: AttackSpec) -> str:
        return spec.describe()

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> Tensor:
        from .flags import pgd_flags

        return pgd_flags(model, x, y, spec=spec, seed=seed, batch_size=batch_size, device=device,
                         start_flags=start_flags, progress=progress)


@register_attack
@dataclass(frozen=True)
class CW(PGD):
    """PGD on the CW margin loss (Carlini & Wagner 2017; "CW-∞"), ``cw_steps`` iterations (default the spec's)."""

    cw_steps: int | None = None
    name: ClassVar[str] = "cw"
    help: ClassVar[str] = "CW: PGD on the CW margin"

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"CW-{'∞' if settings.get('norm', 'Linf') == 'Linf' else 'L2'}-{settings['cw_steps']}"

    def cw_spec(self, spec: AttackSpec) -> AttackSpec:
        """The PGD ``spec`` on the CW margin, at ``cw_steps`` iterations."""
        return spec.replace(loss="cw", steps=int(self.cw_steps or spec.steps))

    def describe(self, spec: AttackSpec) -> str:
        return self.cw_spec(spec).describe()

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> Tensor:
        return super().run(model, x, y, spec=self.cw_spec(spec), seed=seed, batch_size=batch_size, device=device,
                           start_flags=start_flags, progress=progress)


@register_attack
@dataclass(frozen=True)
class APGD(EvalAttack):
    """The trainers' default validation attack (:mod:`art_adr.validation`): APGD-CE then APGD-T, ``spec.steps``
    iterations, 3 targets — the attack ``best.pt`` is selected by, run on the evaluation's images."""

    name: ClassVar[str] = "apgd"
    help: ClassVar[str] = "the trainers' validation attack: APGD-CE then APGD-T, k iterations, 3 targets"

    def column(self, settings: Mapping[str, Any]) -> str:
        return f"APGD-CE+T-{settings['pgd_steps']}"

    def describe(self, spec: AttackSpec) -> str:
        from ..validation import get_val_attack

        return get_val_attack(self.name).describe(spec)

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> Tensor:
        from .flags import val_attack_flags

        return val_attack_flags(model, x, y, spec=spec, name=self.name, seed=seed, batch_size=batch_size,
                                device=device, start_flags=start_flags, progress=progress)


@register_attack
@dataclass(frozen=True)
class AutoAttack(EvalAttack):
    """AutoAttack (Croce & Hein 2020) at the spec's norm and ε, version ``aa_version``: ``standard``, ``rand``
    or ``paper`` (the ADR code's protocol; :mod:`art_adr.evaluation.autoattack`)."""

    aa_version: str = "standard"
    name: ClassVar[str] = "aa"
    help: ClassVar[str] = "AutoAttack, pyautoattack"

    def column(self, settings: Mapping[str, Any]) -> str:
        version = settings.get("aa_version")
        return "AutoAttack" + (f" ({version})" if version else "")

    def describe(self, spec: AttackSpec) -> str:
        from ..attacks import format_eps

        norm = "L∞" if spec.threat_model == "Linf" else "L2"
        return f"AutoAttack '{self.aa_version}' {norm} ε={format_eps(spec.eps)}"

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int, batch_size: int,
            device: Any, start_flags: Tensor | None, progress: bool) -> dict[str, Any]:
        from .autoattack import autoattack_eval

        return autoattack_eval(model, x, y, eps=spec.eps, norm=spec.norm, version=self.aa_version, seed=seed,
                               batch_size=batch_size, device=device, start_flags=start_flags, progress=progress)

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        """The report keeps AutoAttack's details (version, attacks, cumulative %, warnings, settings)."""
        keys = ("version", "norm", "seed", "attacks", "cumulative", "warnings", "settings")
        entry["autoattack"] = {k: result[k] for k in keys}  # type: ignore[index]


def attack_names() -> tuple[str, ...]:
    """Every registered evaluation attack, ``clean`` first, in registration order."""
    return tuple(EVAL_ATTACKS)


def robust_attack_names() -> tuple[str, ...]:
    """The registered attacks other than ``clean`` (``art-adr benchmark --attacks``)."""
    return tuple(name for name in EVAL_ATTACKS if name != "clean")


def get_eval_attack(name: str, **options: Any) -> EvalAttack:
    """The attack ``name`` with those ``options`` that are its fields (the others are ignored); ``ValueError``
    listing the registered names for an unknown one."""
    if name not in EVAL_ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(EVAL_ATTACKS)}")
    cls = EVAL_ATTACKS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


def attacks_help(names: Sequence[str] | None = None) -> str:
    """``"clean, pgd (PGD-k on the cross-entropy), ..."``: the attacks ``names`` (default all) with their help."""
    return ", ".join(f"{n} ({EVAL_ATTACKS[n].help})" if EVAL_ATTACKS[n].help else n
                     for n in (attack_names() if names is None else names))


def parse_eps(value: str | float) -> float:
    """ε from ``"8/255"``, ``"0.031"`` or a number; ``ValueError`` unless ``0 < ε ≤ 1`` (images in [0, 1])."""
    from ..budget import parse_number

    try:
        eps = parse_number(value)
    except ValueError:
        raise ValueError(f"eps must be a number or a fraction like 8/255, got {value!r}") from None
    if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] for [0, 1] images, got {value!r}")
    return eps
