"""ADR adversarial trainers for ART (Wu, Wang & Chen, ICLR 2024, Algorithm 1) on a device-resident loop.

One iteration (:meth:`AdversarialTrainerADR.train_step`): the EMA teacher rectifies the labels (``adr=True``),
the training method (:mod:`art_adr.methods`: AT, TRADES, MART, ...) attacks and computes its loss, AWP
(:mod:`art_adr.awp`) optionally perturbs the weights, mixed precision (:mod:`art_adr.precision`) scales the
step, and the teacher takes one EMA step. The trainer is composed of parts it holds: the iteration and its forwards
(:class:`art_adr.step.AdrStep`, :class:`art_adr.step.Forwards`), the epoch loop, history and best epoch
(:class:`art_adr.loop.EpochLoop`), the τ/λ schedules
(:class:`art_adr.rectification.RectificationSchedule`) and the per-epoch validation
(:class:`art_adr.validator.Validator`); the checkpoint state's rules are in :mod:`art_adr.training_state`, input
checks in :mod:`art_adr.checks`, DDP in :mod:`art_adr.distributed`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from art.defences.trainer import Trainer
from torch import Tensor, nn

from . import defaults
from .art_compat import is_art_pgd, threat_model_of
from .attacks import AttackSpec, default_eps_step, norm_name
from .augment import CropFlip
from .awp import AWP, AWP_VARIANTS
from .checks import boolean, check_images, check_labels, finite_number, integer
from .compiling import compile_mode
from .distributed import convert_sync_bn, ddp_world
from .ema import EMA_BUFFERS, EMATeacher
from .estimator import (
    Normalize,
    check_classifier,
    check_model_outputs,
    classifier_clip_values,
    classifier_device,
    classifier_module,
    make_classifier,
)
from .loader import DeviceBatches, finish_batch, fits_on_device, host_images, image_nbytes, to_tensor_images
from .loop import BestEpoch, Callback, EpochLoop, TrainingDivergedError
from .methods import AttackContext, TrainingMethod
from .methods.at import AT
from .methods.mart import MART
from .methods.trades import TRADES, TRADES_VARIANTS
from .modes import bn_mode_flag, module_mode
from .precision import Precision
from .rectification import RectificationSchedule
from .step import AdrStep, Forwards
from .training_state import check_state, cpu_copy, restore_rng
from .validator import ValidatedModel, Validator, validation_settings

__all__ = ["AdversarialTrainerADR", "AdversarialTrainerTRADESADR", "AdversarialTrainerMARTADR",
           "AdversarialTrainerAWPADR", "TrainingDivergedError", "TRADES_VARIANTS", "FIT_KWARGS"]

# the ART keywords fit() uses (PyTorchClassifier.fit's names); others ART passes along are ignored with a warning
FIT_KWARGS = ("verbose", "drop_last")


def _warn_implausible_eps(eps: Any, norm: Any, clip_values: tuple[float, float], input_shape: Any) -> None:
    """A ``UserWarning`` when ``eps`` cannot be meant for inputs in ``clip_values`` (ε is in the classifier's
    units: 8/255 on ``(0, 1)`` is 8 on ``(0, 255)``): L∞ above half the range or below a thousandth of it, L2
    above half the diagonal's length."""
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        return  # the checks that follow refuse it
    width = float(clip_values[1]) - float(clip_values[0])
    try:
        linf = norm_name(norm) == "inf"
    except ValueError:
        return
    limit = 0.5 * width * (1.0 if linf else float(np.sqrt(np.prod(input_shape))))
    if eps > limit or (linf and eps < 1e-3 * width):
        warnings.warn(f"eps={eps:g} is implausible for a classifier clipped to {tuple(clip_values)} (an "
                      f"{'L∞' if linf else 'L2'} radius {'above' if eps > limit else 'below'} "
                      f"{limit if eps > limit else 1e-3 * width:g}): eps is in the classifier's units, e.g. 8/255 "
                      "with clip_values (0, 1), 8 with (0, 255)", UserWarning, stacklevel=4)


def _is_attack(value: Any) -> bool:
    """An attack object (an ART PGD or a :class:`SoftLabelPGD`) where ART's order puts the attack."""
    from .attacks import SoftLabelPGD

    return isinstance(value, SoftLabelPGD) or is_art_pgd(value)


class AdversarialTrainerADR(Trainer):
    """Adversarial training on ADR-rectified labels (Wu et al. 2024, Eq. 1-5, Algorithm 1); PGD-AT by default.

    Every iteration: the EMA teacher (eval mode, no grad) labels the clean augmented batch with
    ``P(x) = λ_i·softmax(f_t(x)/τ) + (1 − λ_i)·y``; the training ``method`` attacks and computes its loss with
    ``P(x)`` as its target (AT: soft-label PGD and soft CE on the adversarial batch); the teacher takes one EMA
    step. τ and λ follow cosine schedules per iteration over the epochs of the ``fit`` call (see
    :class:`art_adr.rectification.RectificationSchedule` for resuming). ``adr=False`` gives the plain method
    (Madry et al.'s PGD-AT) in the same loop; ``awp_rho > 0`` adds SAM-style adversarial weight perturbation.

    Args:
        classifier: ART ``PyTorchClassifier`` with an optimizer and ``clip_values``.
        eps: attack radius ε (default 8/255). eps_step: step α (default ``None``: ``min(ε, 2.5·ε/k)``, 2/255 for
            ε = 8/255 and k = 10, :func:`art_adr.attacks.default_eps_step`). max_iter: PGD steps k (10).
        norm: ``"inf"`` (default) or ``2``.
        temperature: τ, a number or ``(start, end)`` (default ``art_adr.defaults.TEMPERATURE`` = ``(2.5, 2.0)``),
            or ``"auto"``: set at every validation to the temperature that calibrates the EMA teacher on the
            hold-out's adversarial examples (:mod:`art_adr.auto_schedule`; needs ``validation_data``).
        interpolation: λ, a number or ``(start, end)`` in [0, 1] (default ``defaults.INTERPOLATION`` =
            ``(0.7, 0.95)``), or ``"auto"``: the teacher's hold-out robust accuracy under ``val_attack``.
        ema_decay: teacher decay γ (default 0.995).
        ema_warmup: use ``min(γ, (1 + t)/(10 + t))`` at iteration t (default False = the authors' fixed γ;
            useful for runs of a few thousand iterations, where a fixed 0.995 keeps the teacher near its init).
        adr: rectify labels (default True); ``False`` trains on one-hot labels.
        awp_rho: relative AWP radius ρ (default 0 = off; ADR authors: 0.005 CIFAR, 0.001 Tiny-ImageNet).
        awp_warmup: epochs before AWP starts (default 0).
        awp_variant: ``"official"`` (default, the ADR authors' ``awp.py``) or ``"weights-only"``; see
            :mod:`art_adr.awp`. (The authors' AWP runs use SGD without Nesterov; ``art-adr train`` does so.)
        attack_bn_mode: BatchNorm mode during the training attack, ``"train"``, ``"eval"`` or ``None`` (default:
            the method's — AT ``"train"`` as the ADR authors, TRADES its variant's, MART ``"eval"``).
        ema_buffers: where the EMA teacher's buffers (BatchNorm running mean/var) come from: ``"average"``
            (default; the ADR authors' timm ``ModelEmaV2`` averages them like the weights) or ``"student"``
            (copied from the student at every update, timm's ``exclude_buffers``): an experiment of issue 28.
        bn_momentum: BatchNorm running-statistics momentum from the second iteration on, with 1.0 at the very
            first iteration (ADR authors' runs with extra DDPM data: 0.01); ``None`` (default) leaves the layers'.
        augment: ``True`` for random crop (``crop_padding`` px) + flip on the device, a callable
            ``(x, generator) -> x``, or ``False`` (default).
        drop_last: :meth:`fit` drops each epoch's last partial batch (default True, as the ADR authors' loaders:
            390 iterations per CIFAR-10 epoch at batch 128; static batch shapes for ``compile``; a non-empty
            shard on every DDP rank). ``False`` trains on it too (small sets); ``fit(..., drop_last=)`` overrides
            it for one call.
        amp: ``None``, ``"bf16"`` or ``"fp16"`` autocast (fp16 with gradient scaling).
        channels_last: NHWC memory format for model and batches.
        compile: ``torch.compile`` the student's forward (attack, loss, clean and PGD validation; under DDP the
            DDP-wrapped training forward too) and the teacher's (the selecting ``val_attack`` runs eager: its
            forwards see the still-robust subsets, data-dependent shapes): ``False`` (default),
            ``True``/``"default"`` (Inductor), ``"reduce-overhead"`` (+ CUDA graphs), ``"max-autotune"``
            (autotuned kernels + CUDA graphs) or ``"max-autotune-no-cudagraphs"``. Static batch shapes keep the
            graphs few (``stats``: :meth:`compile_stats`); a function that recompiles past
            ``art_adr.compiling.RECOMPILE_LIMIT`` raises :class:`art_adr.compiling.RecompileLimitError` instead of
            running eager silently.
        sync_bn: under DDP (``torchrun``), convert the student's BatchNorm layers to ``SyncBatchNorm``, so that
            train-mode forwards normalise over the global batch (what one GPU does with the recipe's batch)
            instead of each rank's shard (batch / ranks images); CUDA only (``ValueError`` otherwise); no effect
            in one process (default False).
        eval_max_iter: iterations k of the validation attacks (default 10; step ``default_eps_step``).
            eval_every: validate every k epochs. eval_batch_size: validation batch size (default 256).
        val_attack: the validation attack that selects (a registered attack that validates,
            :mod:`art_adr.attacks`): ``"apgd"`` (default:
            APGD-CE + APGD-T, k iterations, ``val_targets`` targets), ``"margin"`` (PGD-k on the CW margin) or
            ``"pgd"`` (PGD-k on CE). PGD-k is always computed too (``pgd_acc``); the attack's accuracy is
            ``<val_attack>_acc`` / ``teacher_<val_attack>_acc`` in the history.
        val_targets: APGD-T target classes of ``val_attack="apgd"`` (default 3).
        val_full_every: every k-th validation (and the last of a ``fit`` call) is full — student and teacher,
            clean, PGD-k and ``val_attack``; the others measure only what ``best_metric`` selects by (that model's
            clean accuracy and its attack; with τ/λ ``"auto"`` also the teacher under ``val_attack``). Default 1:
            every validation is full. The CIFAR and Tiny-ImageNet recipes use 10 with ``eval_every=2``
            (``docs/science/validation.md``).
        validation: what ``fit(..., validation_data=)`` measures every ``eval_every`` epochs: ``"robust"``
            (default: clean accuracy, PGD-k and ``val_attack`` on student and teacher: per hold-out image and
            model one clean forward, k + 1 PGD passes and up to 5 + (k + 1)·(1 + ``val_targets``) more for
            APGD — 61 at k = 10 with 3 targets (``Attack.forwards``); on a CPU, 200 images took 19 s against a 25 s
            training epoch; ``val_full_every`` measures only what selects between full validations) or
            ``"clean"`` (clean accuracy of student and teacher only, as ART's trainers report: one forward per
            image and model, some 50× cheaper; ``best_metric`` then selects by ``clean_acc`` (or
            ``teacher_clean_acc``), and τ/λ ``"auto"`` are unavailable).
        best_metric: the validation metric that picks the best epoch: ``"robust_acc"`` (default: the validation
            attack's accuracy of the student), ``"teacher_robust_acc"`` (of the EMA teacher, the +WA model) or a
            history key (``"pgd_acc"``, ``"teacher_clean_acc"``, ...); ``self.best_metric`` is the resolved key.
        scheduler_interval: step the LR scheduler every ``"epoch"`` (default) or ``"step"``.
        seed: seed for batch order, augmentation and attack starts (default 0).
        log_every: iterations between progress-bar refreshes and divergence checks (default 25).
        verbose: show tqdm progress bars.
        method: a :class:`art_adr.methods.TrainingMethod` (default ``AT()``); see also the TRADES and MART faces.
        attack: ``None`` (default: the method's own device-resident attack with the arguments above), an ART
            ``ProjectedGradientDescent`` (the wrapper, its numpy or PyTorch implementation) or an
            :class:`art_adr.attacks.SoftLabelPGD`, whose ``eps``/``eps_step``/``max_iter``/``norm`` (and an ART
            PGD's ``num_random_init``) replace them: the method's attack is run with them (ART's order, the attack
            second, works too: ``AdversarialTrainerADR(classifier, attack)``). An ART PGD that is targeted, has
            ``random_eps``, ``decay`` or ``num_random_init > 1``, and every other ``EvasionAttack``, are refused
            with the reason: the method's attack must see the rectified label ``P(x)`` (a probability row, which
            ART's loss gradients reduce to its argmax), run on the device without a host round trip, and follow
            the method (TRADES attacks the KL term). The attack's ``batch_size`` and ``verbose`` do not apply.
        num_random_init: ART's (``AdversarialTrainerMadryPGD``'s) name for the random start of AT's attack: ``1``
            uniform in the ε-ball, ``0`` at ``x``; ``None`` (default): 1, or the ART attack's. TRADES and MART
            keep their own 0.001-scale starts.
        nb_epochs: the default epochs of :meth:`fit` / :meth:`fit_generator` (ART's ``AdversarialTrainerMadryPGD``
            keyword; default 20).
        batch_size: their default batch size (ART's keyword too; default 128).

    Example:
        >>> trainer = AdversarialTrainerADR(clf, eps=8/255, max_iter=10, temperature=(2.5, 2.0))
        >>> trainer.fit(x_train, y_train, validation_data=(x_val, y_val), nb_epochs=200, batch_size=128)
        >>> robust_clf, wa_clf = trainer.get_classifier(), trainer.get_teacher_classifier()
    """

    def __init__(
        self,
        classifier: Any,
        eps: float = 8 / 255,
        eps_step: float | None = None,
        max_iter: int = 10,
        norm: Any = "inf",
        temperature: float | Sequence[float] = defaults.TEMPERATURE,
        interpolation: float | Sequence[float] = defaults.INTERPOLATION,
        ema_decay: float = defaults.EMA_DECAY,
        ema_warmup: bool = defaults.EMA_WARMUP,
        adr: bool = True,
        awp_rho: float = 0.0,
        awp_warmup: int = 0,
        awp_variant: str = "official",
        attack_bn_mode: str | None = None,
        bn_momentum: float | None = None,
        ema_buffers: str = "average",
        augment: bool | Callable[[Tensor, torch.Generator | None], Tensor] = False,
        crop_padding: int = 4,
        drop_last: bool = True,
        amp: str | None = None,
        channels_last: bool = False,
        compile: bool | str = False,
        sync_bn: bool = False,
        eval_max_iter: int = defaults.EVAL_MAX_ITER,
        eval_every: int = 1,
        eval_batch_size: int | None = None,
        best_metric: str = defaults.BEST_METRIC,
        val_attack: str = defaults.VAL_ATTACK,
        val_targets: int = defaults.VAL_TARGETS,
        val_full_every: int = 1,
        scheduler_interval: str = "epoch",
        seed: int = 0,
        log_every: int = 25,
        verbose: bool = True,
        method: TrainingMethod | None = None,
        attack: Any = None,
        num_random_init: int | None = None, validation: str = "robust",
        nb_epochs: int = 20, batch_size: int = 128,
    ) -> None:
        check_classifier(classifier)
        super().__init__(classifier)
        if getattr(classifier, "optimizer", None) is None:
            raise ValueError("the classifier has no optimizer; pass optimizer=... to PyTorchClassifier")
        self.method = self._checked_method(method)
        self._set_threat_model(classifier, attack, eps, eps_step, max_iter, norm, num_random_init)
        self.rectification = RectificationSchedule.from_arguments(temperature, interpolation)
        self._set_ema(ema_decay, ema_warmup, adr)
        self._set_awp(awp_rho, awp_warmup, awp_variant)
        self._set_fit_defaults(scheduler_interval, nb_epochs, batch_size)
        checked_validation = self._checked_validation(val_attack, val_targets, best_metric, eval_max_iter,
                                                      eval_every, eval_batch_size, validation, val_full_every)
        log_every, self.seed = int(integer(log_every, "log_every", 1)), int(integer(seed, "seed", 0))
        self._set_augment(augment, crop_padding)
        self._set_batchnorm(attack_bn_mode, bn_momentum, ema_buffers)
        self.drop_last, self.verbose = boolean(drop_last, "drop_last"), boolean(verbose, "verbose")
        self.channels_last, self.compile = boolean(channels_last, "channels_last"), compile_mode(compile)
        self._set_up_step(amp, *self._set_up_model(classifier, sync_bn))
        self._set_up_loop(*checked_validation, log_every, scheduler_interval)

    @staticmethod
    def _checked_method(method: TrainingMethod | None) -> TrainingMethod:
        checked = AT() if method is None else method
        if not isinstance(checked, TrainingMethod):
            raise ValueError(f"method must be an art_adr.methods.TrainingMethod, got {type(method).__name__}")
        checked.validate()
        return checked

    def _set_threat_model(self, classifier: Any, attack: Any, eps: Any, eps_step: Any, max_iter: Any,
                          norm: Any, num_random_init: Any) -> None:
        """``eps``, ``eps_step``, ``max_iter``, ``norm``, the random start (from ``attack`` when given; an attack
        where ``eps`` goes is ART's order, ``AdversarialTrainer(classifier, attack)``) and the clip values, checked."""
        if attack is None and _is_attack(eps):
            attack, eps = eps, 8 / 255
        eps, eps_step, max_iter, norm, random_init = self._attack_arguments(attack, eps, eps_step, max_iter, norm,
                                                                            classifier)
        if num_random_init is not None:
            if attack is not None and is_art_pgd(attack):
                raise ValueError("num_random_init: given twice, by the trainer and by the ART attack's "
                                 "num_random_init; pass it once")
            if integer(num_random_init, "num_random_init", 0) > 1:
                raise ValueError(f"num_random_init must be 0 or 1, got {num_random_init}: the training attack runs "
                                 "one start (restarts keep each example's worst case, at n times the cost)")
            random_init = bool(num_random_init)
        self.random_init = random_init
        self.clip_values = classifier_clip_values(classifier, required=True)
        eps = finite_number(eps, "eps")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        _warn_implausible_eps(eps, norm, self.clip_values, classifier.input_shape)
        max_iter = integer(max_iter, "max_iter", 1)
        eps_step = default_eps_step(eps, max_iter) if eps_step is None else finite_number(eps_step, "eps_step")
        if not 0 < eps_step <= eps:
            raise ValueError(f"eps_step must be in (0, eps], got eps_step={eps_step}, eps={eps}")
        self.eps, self.eps_step, self.max_iter, self.norm = float(eps), float(eps_step), int(max_iter), norm

    def _set_fit_defaults(self, scheduler_interval: str, nb_epochs: Any, batch_size: Any) -> None:
        """How the scheduler steps (checked), and :meth:`fit`'s default epochs and batch size (ART's Madry
        keywords)."""
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.nb_epochs, self.batch_size = integer(nb_epochs, "nb_epochs", 1), integer(batch_size, "batch_size", 1)

    def _set_ema(self, ema_decay: Any, ema_warmup: Any, adr: Any) -> None:
        """The EMA decay and warm-up, ``adr``, checked."""
        if not 0.0 <= finite_number(ema_decay, "ema_decay") < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.ema_decay, self.ema_warmup = float(ema_decay), boolean(ema_warmup, "ema_warmup")
        self.adr = boolean(adr, "adr")

    def _set_awp(self, awp_rho: Any, awp_warmup: Any, awp_variant: str) -> None:
        if finite_number(awp_rho, "awp_rho") < 0:
            raise ValueError(f"awp_rho must be >= 0, got {awp_rho}")
        awp_warmup = integer(awp_warmup, "awp_warmup", 0)
        if awp_variant not in AWP_VARIANTS:
            raise ValueError(f"awp_variant must be one of {AWP_VARIANTS}, got {awp_variant!r}")
        self.awp_rho, self.awp_warmup, self.awp_variant = float(awp_rho), int(awp_warmup), awp_variant

    def _checked_validation(self, val_attack: str, val_targets: int, best_metric: str, eval_max_iter: Any,
                            eval_every: Any, eval_batch_size: Any, validation: str,
                            val_full_every: Any) -> tuple[Any, ...]:
        """The validation settings, checked: ``(mode, attack, best metric key, eval_every, eval_max_iter,
        eval_batch_size, val_full_every)``."""
        attack, metric = validation_settings(validation, val_attack, val_targets, best_metric,
                                             self.rectification.auto.active)
        eval_every = integer(eval_every, "eval_every", 1)
        eval_max_iter = integer(eval_max_iter, "eval_max_iter", 1)
        eval_batch_size = None if eval_batch_size is None else integer(eval_batch_size, "eval_batch_size", 1)
        val_full_every = integer(val_full_every, "val_full_every", 1)
        return validation, attack, metric, eval_every, eval_max_iter, eval_batch_size, val_full_every

    def _set_up_loop(self, validation: str, attack: Any, metric: str, eval_every: int, eval_max_iter: int,
                     eval_batch_size: int | None, val_full_every: int, log_every: int,
                     scheduler_interval: str) -> None:
        """The parts: the validator (student and teacher, eager and compiled forwards) and the epoch loop."""
        f = self.forwards
        models = {"student": ValidatedModel(f.local, self._raw, f.student),
                  "teacher": ValidatedModel(f.teacher_compiled, self.teacher.module, f.teacher)}
        self.validator = Validator(
            models, attack, AttackSpec(norm=norm_name(self.norm), eps=self.eps, steps=eval_max_iter), validation,
            self.clip_values, self.precision, self.device, batch_size=eval_batch_size,
            channels_last=self.channels_last, rank=self.rank, world_size=self.world_size,
            mark_step=self.forwards.mark_step)
        self.loop = EpochLoop(self, self.rectification, self.validator, BestEpoch(metric), adr=self.adr,
                              eval_every=eval_every, log_every=log_every, scheduler_interval=scheduler_interval,
                              val_full_every=val_full_every)

    def _set_augment(self, augment: Any, crop_padding: Any) -> None:
        if augment is True:
            crop_padding = integer(crop_padding, "crop_padding", 0)
        elif not (augment is False or augment is None or callable(augment)):
            raise ValueError(f"augment must be True, False or a callable (x, generator) -> x, got {augment!r}")
        self.augment = CropFlip(crop_padding) if augment is True else (augment or None)

    def _set_batchnorm(self, attack_bn_mode: str | None, bn_momentum: Any, ema_buffers: str) -> None:
        """BatchNorm during the attack (the method's default when ``None``), the BN momentum override and where the
        teacher's BN statistics come from."""
        if ema_buffers not in EMA_BUFFERS:
            raise ValueError(f"ema_buffers must be one of {EMA_BUFFERS}, got {ema_buffers!r}")
        self.ema_buffers = ema_buffers
        attack_bn_mode = self.method.default_bn_mode if attack_bn_mode is None else attack_bn_mode
        bn_mode_flag(attack_bn_mode, True)
        if bn_momentum is not None and not 0.0 < finite_number(bn_momentum, "bn_momentum") <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1] or None, got {bn_momentum}")
        self.attack_bn_mode = attack_bn_mode
        self.bn_momentum = None if bn_momentum is None else float(bn_momentum)

    def _set_up_model(self, classifier: Any, sync_bn: bool) -> tuple[Any, Any]:
        """The student on its device (float32, channels_last), its checked outputs, SyncBN, the EMA teacher; the
        student's and teacher's (normalising) forwards."""
        self.device = classifier_device(classifier)
        self.nb_classes = int(classifier.nb_classes)
        self.input_shape = tuple(classifier.input_shape)
        self.optimizer: torch.optim.Optimizer = classifier.optimizer
        raw, forward = classifier_module(classifier)
        odd = sorted({str(p.dtype).replace("torch.", "") for p in raw.parameters()
                      if p.is_floating_point() and p.dtype != torch.float32})
        if odd:
            raise ValueError(f"classifier: the model's parameters are {', '.join(odd)}; the trainers train float32 "
                             f"models (amp='bf16'/'fp16' for mixed precision): pass model.float()")
        raw.to(self.device)
        if self.channels_last:
            raw.to(memory_format=torch.channels_last)
        self._raw = raw
        forward = forward.to(self.device)
        check_model_outputs(forward, raw, self.input_shape, self.nb_classes, self.device,
                            channels_last=self.channels_last)
        self.rank, self.world_size = ddp_world()
        self.sync_bn = boolean(sync_bn, "sync_bn")
        if self.sync_bn and self.world_size > 1:  # in place: the classifier's forward and optimizer keep working
            convert_sync_bn(raw, self.device)
        self.teacher = EMATeacher(raw, decay=self.ema_decay, buffers=self.ema_buffers)
        teacher_forward = (
            Normalize(self.teacher.module, forward.mean, forward.std) if isinstance(forward, Normalize)
            else self.teacher.module
        ).to(self.device)
        return forward, teacher_forward

    def _set_up_step(self, amp: str | None, forward: Any, teacher_forward: Any) -> None:
        """Precision, the (compiled, DDP-wrapped) forwards, the attack generator and the iteration."""
        self.precision = Precision(amp, self.device)
        self.forwards = Forwards.build(forward, teacher_forward, self.compile, self.device, self.world_size)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed + self.rank)  # attack starts differ between DDP ranks
        ctx = AttackContext(
            forward=self.forwards.local, model=self._raw, eps=self.eps, eps_step=self.eps_step,
            max_iter=self.max_iter, norm=norm_name(self.norm), clip_values=self.clip_values,
            bn_mode=self.attack_bn_mode, generator=self.generator, autocast=self.precision.autocast_factory,
            random_init=self.random_init)
        self.iteration = AdrStep(
            method=self.method, student=self._raw, teacher=self.teacher, optimizer=self.optimizer,
            precision=self.precision, forwards=self.forwards, rectification=self.rectification, attack_ctx=ctx,
            awp=AWP(self._raw, self.awp_rho, self.awp_variant), adr=self.adr, nb_classes=self.nb_classes,
            ema_decay=self.ema_decay, ema_warmup=self.ema_warmup, awp_rho=self.awp_rho, awp_warmup=self.awp_warmup,
            bn_momentum=self.bn_momentum, device=self.device, world_size=self.world_size)
        self._teacher_classifier: Any = None

    @staticmethod
    def _attack_arguments(attack: Any, eps: Any, eps_step: Any, max_iter: Any, norm: Any,
                          classifier: Any) -> tuple[Any, ...]:
        """The threat model and random start: from ``attack`` (a :class:`SoftLabelPGD` or an ART PGD, converted)
        when given, else the arguments (the method's random start)."""
        if attack is None:
            return eps, eps_step, max_iter, norm, True
        from art.attacks.attack import EvasionAttack

        from .attacks import SoftLabelPGD

        if isinstance(attack, SoftLabelPGD):
            return attack.eps, attack.eps_step, attack.max_iter, attack.norm, True
        if is_art_pgd(attack):
            art = threat_model_of(attack, classifier)
            return art.eps, art.eps_step, art.max_iter, art.norm, art.random_init
        kind = "an ART EvasionAttack" if isinstance(attack, EvasionAttack) else type(attack).__name__
        raise ValueError(
            f"attack must be None, an ART ProjectedGradientDescent or an art_adr.attacks.SoftLabelPGD, got {kind} "
            f"({type(attack).__name__}): the training attack must see ADR's rectified label (a probability row; "
            "ART's loss gradients reduce it to its argmax), follow the training method (TRADES attacks its KL "
            "term) and stay on the device, so only a PGD can be converted to it. Pass eps=, eps_step=, max_iter=, "
            "norm= (or an ART ProjectedGradientDescent) instead")

    # ------------------------------------------------------------------ torch.compile
    def compile_stats(self) -> dict[str, dict[str, Any]]:
        """Per compiled function (``"student forward"``, ``"teacher forward"``, ``"DDP student forward"``): the
        mode and the graphs and compilations so far (``{}`` when ``compile`` is off)."""
        return self.forwards.stats()

    # ------------------------------------------------------------------ the student
    @property
    def student_module(self) -> nn.Module:
        """The student network itself: no DDP wrapper, no classifier standardisation, not compiled (its parameters
        are the ones the optimizer steps)."""
        return self._raw

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x: Any, name: str = "x") -> np.ndarray | Tensor:
        checked = check_images(x, self.input_shape, self.clip_values, name)
        if checked.dtype in (np.uint8, torch.uint8) and self.clip_values[1] > 1.0:
            warnings.warn(f"{name} is uint8 and the classifier is clipped to {tuple(self.clip_values)}: the trainer "
                          "divides uint8 images by 255 (to [0, 1]) and ART's classifier does not, so the two see "
                          "different inputs; pass float images in the classifier's range, or a classifier clipped "
                          "to (0, 1)", UserWarning, stacklevel=3)
        return checked

    def _check_y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        return check_labels(y, n, self.nb_classes, name)

    def _device_data(self, x: Any, y: Any, name: str = "x") -> tuple[Tensor, Tensor]:
        arr = self._check_x(x, name)
        labels = self._check_y(y, arr.shape[0], "y" if name == "x" else f"{name} labels")
        return to_tensor_images(arr, self.device), torch.as_tensor(labels, device=self.device)

    # ------------------------------------------------------------------ one iteration
    @property
    def step(self) -> int:
        """Iterations done (the τ/λ schedules', the EMA warm-up's and ``bn_momentum``'s clock)."""
        return self.iteration.step

    @step.setter
    def step(self, value: int) -> None:
        self.iteration.step = int(value)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One ADR iteration on a device batch (:meth:`art_adr.step.AdrStep.run`), then the scheduler's step when
        it steps per iteration; returns ``(loss, #correct on adversarial inputs)`` as tensors."""
        loop = self.loop
        loss, correct = self.iteration.run(x, y, loop.epoch)
        if loop.scheduler is not None and loop.scheduler_interval == "step":
            loop.scheduler.step()
        return loss, correct

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x: Any, y: Any, batch_size: int | None = None, adversarial: bool = True) -> dict[str, float]:
        """Clean, PGD-k and the selecting attack's accuracy of student and teacher on ``(x, y)`` (eval mode, hard
        labels, fixed seeds): the validation of every epoch (:class:`art_adr.validator.Validator`)."""
        on_device = isinstance(x, Tensor) and x.device == self.device
        xs, ys = (x, y) if on_device else self._device_data(x, y, "validation x")
        return self.validator.evaluate(xs, ys, batch_size, adversarial)

    # ------------------------------------------------------------------ the parts' state, as ART users read it
    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.loop.epoch

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch (the columns of ``metrics.jsonl``)."""
        return self.loop.history

    @property
    def best_metric(self) -> str:
        """The history key that selects the best epoch (resolved: ``"apgd_acc"``, ``"teacher_apgd_acc"``, ...)."""
        return self.loop.best.metric

    @property
    def best_epoch(self) -> int | None:
        return self.loop.best.epoch

    @property
    def best_value(self) -> float:
        return self.loop.best.value

    @property
    def scheduler(self) -> Any:
        """The learning-rate scheduler (``fit(..., scheduler=)`` installs one; stepped per ``scheduler_interval``)."""
        return self.loop.scheduler

    @scheduler.setter
    def scheduler(self, value: Any) -> None:
        self.loop.scheduler = value

    @property
    def before_validation(self) -> list[Callable[[Any], None]]:
        """Callables ``fn(trainer)`` run as each validation starts (after the epoch's training)."""
        return self.loop.before_validation

    def set_plan(self, first_step: int, total_steps: int) -> None:
        """Anneal τ/λ from iteration ``first_step`` over ``total_steps`` iterations; the next fit call keeps this
        plan (``art-adr train`` pins the whole run's plan this way, whatever epoch it resumes at)."""
        self.rectification.set_plan(first_step, total_steps)

    def schedule(self, step: int | None = None) -> tuple[float, float]:
        """``(τ, λ)`` at iteration ``step`` (default: the current one) of the plan's cosine schedules."""
        return self.rectification.values(self.step if step is None else step)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume: weights, teacher, optimizer, scheduler, step, RNG states."""
        return {
            "student": self._raw.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None,
            "scaler": self.precision.state_dict(),
            "step": self.step,
            **self.loop.state(),  # epoch, plan, best_metric, best_epoch, best_value, history, auto
            "rng": {  # CPU ByteTensors; "cuda" is indexed by device (empty for a CPU trainer)
                "attack": self.generator.get_state(),
                "attack_device": self.generator.device.type,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
        }

    def load_state_dict(self, state: dict[str, Any], scheduler: Any = None) -> None:
        """Restore a :meth:`state_dict` (pass the run's scheduler to restore its state too); all or nothing: a
        state that is not a mapping, lacks a part, or does not fit raises ``ValueError`` and leaves the trainer
        exactly as it was."""
        check_state(state)
        saved = cpu_copy(self.state_dict())
        saved_scheduler = self.scheduler
        try:
            self._load_state(state, scheduler)
        except Exception as exc:
            self.scheduler = saved_scheduler
            self._load_state(saved, None)
            if isinstance(exc, ValueError):
                raise
            text = " ".join(str(exc).split())[:300]
            raise ValueError(f"state does not fit this trainer ({type(exc).__name__}: {text}); nothing was "
                             f"changed") from None

    def _load_state(self, state: dict[str, Any], scheduler: Any) -> None:
        self._raw.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            self.scheduler = scheduler
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("scaler") or {})
        self.step = int(state["step"])
        self.loop.restore(state, self.step)
        restore_rng(state.get("rng") or {}, self.generator, rank=self.rank, world_size=self.world_size,
                    seed=self.seed, step=self.step, device=self.device)

    # ------------------------------------------------------------------ ART fit
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        batch_size: int | None = None,
        nb_epochs: int | None = None,
        scheduler: Any = None,
        callbacks: Iterable[Callback] = (),
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train ``nb_epochs`` (default: the trainer's) more epochs, in batches of ``batch_size`` (the trainer's),
        on numpy ``x`` (``[N, *input_shape]`` in ``clip_values``, or uint8) and
        index/one-hot ``y``, as ART's trainers do: a second call continues with ``nb_epochs`` more.

        The τ/λ cosine schedules span this call's epochs; after :meth:`load_state_dict` of a checkpoint taken
        inside a call, the next call continues that call's schedule (pass the epochs that remain). The caller's
        arrays are copied to the device once and never modified (when they would take more than half the free
        GPU memory they stay on the host and batches are streamed). ART's keywords ``verbose`` (the progress
        bars) and ``drop_last`` (default: the trainer's ``drop_last``) apply to this call; other ART keywords are
        ignored with a warning. Returns the history of every epoch so far (also ``self.history``).
        """
        with self._fit_keywords(kwargs, "fit"):
            batch_size = self.batch_size if batch_size is None else integer(batch_size, "batch_size", 1)
            nb_epochs = self.nb_epochs if nb_epochs is None else nb_epochs
            nb_epochs, callbacks = self._check_fit_args(nb_epochs, validation_data, callbacks)
            arr = self._check_x(x)
            labels = self._check_y(y, arr.shape[0])
            stream = not fits_on_device(image_nbytes(arr), self.device)  # too big: stay on the host, stream
            if stream:
                xs, ys = host_images(arr), torch.as_tensor(labels)
            else:
                xs, ys = to_tensor_images(arr, self.device), torch.as_tensor(labels, device=self.device)
            drop_last = boolean(kwargs.get("drop_last", self.drop_last), "drop_last")
            batches = DeviceBatches(xs, ys, batch_size, shuffle=True, augment=self.augment, seed=self.seed,
                                    drop_last=drop_last, device=self.device, channels_last=self.channels_last,
                                    rank=self.rank, world_size=self.world_size, stream=stream)
            return self.fit_batches(batches.epoch, len(batches), nb_epochs, validation_data, scheduler, callbacks)

    def fit_batches(self, epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]], steps_per_epoch: int,
                    nb_epochs: int, validation_data: Any, scheduler: Any,
                    callbacks: Iterable[Callback]) -> list[dict[str, Any]]:
        """Train ``nb_epochs`` more epochs on ``epoch_batches(epoch)``'s device batches ``(x in [0, 1], y)``
        (what :meth:`fit`, :meth:`fit_generator` and ``art-adr train`` run): :meth:`art_adr.loop.EpochLoop.fit_batches`
        with ``validation_data`` checked and copied to the device."""
        val = None if validation_data is None else self._device_data(*validation_data, name="validation x")
        return self.loop.fit_batches(epoch_batches, steps_per_epoch, nb_epochs, val, scheduler, callbacks)

    def _fit_keywords(self, kwargs: dict[str, Any], where: str, used: tuple[str, ...] = FIT_KWARGS) -> Any:
        """``verbose`` for the duration of the call; a warning naming any keyword not in ``used`` (ignored)."""
        import contextlib

        unknown = sorted(set(kwargs) - set(used))
        if unknown:
            warnings.warn(f"{where}() ignores the keyword(s) {unknown} (it uses {list(used)})", UserWarning,
                          stacklevel=3)

        @contextlib.contextmanager
        def scoped() -> Any:
            saved = self.verbose
            if "verbose" in kwargs:
                self.verbose = boolean(kwargs["verbose"], "verbose")
            try:
                yield
            finally:
                self.verbose = saved

        return scoped()

    @staticmethod
    def _check_fit_args(nb_epochs: Any, validation_data: Any, callbacks: Any) -> tuple[int, list[Callback]]:
        """``nb_epochs`` an integer >= 1, ``validation_data`` ``None`` or an ``(x, y)`` pair, callables only."""
        nb_epochs = integer(nb_epochs, "nb_epochs", 1)
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
        nb_epochs: int | None = None,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        scheduler: Any = None,
        callbacks: Iterable[Callback] = (),
        steps_per_epoch: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train ``nb_epochs`` more epochs from an ART ``DataGenerator`` or a ``torch.utils.data.DataLoader`` of
        ``(x, y)`` batches (keywords as :meth:`fit`)."""
        if isinstance(nb_epochs, (tuple, list)) and len(nb_epochs) == 2:
            raise ValueError("nb_epochs must be an integer, got an (x, y) pair: here the order is "
                             "fit_generator(generator, nb_epochs, validation_data, ...); pass validation_data=(x, y) "
                             "by keyword (ART's AWP trainer puts validation_data second)")
        with self._fit_keywords(kwargs, "fit_generator", ("verbose",)):  # the generator makes the batches
            nb_epochs = self.nb_epochs if nb_epochs is None else nb_epochs
            nb_epochs, callbacks = self._check_fit_args(nb_epochs, validation_data, callbacks)
            if steps_per_epoch is not None:
                steps_per_epoch = integer(steps_per_epoch, "steps_per_epoch", 1)
            if generator is None or not (hasattr(generator, "get_batch") or hasattr(generator, "__iter__")):
                raise ValueError(f"generator must be an ART DataGenerator or an iterable of (x, y) batches, "
                                 f"got {type(generator).__name__}")
            if hasattr(generator, "get_batch") and hasattr(generator, "size"):
                size, bs = generator.size, generator.batch_size
                steps = steps_per_epoch or max(1, -(-size // bs))

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
        xb = finish_batch(torch.as_tensor(arr).to(self.device, non_blocking=True), augment=self.augment,
                          generator=self.generator, channels_last=self.channels_last)
        return xb, torch.as_tensor(labels, device=self.device)

    # ------------------------------------------------------------------ outputs
    def predict(self, x: np.ndarray, batch_size: int = 256, teacher: bool = False, **kwargs: Any) -> np.ndarray:
        """Logits of the student (or the EMA teacher) for ``x``, as a numpy array (uint8 images are divided by
        255, as in :meth:`fit`); other keywords (ART's ``training_mode`` ...) are ignored with a warning."""
        if kwargs:
            warnings.warn(f"predict() ignores the keyword(s) {sorted(kwargs)} (it uses batch_size, teacher)",
                          UserWarning, stacklevel=2)
        batch_size = integer(batch_size, "batch_size", 1)
        arr = self._check_x(x)
        forward, model = ((self.forwards.teacher, self.teacher.module) if teacher
                          else (self.forwards.student, self._raw))
        outs = []
        with torch.no_grad(), module_mode(model, False):
            for i in range(0, arr.shape[0], batch_size):
                xb = finish_batch(torch.as_tensor(arr[i : i + batch_size]).to(self.device))
                outs.append(forward(xb).float().cpu().numpy())
        return np.concatenate(outs)

    def get_teacher_classifier(self) -> Any:
        """The EMA teacher (the "+WA" model) as an ART ``PyTorchClassifier`` sharing the live weights."""
        if self._teacher_classifier is None:
            self._teacher_classifier = make_classifier(self.teacher.module, like=self._classifier)
        return self._teacher_classifier


class AdversarialTrainerTRADESADR(AdversarialTrainerADR):
    """TRADES with ADR: ``CE(f(x), P(x)) + β·KL(f(x) ‖ f(x'))`` (Zhang et al. 2019; Wu et al. 2024 §4.2).

    The rectified label replaces the one-hot label only in the clean cross-entropy term; the attack maximises
    the KL term (:class:`art_adr.methods.trades.TRADES`). Takes every argument of :class:`AdversarialTrainerADR`
    (but ``method``) plus:

    Args:
        attack: as :class:`AdversarialTrainerADR`'s, second as in ART's ``AdversarialTrainerTRADESPyTorch(classifier,
            attack, beta)``: an ART PGD gives its ``eps``, ``eps_step``, ``max_iter`` and ``norm`` to the KL attack
            (which keeps its variant's start: ``num_random_init`` does not apply).
        beta: TRADES β (default 6.0).
        trades_variant: ``"official"`` (default: the ADR authors' code — train-mode attack from
            ``x + 0.001·U[0, 1)``, one forward of ``cat[x, x']``) or ``"reference"`` (the TRADES reference code —
            eval-mode attack from ``x + 0.001·N(0, 1)``, two forwards).

    ``adr=False`` gives plain TRADES in the same loop.

    Example:
        >>> trainer = AdversarialTrainerTRADESADR(clf, beta=6.0, temperature=(1.5, 1.0))
        >>> trainer = AdversarialTrainerTRADESADR(clf, ProjectedGradientDescent(clf, eps=0.3, eps_step=0.03,
        ...                                       max_iter=5), beta=6.0)  # ART's call, class name swapped
        >>> trainer.fit(x_train, y_train, nb_epochs=200)
    """

    def __init__(self, classifier: Any, attack: Any = None, beta: float = defaults.BETA,
                 trades_variant: str = "official", **kwargs: Any) -> None:
        attack, beta = _attack_and_beta(attack, beta, "AdversarialTrainerTRADESADR")
        super().__init__(classifier, method=TRADES(beta=beta, trades_variant=trades_variant), attack=attack,
                         **kwargs)

    @property
    def beta(self) -> float:
        return self.method.beta

    @property
    def trades_variant(self) -> str:
        return self.method.trades_variant


class AdversarialTrainerMARTADR(AdversarialTrainerADR):
    """MART with ADR: ``BCE(f(x'), P(x), y) + β·(1 − p_y(x))·KL(f(x) ‖ f(x'))`` (Wang et al. 2020).

    ``P(x)`` replaces ``y`` as the training target (attack and boosted cross-entropy); ``y`` still decides what
    is misclassified (the margin term's runner-up class and the weight ``1 − p_y(x)``); see
    :mod:`art_adr.methods.mart`. Takes every argument of :class:`AdversarialTrainerADR` (but ``method``) plus:

    Args:
        attack: as :class:`AdversarialTrainerADR`'s (second, as in ART's TRADES trainer; MART keeps its own
            0.001-scale start: ``num_random_init`` does not apply).
        beta: MART β (default 6.0).

    ``adr=False`` gives plain MART in the same loop.

    Example:
        >>> trainer = AdversarialTrainerMARTADR(clf, beta=6.0)
        >>> trainer.fit(x_train, y_train, nb_epochs=100)
    """

    def __init__(self, classifier: Any, attack: Any = None, beta: float = defaults.BETA, **kwargs: Any) -> None:
        attack, beta = _attack_and_beta(attack, beta, "AdversarialTrainerMARTADR")
        super().__init__(classifier, method=MART(beta=beta), attack=attack, **kwargs)

    @property
    def beta(self) -> float:
        return self.method.beta


def _attack_and_beta(attack: Any, beta: Any, name: str) -> tuple[Any, float]:
    """The TRADES/MART faces' ``(attack, beta)``, checked: a number where ART puts the attack is refused, naming
    the keyword it was probably meant for."""
    if isinstance(attack, (int, float)) and not isinstance(attack, bool):
        raise ValueError(f"{name}(classifier, attack, beta): the second argument is the attack (ART's order), got "
                         f"the number {attack!r}; pass beta={attack!r} by keyword")
    return attack, float(finite_number(beta, "beta"))


class AdversarialTrainerAWPADR(AdversarialTrainerADR):
    """ART's ``AdversarialTrainerAWPPyTorch`` face: AT or TRADES with adversarial weight perturbation and ADR.

    ``AdversarialTrainerAWPADR(classifier, proxy_classifier, attack, mode, gamma, beta, warmup)`` takes ART's
    arguments and is :class:`AdversarialTrainerADR` (``mode="PGD"``) or :class:`AdversarialTrainerTRADESADR`
    (``mode="TRADES"``) with ``awp_rho=gamma`` and ``awp_warmup=warmup``; every other keyword of
    :class:`AdversarialTrainerADR` applies (``adr=False`` gives ART's plain AWP).

    Args:
        proxy_classifier: accepted for ART's order and not used: the weight perturbation is computed on the
            student itself (:mod:`art_adr.awp`; ART's proxy is a copy of the classifier's weights at every step).
        attack: an ART PGD or ``None`` (as :class:`AdversarialTrainerADR`'s).
        mode: ``"PGD"`` (AT) or ``"TRADES"``.
        gamma: the relative weight-perturbation radius (``awp_rho``, default 0.005). beta: TRADES β (``mode=
            "TRADES"`` only; default 6.0). warmup: epochs before the weight perturbation starts (``awp_warmup``).

    Example:
        >>> trainer = AdversarialTrainerAWPADR(clf, proxy_clf, attack, mode="PGD", gamma=0.01, beta=6.0, warmup=0)
    """

    def __init__(self, classifier: Any, proxy_classifier: Any = None, attack: Any = None, mode: str = "PGD",
                 gamma: float = 0.005, beta: float = defaults.BETA, warmup: int = 0, **kwargs: Any) -> None:
        if mode not in ("PGD", "TRADES"):
            raise ValueError(f"mode must be 'PGD' or 'TRADES' (ART's AWP modes), got {mode!r}")
        beta = float(finite_number(beta, "beta"))
        method = TRADES(beta=beta) if mode == "TRADES" else kwargs.pop("method", None)
        self.mode, self.proxy_classifier = mode, proxy_classifier
        super().__init__(classifier, attack=attack, method=method, awp_rho=gamma, awp_warmup=warmup, **kwargs)
