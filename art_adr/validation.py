"""What selects: the metric names of a validation attack in a run's history and the ``best_metric`` rules over
them — what ``best.pt``, the benchmark's "best" rows and the sweep's score select by.

The validation attacks themselves are the registered attacks that declare ``validates``
(:func:`art_adr.attacks.validating_attack_names`: ``pgd``, ``margin``, ``apgd``; the one registry that evaluation
runs too). ADR's soft, low-confidence outputs blunt cross-entropy attacks (a flat softmax gives small CE gradients),
so PGD-k on CE flatters ADR models: on the Fashion-MNIST study ADR models lost 6.7–9.5 pp from PGD-10 to
AutoAttack, PGD-AT 2.7 pp; ``margin`` and ``apgd`` are the candidates for a validation signal that ranks checkpoints
as AutoAttack does, at PGD-10-like cost (``benchmarks/val_agreement.py`` measures the agreement).

Metric names in the history: ``<name>_acc`` (student), ``teacher_<name>_acc``. Importing this module does not
import torch.
"""

from __future__ import annotations

__all__ = ["metric_name", "parse_metric", "best_metric_choices", "resolve_best_metric", "full_plan",
           "selective_plan", "validation_at"]


def metric_name(attack: str, model: str = "student") -> str:
    """History key of ``attack``'s accuracy for ``model``: ``"apgd_acc"``, ``"teacher_margin_acc"``, ..."""
    return ("teacher_" if model == "teacher" else "") + f"{attack}_acc"


def parse_metric(key: str) -> tuple[str, str]:
    """``(attack, model)`` of a history key: ``"teacher_apgd_acc"`` → ``("apgd", "teacher")`` (inverse of
    :func:`metric_name`)."""
    if not key.endswith("_acc"):
        raise ValueError(f"not a validation metric: {key!r}")
    model = "teacher" if key.startswith("teacher_") else "student"
    return key[len("teacher_") if model == "teacher" else 0 : -len("_acc")], model


def validation_at(epoch: int, end_epoch: int, eval_every: int, val_full_every: int) -> str | None:
    """Whether the validation after ``epoch`` is ``"full"``, ``"selective"`` or ``None`` (no validation): every
    ``eval_every`` epochs and at ``end_epoch``; full every ``val_full_every``-th time and at ``end_epoch``."""
    if epoch == end_epoch or epoch % (eval_every * val_full_every) == 0:
        return "full"
    return "selective" if epoch % eval_every == 0 else None


def full_plan(val_attack: str, adversarial: bool = True,
              models: tuple[str, ...] = ("student", "teacher")) -> dict[str, tuple[str, ...]]:
    """What a full validation measures, per model: clean, and with ``adversarial`` PGD-k and ``val_attack`` (when it
    is not PGD)."""
    kinds = ("clean",) + (("pgd",) if adversarial else ())
    kinds += (val_attack,) if adversarial and val_attack != "pgd" else ()
    return {name: kinds for name in models}


def selective_plan(metric: str, val_attack: str, auto: bool) -> dict[str, tuple[str, ...]]:
    """What a validation between two full ones (``val_full_every``) measures, per model: the model ``metric``
    selects by, clean and the metric's attack (``("clean",)`` when it selects by clean accuracy); with τ/λ
    ``auto`` also the teacher under ``val_attack`` (λ is its accuracy)."""
    attack, model = parse_metric(metric)
    plan = {model: ("clean",) if attack == "clean" else ("clean", attack)}
    if auto and (model, attack) != ("teacher", val_attack):
        plan["teacher"] = tuple(dict.fromkeys(plan.get("teacher", ("clean",)) + (val_attack,)))
    return plan


# ``best_metric`` names a history key, or — the default — the validation attack's accuracy of the student
# ("robust_acc") or of the EMA teacher ("teacher_robust_acc", the +WA model), whatever ``val_attack`` is.
SYMBOLIC_BEST = {"robust_acc": "student", "teacher_robust_acc": "teacher"}


def best_metric_choices(val_attack: str) -> tuple[str, ...]:
    """Every value ``best_metric`` may take for a trainer validating with ``val_attack``."""
    kinds = ["clean", "pgd"] + ([val_attack] if val_attack != "pgd" else [])
    return tuple(SYMBOLIC_BEST) + tuple(metric_name(k, m) for m in ("student", "teacher") for k in kinds)


def resolve_best_metric(best_metric: str, val_attack: str) -> str:
    """The history key ``best_metric`` selects by (``"robust_acc"`` → ``"<val_attack>_acc"``); ``ValueError``
    for a metric the validation does not compute."""
    choices = best_metric_choices(val_attack)
    if best_metric not in choices:
        raise ValueError(f"best_metric must be one of {', '.join(choices)} (with val_attack={val_attack!r}), got "
                         f"{best_metric!r}")
    if best_metric in SYMBOLIC_BEST:
        return metric_name(val_attack, SYMBOLIC_BEST[best_metric])
    return best_metric
