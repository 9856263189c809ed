"""The ADR defaults, defined once: the trainers' signatures, ``RunConfig`` (``art-adr train`` without a recipe)
and the README read them from here; recipes that differ say why in their descriptions.

τ (temperature) and λ (interpolation) are the ADR authors' CIFAR-10 values (Wu et al. 2024; their
``config/cifar10/*_adr.gin``, which ``scripts/make_recipes.py`` also uses): τ anneals 2.5 → 2.0, λ 0.7 → 0.95
with cosine schedules; the EMA teacher's decay is 0.995 (authors' fixed γ; ``EMA_WARMUP`` off as in their code).
"""

from __future__ import annotations

__all__ = ["TEMPERATURE", "INTERPOLATION", "EMA_DECAY", "EMA_WARMUP", "BETA", "EVAL_MAX_ITER", "VAL_ATTACK",
           "VAL_TARGETS", "BEST_METRIC"]

TEMPERATURE: tuple[float, float] = (2.5, 2.0)
INTERPOLATION: tuple[float, float] = (0.7, 0.95)
EMA_DECAY: float = 0.995
EMA_WARMUP: bool = False
EMA_BUFFERS: tuple[str, ...] = ("average", "student")  # the teacher's BN statistics: averaged (the authors') or copied
BETA: float = 6.0  # TRADES β and MART β (both reference codes' CIFAR-10 value)
EVAL_MAX_ITER: int = 10  # iterations k of the validation attack during training
# The validation attack that selects (``best.pt``, benchmark "best" rows, sweep scores); chosen by its agreement
# with standard AutoAttack on the Fashion-MNIST study's checkpoints (benchmarks/results/val-agreement.md).
VAL_ATTACK: str = "apgd"
VAL_TARGETS: int = 3  # APGD-T target classes of val_attack="apgd"
BEST_METRIC: str = "robust_acc"  # the validation attack's accuracy of the student ("teacher_robust_acc": +WA)

# τ/λ "auto" (art_adr.auto_schedule); defined here, without torch, so that config and the CLI import fast
AUTO: str = "auto"


def is_auto(value: object) -> bool:
    """Whether a τ/λ setting is the automatic mode (the string ``"auto"``)."""
    return isinstance(value, str) and value.strip().lower() == AUTO
