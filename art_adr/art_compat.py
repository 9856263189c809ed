"""ART's calling conventions for the trainers: an ART ``ProjectedGradientDescent`` as ``attack``.

ART's trainers take an attack object (``AdversarialTrainerTRADESPyTorch(classifier, attack, beta=6.0)``,
``AdversarialTrainerAWPPyTorch(classifier, proxy_classifier, attack, ...)``). Ours run the method's own
device-resident soft-label PGD (it must see ADR's rectified label, a probability row, and TRADES attacks its KL
term), so an ART PGD is *converted*: its ``eps``, ``eps_step``, ``max_iter``, ``norm`` and ``num_random_init``
become the trainer's threat model; an option the soft-label PGD cannot honour is refused with the reason.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

__all__ = ["ArtThreatModel", "is_art_pgd", "threat_model_of"]

_PGD_CLASSES = ("ProjectedGradientDescent", "ProjectedGradientDescentNumpy", "ProjectedGradientDescentPyTorch")


@dataclasses.dataclass(frozen=True)
class ArtThreatModel:
    """What an ART PGD says about the training attack: radius, step, iterations, norm, random start."""

    eps: float
    eps_step: float
    max_iter: int
    norm: Any
    random_init: bool


def is_art_pgd(attack: Any) -> bool:
    """Whether ``attack`` is one of ART's PGD classes (the wrapper, its numpy or its PyTorch implementation)."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy import (
        ProjectedGradientDescentCommon,
    )

    return isinstance(attack, (ProjectedGradientDescent, ProjectedGradientDescentCommon))


def _scalar(value: Any, name: str) -> float:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"attack: an ART PGD with a per-example or per-feature {name} (an array of shape "
                             f"{value.shape}) cannot be converted: the training attack takes one {name}")
        value = value.item()
    return value


def _refusals(attack: Any) -> list[str]:
    """Why an ART PGD cannot be converted (empty when it can)."""
    reasons = []
    if getattr(attack, "targeted", False):
        reasons.append("targeted=True (adversarial training maximises the loss of the true or rectified label; "
                       "a targeted attack minimises that of a target)")
    if getattr(attack, "random_eps", False):
        reasons.append("random_eps=True (the training attack uses one radius, eps)")
    # ART's wrapper keeps decay only on its implementation (its attribute _attack; no public getter)
    inner = vars(attack).get("_attack", attack)
    if getattr(inner, "decay", None) is not None:
        reasons.append("decay (momentum PGD; the soft-label PGD takes plain sign or L2 steps)")
    num_random_init = getattr(attack, "num_random_init", 0)
    if num_random_init > 1:
        reasons.append(f"num_random_init={num_random_init} (restarts keeping the worst case per example; the "
                       "training attack runs one start: use 0 or 1)")
    if type(attack).__name__ not in _PGD_CLASSES:
        reasons.append(f"a subclass of ART's PGD ({type(attack).__name__}) may change the loss it maximises; the "
                       "training attack maximises the method's own (cross-entropy on P(x), TRADES's KL)")
    return reasons


def threat_model_of(attack: Any, classifier: Any) -> ArtThreatModel:
    """The threat model of an ART PGD ``attack``, for a trainer of ``classifier``; ``ValueError`` when ``attack``
    sets an option the soft-label PGD cannot honour (targeted, ``random_eps``, ``decay``, restarts, a subclass).

    ``batch_size`` and ``verbose`` of the attack do not apply (the training attack runs on each training batch);
    an attack built on another estimator than ``classifier`` is converted with a warning: the training attack
    always attacks the model being trained, as ART's trainers do.
    """
    reasons = _refusals(attack)
    if reasons:
        raise ValueError(f"attack: {type(attack).__name__} cannot be converted to the trainer's soft-label PGD: "
                         + "; ".join(reasons))
    if getattr(attack, "estimator", classifier) is not classifier:
        warnings.warn("attack: the ART PGD was built on another estimator than the classifier being trained; the "
                      "training attack attacks the model being trained (ART's trainers do the same)", UserWarning,
                      stacklevel=4)
    return ArtThreatModel(eps=_scalar(attack.eps, "eps"), eps_step=_scalar(attack.eps_step, "eps_step"),
                          max_iter=attack.max_iter, norm=attack.norm,
                          random_init=bool(getattr(attack, "num_random_init", 0)))
