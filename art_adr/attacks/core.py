"""The attack maths: soft-label PGD (Madry et al. 2018, Eq. 2 with ADR's rectified targets, Algorithm 1 lines 10-13),
the attack specification and the ART attack object. (The registry of attacks is :mod:`art_adr.attacks.base`.)"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from torch import Tensor, nn

from ..budget import default_eps_step, format_eps, parse_number
from ..checks import finite_number, integer
from ..functional import (
    clip_to_range,
    cw_margin_loss,
    l2_normalize,
    project_l2,
    project_linf,
    soft_cross_entropy,
    trades_kl,
)
from ..modes import bn_mode_flag, module_mode

__all__ = ["pgd", "attack_loss", "SoftLabelPGD", "AttackSpec", "default_eps_step", "format_eps", "norm_name",
           "threat_model"]

LOSSES = ("ce", "kl", "cw")
NORMS = ("inf", "2")


def norm_name(norm: Any) -> str:
    """Canonical norm name: ``"inf"`` (from ``inf``, ``np.inf``, ``"Linf"``, ``"L∞"``) or ``"2"`` (``2``,
    ``"L2"``); ``ValueError`` otherwise."""
    name = str(norm).lower().replace("l", "").replace("∞", "inf").strip()
    if name in ("inf", "np.inf"):
        return "inf"
    if name in ("2", "2.0"):
        return "2"
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")


def threat_model(norm: Any) -> str:
    """RobustBench / AutoAttack name of a norm: ``"Linf"`` or ``"L2"``."""
    return "Linf" if norm_name(norm) == "inf" else "L2"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class AttackSpec:
    """What a PGD-family attack is: its norm, radius, step, iterations, restarts and loss (immutable).

    Args:
        norm: ``"inf"`` (L∞, default) or ``"2"`` (L2); ``2``, ``np.inf``, ``"Linf"``, ``"L2"`` are accepted and
            stored in canonical form.
        eps: radius ε > 0 of the ball, for ``[0, 1]`` images (default 8/255).
        eps_step: step α in (0, ε], or ``None`` (default) for :func:`default_eps_step` ``min(ε, 2.5·ε/k)``.
        steps: iterations k ≥ 0 (default 10; 0 = no attack).
        restarts: random restarts ≥ 1 (default 1).
        loss: loss the attack ascends, ``"ce"`` (PGD, default), ``"cw"`` (CW margin: "CW-∞") or ``"kl"``.

    ``ValueError`` naming the field for an invalid value.

    Example:
        >>> spec = AttackSpec(eps=8 / 255, steps=10)
        >>> spec.step_size * 255, spec.describe()
        (2.0, 'PGD-10 L∞ ε=8/255 α=2/255')
    """

    norm: str = "inf"
    eps: float = 8 / 255
    eps_step: float | None = None
    steps: int = 10
    restarts: int = 1
    loss: str = "ce"

    def __post_init__(self) -> None:
        try:
            norm = norm_name(self.norm)
        except ValueError:
            raise ValueError(f"AttackSpec.norm must be 'inf' or '2', got {self.norm!r}") from None
        object.__setattr__(self, "norm", norm)
        for name in ("eps", "eps_step"):
            value = getattr(self, name)
            if value is None and name == "eps_step":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"AttackSpec.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.eps <= 0:
            raise ValueError(f"AttackSpec.eps must be > 0, got {self.eps}")
        if self.eps_step is not None and not 0 < self.eps_step <= self.eps:
            raise ValueError(f"AttackSpec.eps_step must be in (0, eps={self.eps:g}], got {self.eps_step}")
        if not _is_int(self.steps) or self.steps < 0:
            raise ValueError(f"AttackSpec.steps must be an integer >= 0, got {self.steps!r}")
        if not _is_int(self.restarts) or self.restarts < 1:
            raise ValueError(f"AttackSpec.restarts must be an integer >= 1, got {self.restarts!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"AttackSpec.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")

    @property
    def step_size(self) -> float:
        """The step α: ``eps_step`` when given, else :func:`default_eps_step` ``(eps, steps)``."""
        return self.eps_step if self.eps_step is not None else default_eps_step(self.eps, self.steps)

    @property
    def threat_model(self) -> str:
        """``"Linf"`` or ``"L2"`` (RobustBench / AutoAttack spelling)."""
        return threat_model(self.norm)

    def replace(self, **changes: Any) -> AttackSpec:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields plus the resolved ``step_size`` (for JSON reports)."""
        return {**dataclasses.asdict(self), "step_size": self.step_size}

    def describe(self) -> str:
        """Short text, e.g. ``"PGD-10 L∞ ε=8/255 α=2/255"`` or ``"CW-20 L2 ε=0.5 α=0.0625, 5 restarts"``."""
        name = {"ce": "PGD", "cw": "CW", "kl": "PGD-KL"}[self.loss]
        norm = "L∞" if self.norm == "inf" else "L2"
        text = f"{name}-{self.steps} {norm} ε={format_eps(self.eps)} α={format_eps(self.step_size)}"
        return text + (f", {self.restarts} restarts" if self.restarts > 1 else "")

    @classmethod
    def from_config(cls, config: Any, **changes: Any) -> AttackSpec:
        """The training attack of a run config (a ``RunConfig`` or its dict; keys ``norm``, ``eps``,
        ``eps_step``, ``max_iter``, missing ones at the defaults), with ``changes`` applied, e.g.
        ``AttackSpec.from_config(cfg, steps=20)``. The config's ``eps_step`` is kept only while ε and the step count
        are the config's: a new ``eps`` or ``steps`` without a new ``eps_step`` gets the default rule (PGD-10 of a
        run trained with one step of α = ε steps ε/4, not ε). Changes that are ``None`` are ignored
        (except ``eps_step=None``: the default rule); another ``norm`` needs its own ``eps``."""
        get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
        eps, eps_step, steps = get("eps"), get("eps_step"), get("max_iter")
        base = cls(norm=get("norm") or "inf", eps=parse_number(eps) if eps is not None else 8 / 255,
                   eps_step=parse_number(eps_step) if eps_step is not None else None,
                   steps=int(steps) if steps is not None else 10)
        changes = {k: v for k, v in changes.items() if v is not None or k == "eps_step"}
        if "norm" in changes and norm_name(changes["norm"]) != base.norm and "eps" not in changes:
            raise ValueError(f"the run was trained in norm {base.norm!r} at ε={format_eps(base.eps)}; evaluating in "
                             f"norm {norm_name(changes['norm'])!r} needs its own eps")
        if "eps_step" not in changes and (("eps" in changes and float(changes["eps"]) != base.eps)
                                          or ("steps" in changes and int(changes["steps"]) != base.steps)):
            changes["eps_step"] = None  # another ε or step count: the one step rule, not the run's α
        return base.replace(**changes) if changes else base


def attack_loss(logits: Tensor, target: Tensor, loss: str) -> Tensor:
    """Per-sample loss the attack ascends: CE (index or probability targets), TRADES KL, or CW margin."""
    if loss == "ce":
        if target.is_floating_point() and target.dim() == 2:
            return soft_cross_entropy(logits, target, reduction="none")
        return F.cross_entropy(logits.float(), target.long(), reduction="none")
    if loss == "kl":
        return trades_kl(logits, target, reduction="none")
    if loss == "cw":
        return cw_margin_loss(logits, target, reduction="none")
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


FP16_LOSS_SCALE = 1024.0


@contextlib.contextmanager
def _frozen_params(model: Any) -> Any:
    """``requires_grad`` off for the model's parameters during the block (restored in ``finally``): the attack
    needs input gradients only, and a compiled backward would otherwise compute weight gradients too."""
    params = [p for p in model.parameters() if p.requires_grad] if isinstance(model, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _random_start(x: Tensor, eps: float, norm: str, mode: Any, generator: torch.Generator | None) -> Tensor:
    if mode is False or mode is None:
        return torch.zeros_like(x)
    if mode == "trades":  # TRADES reference: x + 0.001 * N(0, 1)
        return 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if mode == "trades-uniform":  # ADR authors' trades_attack.py: x + 0.001 * U[0, 1)
        return 0.001 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if norm == "inf":
        return (2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1) * eps
    direction = l2_normalize(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
    radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
    return direction * radius * eps


def pgd(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Tensor,
    *,
    eps: float,
    eps_step: float,
    max_iter: int,
    norm: Any = "inf",
    clip_values: tuple[float, float] | None = (0.0, 1.0),
    random_init: bool | str = True,
    loss: str = "ce",
    bn_mode: str | None = "eval",
    restarts: int = 1,
    generator: torch.Generator | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    loss_scale: float | None = None,
) -> Tensor:
    """Projected gradient ascent on ``loss`` inside the ε-ball around ``x`` (device tensors, no host sync).

    Args:
        model: maps ``[N, C, H, W]`` inputs to ``[N, K]`` logits.
        x: clean inputs ``[N, C, H, W]``.
        target: ``loss="ce"``: int labels ``[N]`` or probability rows ``[N, K]`` (ADR's rectified labels);
            ``loss="kl"``: clean logits ``[N, K]`` (TRADES); ``loss="cw"``: int labels ``[N]``.
        eps: radius ε > 0. eps_step: step α in (0, ε]. max_iter: steps K ≥ 0.
        norm: ``"inf"`` (sign steps) or ``2`` (normalised gradient steps).
        clip_values: valid input box or ``None``.
        random_init: ``True`` uniform start in the ball, ``"trades"`` 0.001·N(0, 1) (TRADES reference),
            ``"trades-uniform"`` 0.001·U[0, 1) (ADR authors' TRADES attack), ``False`` none.
        loss: ``"ce"`` (default), ``"kl"`` or ``"cw"``.
        bn_mode: ``"train"`` (ADR authors' AT), ``"eval"`` or ``None`` (leave the model as it is).
        restarts: random restarts; per sample, the iterate that is misclassified (label targets) or has the
            highest loss is kept.
        generator: ``torch.Generator`` on ``x.device`` for the random start.
        autocast: optional zero-argument factory of an autocast context for the forward passes.
        loss_scale: constant the summed loss is multiplied by before ``autograd.grad`` so that fp16 input
            gradients do not underflow (sign and L2-normalised steps are scale-free). ``None`` (default):
            ``FP16_LOSS_SCALE`` (1024, a power of two: exact) when the model returns fp16 logits, else 1.

    The model's parameters have ``requires_grad`` turned off during the attack (restored afterwards), so
    the backward computes input gradients only — under ``torch.compile`` too.

    Returns:
        Adversarial examples, same shape and dtype as ``x``, detached.

    Example:
        >>> x_adv = pgd(model, x, y, eps=8/255, eps_step=2/255, max_iter=10)
    """
    norm = norm_name(norm)
    _check_pgd(eps, eps_step, max_iter, restarts, loss)
    ctx = autocast or contextlib.nullcontext
    x, target = x.detach(), target.detach()
    run = functools.partial(_pgd_run, model, x, target, eps=eps, eps_step=eps_step, max_iter=max_iter, norm=norm,
                            clip_values=clip_values, loss=loss, ctx=ctx, loss_scale=loss_scale)
    with _attack_mode(model, bn_mode), torch.enable_grad(), _frozen_params(model):
        if restarts == 1:
            return run(_random_start(x, eps, norm, random_init, generator))
        return _best_of_restarts(model, x, target, run, lambda: _random_start(x, eps, norm, random_init, generator),
                                 restarts=restarts, loss=loss, ctx=ctx)


def _attack_mode(model: Any, bn_mode: str | None) -> contextlib.AbstractContextManager:
    """The model's train/eval mode during the attack (``bn_mode``; ``None`` leaves it), restored after."""
    if not isinstance(model, nn.Module):
        bn_mode_flag(bn_mode, False)  # the mode is checked even for a plain function
        return contextlib.nullcontext()
    return module_mode(model, bn_mode_flag(bn_mode, model.training))


def _check_pgd(eps: float, eps_step: float, max_iter: int, restarts: int, loss: str) -> None:
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if eps_step <= 0 or eps_step > eps:
        raise ValueError(f"eps_step must be in (0, eps], got eps_step={eps_step}, eps={eps}")
    if max_iter < 0 or restarts < 1:
        raise ValueError("max_iter must be >= 0 and restarts >= 1")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _pgd_run(model: Callable[[Tensor], Tensor], x: Tensor, target: Tensor, start: Tensor, *, eps: float,
             eps_step: float, max_iter: int, norm: str, clip_values: tuple[float, float] | None, loss: str,
             ctx: Callable[[], Any], loss_scale: float | None) -> Tensor:
    """One PGD run: ``max_iter`` projected ascent steps from ``x + start`` (detached result)."""
    project = project_linf if norm == "inf" else project_l2
    x_adv = project(x + start, x, eps, clip_values)
    for _ in range(max_iter):
        x_adv.requires_grad_(True)
        with ctx():
            logits = model(x_adv)
        scale = loss_scale if loss_scale is not None else (
            FP16_LOSS_SCALE if logits.dtype == torch.float16 else 1.0)
        objective = attack_loss(logits, target, loss).sum()
        grad = torch.autograd.grad(objective * scale if scale != 1.0 else objective, x_adv)[0]
        if scale != 1.0:
            grad = torch.nan_to_num(grad)  # an fp16 overflow must not turn the batch into NaN
        with torch.no_grad():
            if norm == "inf":
                step = eps_step * grad.sign()
            else:
                step = eps_step * l2_normalize(grad.float()).to(x.dtype)
            x_adv = project(x_adv.detach() + step, x, eps, clip_values)
    return x_adv.detach()


def _best_of_restarts(model: Callable[[Tensor], Tensor], x: Tensor, target: Tensor,
                      run: Callable[[Tensor], Tensor], start: Callable[[], Tensor], *, restarts: int, loss: str,
                      ctx: Callable[[], Any]) -> Tensor:
    """Per sample, the restart's iterate that is misclassified (label targets) or has the highest loss."""
    label_targets = not target.is_floating_point()
    best = x.clone()
    best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
    for _ in range(restarts):
        x_adv = run(start())
        with torch.no_grad(), ctx():
            logits = model(x_adv)
            score = attack_loss(logits, target, loss).float()
            if label_targets:
                score = score + 1e6 * (logits.argmax(1) != target).float()
        improved = score > best_score
        best[improved] = x_adv[improved]
        best_score = torch.where(improved, score, best_score)
    return best


class SoftLabelPGD(EvasionAttack):
    """PGD against soft (probability) or hard labels as an ART ``EvasionAttack`` on a ``PyTorchClassifier``.

    Args:
        estimator: ART ``PyTorchClassifier`` (needs ``clip_values``).
        eps: ε (default 8/255). eps_step: α (default ``None``: :func:`default_eps_step` ``min(ε, 2.5·ε/k)``,
            2/255 at ε = 8/255 and 10 steps). max_iter: steps k (default 10).
        norm: ``"inf"`` or ``2`` (default ``"inf"``). num_random_init: restarts (default 1, 0 = no random start).
        bn_mode: BatchNorm mode during the attack, ``"eval"`` (default) or ``"train"``.
        batch_size: examples per device batch (default 128). verbose: a progress bar over the batches (ART's
            keyword; default ``False``).

    ``generate(x, y)`` takes ``x`` as a float array ``[N, C, H, W]`` in ``clip_values`` (uint8 arrays are
    refused: like every ART attack it returns ``x``'s dtype, and ART classifiers do not rescale uint8) and ``y``
    as index labels ``[N]``, one-hot or probability rows ``[N, K]`` (``None``: the model's predictions).

    Example:
        >>> attack = SoftLabelPGD(classifier, eps=8/255, eps_step=2/255, max_iter=10)
        >>> x_adv = attack.generate(x_test, soft_labels)
    """

    attack_params = EvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "num_random_init", "bn_mode", "batch_size", "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(
        self,
        estimator: Any,
        eps: float = 8 / 255,
        eps_step: float | None = None,
        max_iter: int = 10,
        norm: Any = "inf",
        num_random_init: int = 1,
        bn_mode: str = "eval",
        batch_size: int = 128,
        seed: int | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(estimator=estimator)
        self.eps, self.max_iter = finite_number(eps, "eps"), integer(max_iter, "max_iter", 0)
        self.eps_step = default_eps_step(self.eps, self.max_iter) if eps_step is None else \
            finite_number(eps_step, "eps_step")
        self.verbose = bool(verbose)
        self.norm, self.num_random_init, self.bn_mode = norm, int(num_random_init), bn_mode
        self.batch_size, self.seed = int(batch_size), seed
        self._check_params()

    def _check_params(self) -> None:
        norm_name(self.norm)
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if not 0 < self.eps_step <= self.eps:
            raise ValueError(f"eps_step must be in (0, eps], got {self.eps_step}")
        if self.max_iter < 0 or self.num_random_init < 0 or self.batch_size < 1:
            raise ValueError("max_iter and num_random_init must be >= 0, batch_size >= 1")
        bn_mode_flag(self.bn_mode, False)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial examples for ``x`` (numpy, same dtype/shape), labels ``y`` index / one-hot / soft."""
        from ..estimator import classifier_clip_values, classifier_device, classifier_module

        _, forward = classifier_module(self.estimator)
        device = classifier_device(self.estimator)
        clip_values = classifier_clip_values(self.estimator)
        forward = forward.to(device)
        x = np.asarray(x)
        if x.dtype == np.uint8:
            raise ValueError("x is uint8: pass float images in the classifier's clip_values (e.g. "
                             "x.astype(np.float32) / 255); ART classifiers do not rescale uint8")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        if y is None:
            y = np.argmax(self.estimator.predict(x, batch_size=self.batch_size), axis=1)
        y = np.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x and y have different lengths ({x.shape[0]} vs {y.shape[0]})")
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed if self.seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item()))
        from tqdm.auto import tqdm

        out = np.empty_like(x)
        for i in tqdm(range(0, x.shape[0], self.batch_size), desc="SoftLabelPGD", disable=not self.verbose):
            xb = torch.tensor(x[i : i + self.batch_size], dtype=torch.float32, device=device)
            yb = torch.tensor(y[i : i + self.batch_size], device=device)
            if yb.dim() == 2:
                yb = yb.float()
            adv = pgd(
                forward, xb, yb, eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter, norm=self.norm,
                clip_values=clip_values, random_init=self.num_random_init > 0, loss="ce", bn_mode=self.bn_mode,
                restarts=max(1, self.num_random_init), generator=gen,
            )
            out[i : i + self.batch_size] = clip_to_range(adv, clip_values).cpu().numpy().astype(x.dtype)
        return out
