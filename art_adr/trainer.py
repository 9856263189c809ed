"""ADR adversarial trainers for ART (Wu, Wang & Chen, ICLR 2024, Algorithm 1) on a device-resident loop."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from art.defences.trainer import Trainer
from torch import Tensor, nn

from .attacks import _norm_name, pgd
from .augment import CropFlip
from .awp import AWP, AWP_VARIANTS, frozen_bn_stats, kept_buffers, scale_of
from .ema import EMATeacher
from .estimator import (
    Normalize,
    check_classifier,
    check_model_outputs,
    classifier_clip_values,
    classifier_device,
    classifier_module,
    make_classifier,
)
from .functional import cosine_schedule, ema_warmup_decay, one_hot, rectify_labels, soft_cross_entropy, trades_kl
from .loader import DeviceBatches, fits_on_device, host_images, image_nbytes, to_tensor_images, to_unit_float
from .modes import bn_mode_flag, module_mode, set_bn_momentum

__all__ = ["AdversarialTrainerADR", "AdversarialTrainerTRADESADR", "TrainingDivergedError", "TRADES_VARIANTS"]

Callback = Callable[["AdversarialTrainerADR", dict[str, Any]], None]


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite (``.reason``: what happened, without the restore note)."""

    reason: str | None = None


def _number(value: Any, name: str) -> float:
    """A finite real number (``ValueError`` naming ``name`` for NaN, ±inf, strings, complex, bools, None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, name: str, minimum: int | None = None) -> int:
    """A true integer (``2.5``, ``"10"``, ``True`` and ``None`` are refused with a ``ValueError`` naming ``name``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        v = _number(value, name)
        return v, v
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a (start, end) pair, got {value!r}")
    return _number(value[0], name), _number(value[1], name)


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict with every tensor cloned to the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _amp_dtype(amp: str | None) -> torch.dtype | None:
    table = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in table:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    return table[amp]


class AdversarialTrainerADR(Trainer):
    """PGD adversarial training on ADR-rectified labels (AT+ADR; Wu et al. 2024, Eq. 1-5, Algorithm 1).

    Every iteration: the EMA teacher (eval mode, no grad) labels the clean augmented batch with
    ``P(x) = λ_i·softmax(f_t(x)/τ) + (1 − λ_i)·y``; soft-label PGD attacks ``P(x)``; the student minimises
    the soft cross-entropy on the adversarial batch; the teacher takes one EMA step. τ and λ follow
    cosine schedules per iteration over the whole run. ``adr=False`` gives plain PGD-AT (Madry et al.)
    in the same loop; ``awp_rho > 0`` adds SAM-style adversarial weight perturbation.

    Args:
        classifier: ART ``PyTorchClassifier`` with an optimizer and ``clip_values``.
        eps: attack radius ε (default 8/255). eps_step: step α (default 2/255). max_iter: PGD steps (10).
        norm: ``"inf"`` (default) or ``2``.
        temperature: τ, a number or ``(start, end)`` (default ``(2.5, 2.0)``, CIFAR-10).
        interpolation: λ, a number or ``(start, end)`` in [0, 1] (default ``(0.7, 0.95)``).
        ema_decay: teacher decay γ (default 0.995).
        ema_warmup: use ``min(γ, (1 + t)/(10 + t))`` at iteration t (default False = the authors' fixed γ;
            useful for runs of a few thousand iterations, where a fixed 0.995 keeps the teacher near its init).
        adr: rectify labels (default True); ``False`` trains on one-hot labels.
        awp_rho: relative AWP radius ρ (default 0 = off; ADR authors: 0.005 CIFAR, 0.001 Tiny-ImageNet).
        awp_warmup: epochs before AWP starts (default 0).
        awp_variant: ``"official"`` (default, the ADR authors' ``awp.py``/``advTrainer.py``): every parameter
            with a gradient is perturbed (BatchNorm γ/β and biases too), the unperturbed pass updates the
            BatchNorm running statistics and the perturbed pass does not (momentum 0); the reported loss and
            accuracy are the unperturbed pass's. ``"weights-only"`` (art-adr's former AWP): only ``ndim > 1``
            weights move, the proxy pass leaves the buffers alone and the perturbed pass updates them.
            See :mod:`art_adr.awp`. (The authors' AWP runs use SGD without Nesterov; ``art-adr train`` does so.)
        attack_bn_mode: BatchNorm mode during the training attack, ``"train"`` (ADR authors, default) or
            ``"eval"``.
        bn_momentum: BatchNorm running-statistics momentum from the second iteration on, with 1.0 at the very
            first iteration (ADR authors' runs with extra DDPM data: 0.01); ``None`` (default) leaves the layers'.
        augment: ``True`` for random crop (``crop_padding`` px) + flip on the device, a callable
            ``(x, generator) -> x``, or ``False`` (default).
        amp: ``None``, ``"bf16"`` or ``"fp16"`` autocast (fp16 with gradient scaling).
        channels_last: NHWC memory format for model and batches. compile: ``torch.compile`` the forward.
        eval_max_iter: PGD steps for validation (default 10). eval_every: validate every k epochs.
        scheduler_interval: step the LR scheduler every ``"epoch"`` (default) or ``"step"``.
        seed: seed for batch order, augmentation and attack starts (default 0).
        log_every: iterations between progress-bar refreshes and divergence checks (default 25).
        verbose: show tqdm progress bars.

    Example:
        >>> trainer = AdversarialTrainerADR(clf, eps=8/255, eps_step=2/255, max_iter=10,
        ...                                 temperature=(1.5, 1.0), interpolation=(0.7, 0.95))
        >>> trainer.fit(x_train, y_train, validation_data=(x_test, y_test), nb_epochs=200, batch_size=128)
        >>> robust_clf, wa_clf = trainer.get_classifier(), trainer.get_teacher_classifier()
    """

    method = "at"

    def __init__(
        self,
        classifier: Any,
        eps: float = 8 / 255,
        eps_step: float = 2 / 255,
        max_iter: int = 10,
        norm: Any = "inf",
        temperature: float | Sequence[float] = (2.5, 2.0),
        interpolation: float | Sequence[float] = (0.7, 0.95),
        ema_decay: float = 0.995,
        ema_warmup: bool = False,
        adr: bool = True,
        awp_rho: float = 0.0,
        awp_warmup: int = 0,
        awp_variant: str = "official",
        attack_bn_mode: str = "train",
        bn_momentum: float | None = None,
        augment: bool | Callable[[Tensor, torch.Generator | None], Tensor] = False,
        crop_padding: int = 4,
        amp: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
        eval_max_iter: int = 10,
        eval_every: int = 1,
        eval_batch_size: int | None = None,
        scheduler_interval: str = "epoch",
        seed: int = 0,
        log_every: int = 25,
        verbose: bool = True,
    ) -> None:
        check_classifier(classifier)
        super().__init__(classifier)
        if getattr(classifier, "optimizer", None) is None:
            raise ValueError("the classifier has no optimizer; pass optimizer=... to PyTorchClassifier")
        self.clip_values = classifier_clip_values(classifier, required=True)
        eps, eps_step = _number(eps, "eps"), _number(eps_step, "eps_step")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not 0 < eps_step <= eps:
            raise ValueError(f"eps_step must be in (0, eps], got eps_step={eps_step}, eps={eps}")
        max_iter = _integer(max_iter, "max_iter", 1)
        _norm_name(norm)
        self.temperature = _pair(temperature, "temperature")
        self.interpolation = _pair(interpolation, "interpolation")
        if min(self.temperature) <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not all(0.0 <= v <= 1.0 for v in self.interpolation):
            raise ValueError(f"interpolation must be in [0, 1], got {interpolation}")
        if not 0.0 <= _number(ema_decay, "ema_decay") < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if _number(awp_rho, "awp_rho") < 0:
            raise ValueError(f"awp_rho must be >= 0, got {awp_rho}")
        awp_warmup = _integer(awp_warmup, "awp_warmup", 0)
        if awp_variant not in AWP_VARIANTS:
            raise ValueError(f"awp_variant must be one of {AWP_VARIANTS}, got {awp_variant!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        eval_every, log_every = _integer(eval_every, "eval_every", 1), _integer(log_every, "log_every", 1)
        eval_max_iter, seed = _integer(eval_max_iter, "eval_max_iter", 1), _integer(seed, "seed")
        if eval_batch_size is not None:
            eval_batch_size = _integer(eval_batch_size, "eval_batch_size", 1)
        if augment is True:
            crop_padding = _integer(crop_padding, "crop_padding", 0)
        elif not (augment is False or augment is None or callable(augment)):
            raise ValueError(f"augment must be True, False or a callable (x, generator) -> x, got {augment!r}")
        bn_mode_flag(attack_bn_mode, True)
        self.eps, self.eps_step, self.max_iter, self.norm = float(eps), float(eps_step), int(max_iter), norm
        self.ema_decay, self.ema_warmup, self.adr = float(ema_decay), bool(ema_warmup), bool(adr)
        self.awp_rho, self.awp_warmup, self.awp_variant = float(awp_rho), int(awp_warmup), awp_variant
        self.attack_bn_mode = attack_bn_mode
        if bn_momentum is not None and not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1] or None, got {bn_momentum}")
        self.bn_momentum = None if bn_momentum is None else float(bn_momentum)
        self._bn_momentum_now: float | None = None
        self.augment = CropFlip(crop_padding) if augment is True else (augment or None)
        self.amp_dtype = _amp_dtype(amp)
        self.amp = amp
        self.channels_last, self.compile = bool(channels_last), bool(compile)
        self.eval_max_iter, self.eval_every = int(eval_max_iter), int(eval_every)
        self.eval_batch_size = eval_batch_size
        self.scheduler_interval, self.seed = scheduler_interval, int(seed)
        self.log_every, self.verbose = int(log_every), verbose

        self.device = classifier_device(classifier)
        self.nb_classes = int(classifier.nb_classes)
        self.input_shape = tuple(classifier.input_shape)
        self.optimizer: torch.optim.Optimizer = classifier.optimizer
        raw, forward = classifier_module(classifier)
        raw.to(self.device)
        if self.channels_last:
            raw.to(memory_format=torch.channels_last)
        self._raw = raw
        self._forward = forward.to(self.device)
        check_model_outputs(self._forward, raw, self.input_shape, self.nb_classes, self.device)
        self.teacher = EMATeacher(raw, decay=self.ema_decay)
        self._teacher_forward = (
            Normalize(self.teacher.module, forward.mean, forward.std) if isinstance(forward, Normalize)
            else self.teacher.module
        ).to(self.device)
        self._train_forward: nn.Module | Callable[[Tensor], Tensor] = self._forward
        self._attack_forward: nn.Module | Callable[[Tensor], Tensor] = self._forward
        if self.compile:
            self._train_forward = torch.compile(self._forward)
            self._attack_forward = self._train_forward
        self._local_forward = self._train_forward  # never DDP-wrapped: AWP's proxy gradient stays on this rank
        self._awp = AWP(raw, self.awp_rho, self.awp_variant)
        self._ddp: nn.Module | None = None
        self.rank, self.world_size = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self._setup_distributed()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed + self.rank)  # attack starts differ between DDP ranks
        self.step = 0
        self.epoch = 0
        self.total_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_robust_acc = -1.0
        self.scheduler: Any = None
        self._teacher_classifier: Any = None

    # ------------------------------------------------------------------ setup helpers
    def _setup_distributed(self) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()
        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp = DDP(self._forward, device_ids=ids)
        self._train_forward = self._ddp

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _autocast_factory(self) -> Callable[[], contextlib.AbstractContextManager] | None:
        return self._autocast if self.amp_dtype is not None else None

    def schedule(self, step: int | None = None) -> tuple[float, float]:
        """``(τ, λ)`` at iteration ``step`` (default: the current one) of the run's cosine schedules."""
        step = self.step if step is None else step
        total = max(self.total_steps, 1)
        tau = cosine_schedule(self.temperature[0], self.temperature[1], step, total)
        lam = cosine_schedule(self.interpolation[0], self.interpolation[1], step, total)
        return tau, lam

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x: Any, name: str = "x") -> np.ndarray | Tensor:
        if not isinstance(x, (np.ndarray, Tensor)):
            raise ValueError(f"{name} must be a numpy array or tensor, got {type(x).__name__}")
        real = (x.dtype.is_floating_point or x.dtype in _INT_DTYPES) if isinstance(x, Tensor) \
            else x.dtype.kind in "fiu"
        if not real:
            raise ValueError(f"{name} must hold real numbers (float or uint8 images), got dtype {x.dtype}")
        if tuple(x.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected (N, {expected})")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        arr = x if isinstance(x, Tensor) else np.asarray(x)
        if arr.dtype != np.uint8 and arr.dtype != torch.uint8:
            finite = torch.isfinite(arr).all().item() if isinstance(arr, Tensor) else np.isfinite(arr).all()
            if not finite:
                raise ValueError(f"{name} contains NaN or infinite values")
            lo, hi = self.clip_values
            mn, mx = float(arr.min()), float(arr.max())
            if mn < lo - 1e-6 or mx > hi + 1e-6:
                raise ValueError(f"{name} has values in [{mn:.3g}, {mx:.3g}], outside clip_values ({lo}, {hi})")
        return arr

    def _check_y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        y = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
        if y.ndim == 0 or y.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be an array of integer class indices or one-hot rows, got "
                             f"dtype {y.dtype} shape {y.shape}")
        if y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0]} labels for {n} inputs")
        if y.ndim == 2:
            if y.shape[1] != self.nb_classes:
                raise ValueError(f"{name} has {y.shape[1]} columns, the classifier has {self.nb_classes} classes")
            if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
                raise ValueError(f"{name} must hold index labels or one-hot rows (ADR rectifies from the ground truth)")
            y = y.argmax(axis=1)
        elif y.ndim != 1:
            raise ValueError(f"{name} must be index labels [N] or one-hot [N, {self.nb_classes}], got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError(f"{name} must be integer class indices")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= self.nb_classes:
            raise ValueError(f"{name} has labels in [{y.min()}, {y.max()}], expected [0, {self.nb_classes - 1}]")
        return y

    def _device_data(self, x: Any, y: Any, name: str = "x") -> tuple[Tensor, Tensor]:
        arr = self._check_x(x, name)
        labels = self._check_y(y, arr.shape[0], "y" if name == "x" else f"{name} labels")
        return to_tensor_images(arr, self.device), torch.as_tensor(labels, device=self.device)

    # ------------------------------------------------------------------ one iteration
    def _targets(self, x: Tensor, y: Tensor) -> Tensor:
        """ADR rectified labels from the teacher on the clean batch (or one-hot when ``adr=False``)."""
        if not self.adr:
            return one_hot(y, self.nb_classes)
        tau, lam = self.schedule()
        with torch.no_grad(), self._autocast():
            teacher_logits = self._teacher_forward(x)
        return rectify_labels(teacher_logits, y, tau, lam)

    def _loss(self, x: Tensor, x_adv: Tensor, target: Tensor,
              forward: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Training loss and adversarial logits (AT: soft CE on the adversarial batch) through ``forward``
        (default: the training forward, DDP-wrapped and/or compiled)."""
        forward = self._train_forward if forward is None else forward
        with self._autocast():
            logits_adv = forward(x_adv)
        return soft_cross_entropy(logits_adv, target), logits_adv

    def _attack(self, x: Tensor, target: Tensor) -> Tensor:
        return pgd(
            self._attack_forward, x, target, eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter,
            norm=self.norm, clip_values=self.clip_values, random_init=True, loss="ce",
            bn_mode=self.attack_bn_mode, generator=self.generator, autocast=self._autocast_factory(),
        )

    def _apply_bn_momentum(self) -> None:
        """BatchNorm momentum 1.0 at iteration 0, then ``bn_momentum`` (authors' ``set_bn_momentum``)."""
        if self.bn_momentum is None:
            return
        want = 1.0 if self.step == 0 else self.bn_momentum
        if want != self._bn_momentum_now:
            set_bn_momentum(self._raw, want)
            self._bn_momentum_now = want

    def _awp_active(self) -> bool:
        return self.awp_rho > 0 and self.epoch >= self.awp_warmup

    def _awp_perturb(self, x: Tensor, x_adv: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """One AWP iteration's forward/backward passes (:mod:`art_adr.awp`); leaves the gradient of the loss at
        the perturbed weights in ``.grad`` and the weights back at ``w``. Returns ``(loss, adversarial logits)``.

        ``official``: pass 1 at ``w`` (train mode, updates BatchNorm statistics, local gradient — no DDP
        reduction), pass 2 at ``w + e(w)`` through the (DDP) training forward with BatchNorm momentum 0; the
        reported loss/logits are pass 1's, as in the authors' code. ``weights-only``: the proxy pass leaves the
        buffers alone and the perturbed pass is the reported one.
        """
        if self.awp_variant == "official":
            loss, logits_adv = self._loss(x, x_adv, target, forward=self._local_forward)
            with self._awp.perturbed(loss, self.scaler), frozen_bn_stats(self._raw):
                perturbed, _ = self._loss(x, x_adv, target, forward=self._train_forward)
                self.scaler.scale(perturbed).backward()
            return loss, logits_adv
        with kept_buffers(self._raw):  # restored after the proxy's backward (which saved the buffers)
            proxy, _ = self._loss(x, x_adv, target, forward=self._local_forward)
            saved = self._awp.perturb(proxy, self.scaler)
        try:
            loss, logits_adv = self._loss(x, x_adv, target, forward=self._train_forward)
            self.scaler.scale(loss).backward()
        finally:
            self._awp.restore(saved)
        return loss, logits_adv

    def _buffer_guard(self) -> list[tuple[Tensor, Tensor]] | None:
        """With fp16 gradient scaling, a copy of the student's buffers (BatchNorm statistics) taken before the
        iteration's train-mode forwards, so :meth:`_optimizer_step` can undo what an overflowing step wrote."""
        if not self.scaler.is_enabled():
            return None
        return [(b, b.detach().clone()) for b in self._raw.buffers()]

    def _optimizer_step(self, guard: list[tuple[Tensor, Tensor]] | None) -> None:
        """``scaler.step`` + ``scaler.update``; when the scaler skips the step (inf/NaN gradients: its scale
        shrinks) the buffers go back to ``guard`` — selected on the device, no host synchronisation."""
        scale = scale_of(self.scaler) if guard is not None else None
        before = scale.clone() if scale is not None else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if guard is None or before is None:
            return
        skipped = scale_of(self.scaler) < before
        with torch.no_grad():
            for b, original in guard:
                b.copy_(torch.where(skipped, original, b))

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One ADR iteration on a device batch; returns ``(loss, #correct on adversarial inputs)`` as tensors."""
        self._apply_bn_momentum()
        guard = self._buffer_guard()
        target = self._targets(x, y)
        x_adv = self._attack(x, target)
        with module_mode(self._raw, True):
            self.optimizer.zero_grad(set_to_none=True)
            if self._awp_active():
                loss, logits_adv = self._awp_perturb(x, x_adv, target)
            else:
                loss, logits_adv = self._loss(x, x_adv, target)
                self.scaler.scale(loss).backward()
            self._optimizer_step(guard)
        decay = ema_warmup_decay(self.ema_decay, self.step) if self.ema_warmup else None
        self.teacher.update(self._raw, decay)
        self.step += 1
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        correct = (logits_adv.detach().argmax(1) == y).sum()
        return loss.detach(), correct

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _accuracy(self, forward: Callable[[Tensor], Tensor], model: nn.Module, x: Tensor, y: Tensor,
                  adversarial: bool, generator: torch.Generator) -> Tensor:
        with module_mode(model, False):
            if adversarial:
                x = pgd(forward, x, y, eps=self.eps, eps_step=self.eps_step, max_iter=self.eval_max_iter,
                        norm=self.norm, clip_values=self.clip_values, bn_mode="eval", generator=generator,
                        autocast=self._autocast_factory())
            with self._autocast():
                return (forward(x).argmax(1) == y).sum()

    def evaluate(self, x: Any, y: Any, batch_size: int | None = None, adversarial: bool = True) -> dict[str, float]:
        """Clean and PGD accuracy of student and teacher on ``(x, y)`` (eval mode, hard labels, fixed seed)."""
        on_device = isinstance(x, Tensor) and x.device == self.device
        xs, ys = (x, y) if on_device else self._device_data(x, y, "validation x")
        return self._evaluate_tensors(xs, ys, batch_size, adversarial)

    def _evaluate_tensors(self, xs: Tensor, ys: Tensor, batch_size: int | None, adversarial: bool) -> dict[str, float]:
        bs = batch_size or self.eval_batch_size or 256
        gen = torch.Generator(device=self.device)
        gen.manual_seed(12345)
        models = {"": (self._forward, self._raw), "teacher_": (self._teacher_forward, self.teacher.module)}
        counts = {f"{k}{m}": torch.zeros((), device=self.device, dtype=torch.long)
                  for k in models for m in (["clean_acc", "pgd_acc"] if adversarial else ["clean_acc"])}
        n = xs.shape[0]
        shard = range(self.rank * bs, n, bs * self.world_size)
        for i in shard:
            xb = xs[i : i + bs]
            xb = to_unit_float(xb)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = ys[i : i + bs]
            for prefix, (fwd, mod) in models.items():
                counts[f"{prefix}clean_acc"] += self._accuracy(fwd, mod, xb, yb, False, gen)
                if adversarial:
                    counts[f"{prefix}pgd_acc"] += self._accuracy(fwd, mod, xb, yb, True, gen)
        if self.world_size > 1:
            stacked = torch.stack(list(counts.values()))
            torch.distributed.all_reduce(stacked)
            counts = dict(zip(counts, stacked))
        return {k: float(v.item()) / n for k, v in counts.items()}

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        batch_size: int = 128,
        nb_epochs: int = 20,
        scheduler: Any = None,
        callbacks: Iterable[Callback] = (),
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train on numpy ``x`` (``[N, *input_shape]`` in ``clip_values``, or uint8) and index/one-hot ``y``.

        The caller's arrays are copied to the device once and never modified (when they would take more than
        half the free GPU memory they stay on the host and batches are streamed). Returns the per-epoch
        history (also in ``self.history``). Calling ``fit`` again after ``load_state_dict`` resumes at
        ``self.epoch``.
        """
        if kwargs:
            raise TypeError(f"unexpected fit() arguments: {sorted(kwargs)}")
        batch_size = _integer(batch_size, "batch_size", 1)
        nb_epochs, callbacks = self._check_fit_args(nb_epochs, validation_data, callbacks)
        arr = self._check_x(x)
        labels = self._check_y(y, arr.shape[0])
        stream = not fits_on_device(image_nbytes(arr), self.device)  # too big: stay on the host, stream batches
        if stream:
            xs, ys = host_images(arr), torch.as_tensor(labels)
        else:
            xs, ys = to_tensor_images(arr, self.device), torch.as_tensor(labels, device=self.device)
        batches = DeviceBatches(xs, ys, batch_size, shuffle=True, augment=self.augment, seed=self.seed,
                                device=self.device, channels_last=self.channels_last, rank=self.rank,
                                world_size=self.world_size, stream=stream)
        return self.fit_batches(batches.epoch, len(batches), nb_epochs, validation_data, scheduler, callbacks)

    @staticmethod
    def _check_fit_args(nb_epochs: Any, validation_data: Any, callbacks: Any) -> tuple[int, list[Callback]]:
        """``nb_epochs`` an integer >= 1, ``validation_data`` ``None`` or an ``(x, y)`` pair, callables only."""
        nb_epochs = _integer(nb_epochs, "nb_epochs", 1)
        if validation_data is not None and (not isinstance(validation_data, (tuple, list))
                                            or len(validation_data) != 2):
            raise ValueError(f"validation_data must be None or an (x, y) pair, got {type(validation_data).__name__}")
        if callable(callbacks) or not isinstance(callbacks, Iterable):
            raise ValueError("callbacks must be a list of callables f(trainer, record)")
        callbacks = list(callbacks)
        if not all(callable(cb) for cb in callbacks):
            raise ValueError("callbacks must be a list of callables f(trainer, record)")
        return nb_epochs, callbacks

    def fit_generator(
        self,
        generator: Any,
        nb_epochs: int = 20,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        scheduler: Any = None,
        callbacks: Iterable[Callback] = (),
        steps_per_epoch: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train from an ART ``DataGenerator`` or a ``torch.utils.data.DataLoader`` of ``(x, y)`` batches."""
        if kwargs:
            raise TypeError(f"unexpected fit_generator() arguments: {sorted(kwargs)}")
        nb_epochs, callbacks = self._check_fit_args(nb_epochs, validation_data, callbacks)
        if steps_per_epoch is not None:
            steps_per_epoch = _integer(steps_per_epoch, "steps_per_epoch", 1)
        if generator is None or not (hasattr(generator, "get_batch") or hasattr(generator, "__iter__")):
            raise ValueError(f"generator must be an ART DataGenerator or an iterable of (x, y) batches, "
                             f"got {type(generator).__name__}")
        if hasattr(generator, "get_batch") and hasattr(generator, "size"):
            size, bs = generator.size, generator.batch_size
            steps = steps_per_epoch or max(1, math.ceil(size / bs))

            def epoch_iter(_epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
                for _ in range(steps):
                    yield self._host_batch(*generator.get_batch())
        else:
            try:
                steps = steps_per_epoch or len(generator)
            except TypeError:
                raise ValueError("the data loader has no length; pass steps_per_epoch=...") from None

            def epoch_iter(_epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
                for i, (xb, yb) in enumerate(generator):
                    if i >= steps:
                        break
                    yield self._host_batch(xb, yb)
        return self.fit_batches(epoch_iter, steps, nb_epochs, validation_data, scheduler, callbacks)

    def _host_batch(self, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        arr = self._check_x(x)
        labels = self._check_y(y, arr.shape[0])
        xb = torch.as_tensor(arr).to(self.device, non_blocking=True)
        xb = to_unit_float(xb)
        if self.augment is not None:
            xb = self.augment(xb, self.generator)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, torch.as_tensor(labels, device=self.device)

    def fit_batches(
        self,
        epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
        steps_per_epoch: int,
        nb_epochs: int,
        validation_data: Any,
        scheduler: Any,
        callbacks: Iterable[Callback],
    ) -> list[dict[str, Any]]:
        """The loop over epochs: ``epoch_batches(epoch)`` yields device batches ``(x in [0,1], y)``.

        On :class:`TrainingDivergedError` the student, teacher, optimizer, scheduler, scaler, counters and RNG
        states are first restored to the start of the last epoch whose weights were finite (a CPU copy taken at
        every epoch start), so the caller can lower the learning rate and call ``fit`` again.
        """
        self._last_finite: dict[str, Any] | None = None
        try:
            return self._fit_epochs(epoch_batches, steps_per_epoch, nb_epochs, validation_data, scheduler,
                                    callbacks)
        except TrainingDivergedError as exc:
            error = TrainingDivergedError(f"{exc}. {self._restore_last_finite()}")
            error.reason = str(exc)  # without the API's restore note (art-adr train words its own)
            raise error from None
        finally:
            self._last_finite = None

    def _snapshot_if_finite(self) -> None:
        """Keep a CPU copy of the training state when the student's and teacher's tensors are all finite."""
        state = _cpu_copy(self.state_dict())
        tensors = [t for part in ("student", "teacher") for t in state[part].values()
                   if isinstance(t, Tensor) and t.is_floating_point()]
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            state["rng"]["attack_rank"] = self.rank  # this rank's own generator state (no rank-0 fallback)
            self._last_finite = state

    def _restore_last_finite(self) -> str:
        """Load the last finite snapshot into the live model/teacher/optimizer; say what was done."""
        state = self._last_finite
        if state is None:
            return ("The model was NOT restored (no finite state was seen in this call); rebuild the classifier "
                    "or load_state_dict() a checkpoint before training again")
        self.load_state_dict(state)
        return (f"The model, teacher, optimizer, scheduler and RNG states were restored to the start of epoch "
                f"{int(state['epoch']) + 1} (iteration {int(state['step'])}); lower the learning rate (or "
                f"avoid fp16) and call fit() again to continue from there")

    def _fit_epochs(
        self,
        epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
        steps_per_epoch: int,
        nb_epochs: int,
        validation_data: Any,
        scheduler: Any,
        callbacks: Iterable[Callback],
    ) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise ValueError("scheduler must have a .step() method")
        self.scheduler = scheduler if scheduler is not None else self.scheduler
        self.total_steps = nb_epochs * steps_per_epoch
        val = self._device_data(*validation_data, name="validation x") if validation_data is not None else None
        callbacks = list(callbacks)
        show = self.verbose and self.rank == 0
        while self.epoch < nb_epochs:
            epoch = self.epoch
            self._snapshot_if_finite()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            seen = 0
            tau0, lam0 = self.schedule()
            lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this epoch starts with
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{nb_epochs}", disable=not show, leave=False)
            for i, (xb, yb) in enumerate(epoch_batches(epoch)):
                loss, corr = self.train_step(xb, yb)
                loss_sum += loss.float() * yb.shape[0]
                correct += corr
                seen += yb.shape[0]
                if (i + 1) % self.log_every == 0 or i + 1 == steps_per_epoch:
                    self._check_finite(loss_sum, epoch, i)
                    if show:
                        bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", adv_acc=f"{correct.item() / seen:.3f}",
                                        tau=f"{self.schedule()[0]:.3f}", lam=f"{self.schedule()[1]:.3f}")
                bar.update(1)
            bar.close()
            self._check_finite(loss_sum, epoch, steps_per_epoch)
            if self.world_size > 1:
                stats = torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=self.device)])
                torch.distributed.all_reduce(stats)
                loss_sum, correct, seen = stats[0], stats[1], int(stats[2].item())
            self._sync_buffers()
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            self.epoch += 1
            record: dict[str, Any] = {
                "epoch": self.epoch, "step": self.step, "loss": float(loss_sum.item()) / max(seen, 1),
                "train_robust_acc": float(correct.item()) / max(seen, 1), "lr": lr,
            }
            if self.adr:  # τ, λ at the epoch's first and after its last iteration
                tau1, lam1 = self.schedule()
                record.update({"tau": tau0, "lambda": lam0, "tau_end": tau1, "lambda_end": lam1})
            record["train_seconds"] = time.perf_counter() - t0
            record["images_per_s"] = seen / record["train_seconds"]
            if val is not None and (self.epoch % self.eval_every == 0 or self.epoch == nb_epochs):
                record.update(self._evaluate_tensors(val[0], val[1], None, True))
                if record["pgd_acc"] > self.best_robust_acc:
                    self.best_robust_acc, self.best_epoch = record["pgd_acc"], self.epoch
                record["best_epoch"] = self.best_epoch
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            if show:
                tqdm.write(self._format_record(record, nb_epochs))
            for cb in callbacks:
                cb(self, record)
        return self.history

    def _check_finite(self, loss_sum: Tensor, epoch: int, iteration: int) -> None:
        """``TrainingDivergedError`` when the loss sum is NaN/inf — on every DDP rank at once (the flag is
        all-reduced), so one rank's divergence never leaves the others waiting in a collective."""
        bad = (~torch.isfinite(loss_sum.detach())).float().reshape(1)
        if self.world_size > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bool(bad.item()):
            where = f" on at least one of {self.world_size} processes" if self.world_size > 1 else ""
            raise TrainingDivergedError(
                f"training loss became non-finite{where} in epoch {epoch + 1} "
                f"(by iteration {iteration + 1}); lower the learning rate, check the data, or avoid fp16"
            )

    def _sync_buffers(self) -> None:
        """DDP, at every epoch end: the student's buffers become rank 0's (what DDP's next forward broadcasts
        anyway) and the EMA teachers' floating buffers (BatchNorm statistics, blended from each rank's own
        shard) their average over ranks, so validation, the saved teacher (rank 0's) and every rank agree."""
        if self.world_size <= 1:
            return
        for b in self._raw.buffers():
            torch.distributed.broadcast(b.data, src=0)
        for b in self.teacher.module.buffers():
            if b.is_floating_point():
                torch.distributed.all_reduce(b.data)
                b.data.div_(self.world_size)
            else:
                torch.distributed.broadcast(b.data, src=0)

    @staticmethod
    def _format_record(r: dict[str, Any], nb_epochs: int) -> str:
        s = f"epoch {r['epoch']}/{nb_epochs} loss {r['loss']:.4f} adv_acc {r['train_robust_acc']:.3f} "
        if "tau" in r:
            s += f"tau {r['tau']:.3f} lambda {r['lambda']:.3f} "
        s += f"lr {r['lr']:.4g} {r['seconds']:.1f}s"
        if "pgd_acc" in r:
            s += (f" | val clean {r['clean_acc']:.3f} pgd {r['pgd_acc']:.3f}"
                  f" | teacher clean {r['teacher_clean_acc']:.3f} pgd {r['teacher_pgd_acc']:.3f}")
        return s

    # ------------------------------------------------------------------ outputs
    def predict(self, x: np.ndarray, batch_size: int = 256, teacher: bool = False, **kwargs: Any) -> np.ndarray:
        """Logits of the student (or the EMA teacher) for ``x``, as a numpy array."""
        arr = self._check_x(x)
        forward, model = (self._teacher_forward, self.teacher.module) if teacher else (self._forward, self._raw)
        outs = []
        with torch.no_grad(), module_mode(model, False):
            for i in range(0, arr.shape[0], batch_size):
                xb = torch.as_tensor(arr[i : i + batch_size]).to(self.device)
                xb = to_unit_float(xb)
                outs.append(forward(xb).float().cpu().numpy())
        return np.concatenate(outs)

    def get_teacher_classifier(self) -> Any:
        """The EMA teacher (the "+WA" model) as an ART ``PyTorchClassifier`` sharing the live weights."""
        if self._teacher_classifier is None:
            self._teacher_classifier = make_classifier(self.teacher.module, like=self._classifier)
        return self._teacher_classifier

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume: weights, teacher, optimizer, scheduler, step, RNG states."""
        return {
            "student": self._raw.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None,
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_robust_acc": self.best_robust_acc,
            "history": list(self.history),
            "rng": {  # CPU ByteTensors; "cuda" is indexed by device (empty for a CPU trainer)
                "attack": self.generator.get_state(),
                "attack_device": self.generator.device.type,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
        }

    def load_state_dict(self, state: dict[str, Any], scheduler: Any = None) -> None:
        """Restore a :meth:`state_dict` (pass the run's scheduler to restore its state too)."""
        self._raw.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            self.scheduler = scheduler
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best_epoch = state.get("best_epoch")
        self.best_robust_acc = float(state.get("best_robust_acc", -1.0))
        self.history = list(state.get("history", []))
        # RNG states are CPU ByteTensors whatever map_location the checkpoint was loaded with. A state restores
        # only into a generator of the device type it came from (a CPU Mersenne-Twister state and a CUDA Philox
        # state are different things) and only this device's CUDA state; otherwise (a run saved on CPU and
        # resumed on a GPU, or on fewer GPUs) the run continues, re-seeded, with a warning.
        rng = state.get("rng") or {}
        notes = []
        if rng.get("attack") is not None:
            attack = rng["attack"]
            ranks = list(rng.get("attack_ranks") or [])  # every DDP rank's state (art-adr train adds them)
            saved = max(len(ranks), 1)
            if rng.get("attack_rank") == self.rank:  # a state this rank took itself (the last-finite restore)
                pass
            elif self.world_size > 1 and len(ranks) == self.world_size:
                attack = ranks[self.rank]
            elif saved != self.world_size:  # resumed by another number of processes (e.g. on fewer GPUs)
                if self.rank < len(ranks):
                    attack = ranks[self.rank]
                notes.append(f"attack generator states were saved for {saved} process(es), this run has "
                             f"{self.world_size}" + (f" (rank {self.rank} continues from rank 0's)"
                                                     if self.rank >= saved else ""))
            attack = torch.as_tensor(attack).detach().to("cpu", torch.uint8)
            kind = rng.get("attack_device") or (
                "cpu" if attack.numel() == torch.Generator().get_state().numel() else "cuda")
            if kind == self.generator.device.type:
                self.generator.set_state(attack)
            else:
                self.generator.manual_seed(self.seed + self.step)
                notes.append(f"the attack generator state was saved on {kind}, this run's generator is on "
                             f"{self.generator.device.type} (re-seeded with seed + step)")
        if rng.get("torch") is not None:
            torch.set_rng_state(torch.as_tensor(rng["torch"]).detach().to("cpu", torch.uint8))
        if self.device.type == "cuda":
            cuda_states = list(rng.get("cuda") or [])
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            if index < len(cuda_states):
                torch.cuda.set_rng_state(torch.as_tensor(cuda_states[index]).detach().to("cpu", torch.uint8),
                                         index)
            else:
                notes.append(f"no CUDA RNG state was saved for cuda:{index} (saved for {len(cuda_states)} GPUs)")
        if notes:
            import warnings

            warnings.warn("resuming on another device: " + "; ".join(notes) + ". Training continues, but not "
                          "bit-for-bit as an uninterrupted run would have.", RuntimeWarning, stacklevel=2)


TRADES_VARIANTS = ("official", "reference")


class AdversarialTrainerTRADESADR(AdversarialTrainerADR):
    """TRADES with ADR: ``CE(f(x), P(x)) + β·KL(f(x) ‖ f(x'))`` (Zhang et al. 2019; Wu et al. 2024 §4.2).

    The rectified label replaces the one-hot label only in the clean cross-entropy term; the attack
    maximises the KL term. Takes every argument of :class:`AdversarialTrainerADR` plus:

    Args:
        beta: TRADES β (default 6.0).
        trades_variant: ``"official"`` (default) follows the ADR authors' code (``advTrainer.py``,
            ``trades_attack.py``): the attack runs with the model in **train** mode (BatchNorm on batch
            statistics) from ``x + 0.001·U[0, 1)``, and the loss comes from **one forward of the concatenated
            batch** ``f(cat[x, x'])`` (one BatchNorm batch of 2N). ``"reference"`` follows the TRADES reference
            code: eval-mode attack from ``x + 0.001·N(0, 1)`` and two separate forwards ``f(x)``, ``f(x')``.
            (Both clip the start to the valid box; the authors' first attack forward sees it unclipped.)
        attack_bn_mode: overrides the variant's BatchNorm mode during the attack (``None`` = the variant's).

    ``adr=False`` gives plain TRADES in the same loop.

    Example:
        >>> trainer = AdversarialTrainerTRADESADR(clf, beta=6.0, temperature=(1.5, 1.0))
        >>> trainer.fit(x_train, y_train, nb_epochs=200)
    """

    method = "trades"

    def __init__(self, classifier: Any, beta: float = 6.0, trades_variant: str = "official",
                 attack_bn_mode: str | None = None, **kwargs: Any) -> None:
        if not _number(beta, "beta") >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if trades_variant not in TRADES_VARIANTS:
            raise ValueError(f"trades_variant must be one of {TRADES_VARIANTS}, got {trades_variant!r}")
        self.beta = float(beta)
        self.trades_variant = trades_variant
        if attack_bn_mode is None:
            attack_bn_mode = "train" if trades_variant == "official" else "eval"
        super().__init__(classifier, attack_bn_mode=attack_bn_mode, **kwargs)

    def _attack(self, x: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad(), module_mode(self._raw, bn_mode_flag(self.attack_bn_mode, True)), self._autocast():
            clean_logits = self._attack_forward(x).float()
        start = "trades-uniform" if self.trades_variant == "official" else "trades"
        return pgd(
            self._attack_forward, x, clean_logits, eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter,
            norm=self.norm, clip_values=self.clip_values, random_init=start, loss="kl",
            bn_mode=self.attack_bn_mode, generator=self.generator, autocast=self._autocast_factory(),
        )

    def _loss(self, x: Tensor, x_adv: Tensor, target: Tensor,
              forward: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        forward = self._train_forward if forward is None else forward
        with self._autocast():
            if self.trades_variant == "official":
                both = torch.cat([x, x_adv])
                if self.channels_last:
                    both = both.contiguous(memory_format=torch.channels_last)
                logits_clean, logits_adv = forward(both).split(x.shape[0])
            else:
                logits_clean = forward(x)
                logits_adv = forward(x_adv)
        loss = soft_cross_entropy(logits_clean, target) + self.beta * trades_kl(logits_adv, logits_clean)
        return loss, logits_adv
