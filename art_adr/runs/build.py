"""What a run is built from: its device, the LR schedulers, SGD's parameter groups and the trainer, the config
mapped onto it by name."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch

from ..config import RunConfig
from ..distributed import DistInfo
from .files import RunError

if TYPE_CHECKING:
    from ..trainer import AdversarialTrainerADR

__all__ = ["pick_device", "WARMUP_LR_INIT", "WarmupCosineLR", "WarmupMultiStepLR", "build_scheduler",
           "upgrade_scheduler_state",
           "model_desc", "arch_kwargs", "parameter_groups", "fused_sgd_supported", "RUN_FIELDS", "TRAINER_ONLY_ARGS",
           "trainer_arguments", "build_trainer"]


def pick_device(name: str, dist: DistInfo) -> torch.device:
    """``auto`` → this rank's GPU when there is one, else CPU (:func:`art_adr.estimator.resolve_device`)."""
    from ..estimator import resolve_device

    try:
        return resolve_device(name, dist.local_rank)
    except ValueError as exc:
        raise RunError(str(exc)) from None


WARMUP_LR_INIT = 1e-6  # the rate the warm-up starts from (ADR authors' preact-resnet18_pgd_awp_adr.gin)


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """timm's ``CosineLRScheduler(t_initial=total_iters, lr_min=eta_min, warmup_t=warmup_iters, warmup_lr_init)``
    stepped the way the ADR authors' loop steps it (``scheduler.step(i)`` after the update of iteration ``i``).

    timm's rate at ``t`` is ``warmup_lr_init + t·(lr − warmup_lr_init) / warmup_t`` for ``t < warmup_t``, else
    ``eta_min + ½(lr − eta_min)(1 + cos(π·t / t_initial))`` — the cosine runs over the whole run from ``t = 0``,
    not over the iterations after the warm-up — and ``eta_min`` from ``t_initial`` on. Iteration ``i`` trains
    with timm's rate at ``i − 1``; iteration 0 with ``warmup_lr_init`` (the peak ``lr`` without warm-up), the
    rate timm's constructor sets. ``last_epoch`` counts iterations; the state resumes exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int = 0,
                 warmup_lr_init: float = WARMUP_LR_INIT, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if total_iters < 1 or warmup_iters < 0:
            raise ValueError(f"total_iters must be >= 1 and warmup_iters >= 0, got {total_iters}, {warmup_iters}")
        self.total_iters, self.warmup_iters = int(total_iters), int(warmup_iters)
        self.warmup_lr_init, self.eta_min = float(warmup_lr_init), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def rate(self, peak: float, iteration: int) -> float:
        """The rate iteration ``iteration`` (0-based) trains with, for a group whose peak rate is ``peak``."""
        if iteration == 0:
            return self.warmup_lr_init if self.warmup_iters else peak
        t = iteration - 1  # timm's t: the authors step it with the index of the iteration just done
        if t < self.warmup_iters:
            return self.warmup_lr_init + t * (peak - self.warmup_lr_init) / self.warmup_iters
        if t >= self.total_iters:
            return self.eta_min
        return self.eta_min + 0.5 * (peak - self.eta_min) * (1 + math.cos(math.pi * t / self.total_iters))

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.rate(peak, self.last_epoch) for peak in self.base_lrs]


class WarmupMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
    """torch's ``MultiStepLR`` after a linear warm-up (timm's ``MultiStepLRScheduler(warmup_t, warmup_lr_init)``):
    iteration ``i < warmup_iters`` trains with ``warmup_lr_init + i·(lr − warmup_lr_init) / warmup_iters``, iteration
    ``warmup_iters`` with the peak (times ``gamma`` per milestone passed), and from there on ``MultiStepLR``'s own
    rates. ``warmup_iters = 0`` is ``MultiStepLR`` exactly. ``last_epoch`` counts iterations."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float = 0.1,
                 warmup_iters: int = 0, warmup_lr_init: float = WARMUP_LR_INIT, last_epoch: int = -1) -> None:
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        self.warmup_iters, self.warmup_lr_init = int(warmup_iters), float(warmup_lr_init)
        super().__init__(optimizer, milestones, gamma, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        t = self.last_epoch
        if not self.warmup_iters or t > self.warmup_iters:
            return super().get_lr()
        if t == self.warmup_iters:
            passed = sum(count for m, count in self.milestones.items() if m <= t)
            return [peak * self.gamma ** passed for peak in self.base_lrs]
        return [self.warmup_lr_init + t * (peak - self.warmup_lr_init) / self.warmup_iters for peak in self.base_lrs]


_WARMUP_KEYS = frozenset({"warmup_iters", "warmup_lr_init"})


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's LR scheduler, stepped once per iteration.

    ``"multistep"``: torch's ``MultiStepLR`` decaying by ``lr_gamma`` at ``milestones`` (fractions of the run's
    ``epochs × steps_per_epoch`` iterations, rounded; §5.1 of Wu et al. 2024; the authors' timm
    ``MultiStepLRScheduler``, stepped after the update, decays one iteration later), after a linear warm-up from
    ``WARMUP_LR_INIT`` over ``int(warmup_epochs × steps_per_epoch)`` iterations when there is one
    (:class:`WarmupMultiStepLR`; none: torch's ``MultiStepLR`` itself). ``"cosine"``:
    :class:`WarmupCosineLR`, the authors' timm ``CosineLRScheduler`` (§5.4, ``yuyuwu5/ADR``
    ``build_cosine_scheduler``): the cosine over all ``epochs × steps_per_epoch`` iterations, a linear warm-up
    from ``WARMUP_LR_INIT`` over ``int(warmup_epochs × steps_per_epoch)`` iterations, to 0.

    Why not timm's scheduler classes themselves: they are not torch ``LRScheduler``s (``step(epoch)`` /
    ``step_update(num_updates)``, their own state), while the trainer's loop, every run directory's saved scheduler
    state and ``--resume`` use torch's protocol; :class:`WarmupCosineLR` gives timm's ``CosineLRScheduler`` rate
    at every iteration (``tests/test_schedulers.py`` runs timm's class beside it), so nothing is lost.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    sched = torch.optim.lr_scheduler
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "multistep":
        milestones, warmup = [round(m * total) for m in config.milestones], int(config.warmup_epochs * steps_per_epoch)
        if warmup:
            return WarmupMultiStepLR(optimizer, milestones, config.lr_gamma, warmup, WARMUP_LR_INIT)
        return sched.MultiStepLR(optimizer, milestones, gamma=config.lr_gamma)
    if config.lr_schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'multistep' or 'cosine', got {config.lr_schedule!r}")
    return WarmupCosineLR(optimizer, total, int(config.warmup_epochs * steps_per_epoch), WARMUP_LR_INIT, 0.0)


def upgrade_scheduler_state(saved: dict[str, Any] | None, config: RunConfig, steps_per_epoch: int,
                             optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """A checkpoint's scheduler state in :func:`build_scheduler`'s form.

    A state of another scheduler class — a ``LambdaLR`` (key ``lr_lambdas``) from before art-adr used torch's
    schedulers, or the ``SequentialLR(LinearLR, CosineAnnealingLR)`` that ``"cosine"`` was before it followed
    the authors' timm schedule — becomes a fresh scheduler stepped to the saved iteration on a throw-away
    optimizer: the same point of the schedule (the optimizer's own state still restores the exact current LR;
    a former ``"cosine"`` run continues on the authors' schedule from there, with a warning).
    """
    if not saved:
        return saved
    params = [torch.zeros((), requires_grad=True) for _ in optimizer.param_groups]
    scratch = torch.optim.SGD([{"params": [p], "lr": g.get("initial_lr", g["lr"])}
                               for p, g in zip(params, optimizer.param_groups)])
    scheduler = build_scheduler(scratch, config, steps_per_epoch)
    if set(saved) == set(scheduler.state_dict()):
        return saved
    if isinstance(scheduler, WarmupMultiStepLR) and set(saved) == set(scheduler.state_dict()) - _WARMUP_KEYS:
        # a multistep run of a version that ignored warmup_epochs: trained without warm-up, it continues so
        warnings.warn(f"the checkpoint's multistep LR schedule has no warm-up (warmup_epochs={config.warmup_epochs} "
                      "was ignored under multistep before); the run continues without one", RuntimeWarning,
                      stacklevel=2)
        return {**saved, "warmup_iters": 0, "warmup_lr_init": WARMUP_LR_INIT}
    if config.lr_schedule == "cosine":
        warnings.warn("the checkpoint's cosine LR schedule (torch's warm-up, then a cosine over the rest) is "
                      "replaced by the ADR authors' timm schedule (a cosine over the whole run) from iteration "
                      f"{int(saved['last_epoch'])} on", RuntimeWarning, stacklevel=2)
    with warnings.catch_warnings():  # the scratch optimizer never steps: torch's order warning does not apply
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(int(saved["last_epoch"])):
            scheduler.step()
    return scheduler.state_dict()


def model_desc(config: RunConfig, num_classes: int, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """A checkpoint's ``model`` entry (:func:`art_adr.checkpoint.model_from_desc` builds from it): the data's
    ``input_shape`` when known."""
    desc = {"arch": config.arch, "num_classes": num_classes, "dataset": config.dataset,
            "kwargs": arch_kwargs(config, shape)}
    return desc if shape is None else {**desc, "input_shape": [int(s) for s in shape]}


def arch_kwargs(config: RunConfig, shape: tuple[int, ...] | None) -> dict[str, Any]:
    """``arch_kwargs``, plus the data's channel count for ``synthetic`` (its shape is a dataset option, so the
    architecture's default channels need not match) when the architecture takes ``in_channels``."""
    import inspect

    from ..architectures import ARCHITECTURES

    kwargs = dict(config.arch_kwargs)
    build = ARCHITECTURES.get(config.arch) if config.arch in ARCHITECTURES else None
    if (config.dataset == "synthetic" and shape is not None and "in_channels" not in kwargs and build is not None
            and "in_channels" in inspect.signature(build).parameters):
        kwargs["in_channels"] = int(shape[0])
    return kwargs


def parameter_groups(model: torch.nn.Module, bn_weight_decay: bool = True) -> list[dict[str, Any]]:
    """SGD parameter groups; ``bn_weight_decay=False`` puts BatchNorm γ/β in a group without weight decay
    (the ADR authors' ``group_weight``, used in their runs with extra DDPM data)."""
    if bn_weight_decay:
        return [{"params": list(model.parameters())}]
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
          for p in m.parameters(recurse=False)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in bn]},
            {"params": [p for p in params if id(p) in bn], "weight_decay": 0.0}]


def fused_sgd_supported(device: torch.device) -> bool:
    """Whether ``torch.optim.SGD(fused=True)`` runs on ``device`` (then an fp16 step needs no host sync: the
    gradient scaler hands its inf check to the optimizer instead of reading it with ``.item()``."""
    try:
        torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


# RunConfig fields the run layer uses itself (data, model, optimiser, LR schedule, bookkeeping); every other field
# is an argument of the trainer or of the training method, passed by name (tests/test_runs.py checks the split)
RUN_FIELDS = frozenset({
    "dataset", "data_dir", "download", "dataset_kwargs", "subset", "extra_data", "extra_fraction", "extra_sampling",
    "val_split",
    "val_size", "arch", "arch_kwargs", "method", "epochs", "batch_size", "lr", "momentum", "nesterov",
    "weight_decay", "bn_weight_decay", "lr_schedule", "milestones", "lr_gamma", "warmup_epochs", "device",
    "save_every", "recipe", "description",
})


# trainer arguments no RunConfig field sets (the run layer passes or leaves them; num_random_init and nb_epochs
# are ART's names for the Python API, the config's start is the method's and its epochs are `epochs`; runs
# validate robustly: their best.pt is the robust one)
TRAINER_ONLY_ARGS = frozenset({"classifier", "method", "attack", "scheduler_interval", "log_every", "verbose",
                               "num_random_init", "nb_epochs", "validation"})


def trainer_arguments(config: RunConfig) -> tuple[Any, dict[str, Any]]:
    """``(method, keyword arguments)`` of :class:`AdversarialTrainerADR` for ``config``, mapped by name: the
    method's hyper-parameters are the config fields named like its dataclass fields; the trainer gets every
    other field that is not in ``RUN_FIELDS``."""
    from ..methods import METHODS as registry
    from ..methods import get_method, method_fields

    method_cls = get_method(config.method)
    method = method_cls(**{name: getattr(config, name) for name in method_fields(method_cls)})
    method_params = {name for cls in registry.values() for name in method_fields(cls)}
    kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in RUN_FIELDS and f.name not in method_params}
    return method, kwargs


def build_trainer(config: RunConfig, num_classes: int, shape: tuple[int, ...], device: torch.device,
                  verbose: bool = True) -> AdversarialTrainerADR:
    """Model, SGD optimizer, ART classifier and the configured trainer (before data or resume)."""
    from art.estimators.classification import PyTorchClassifier

    from ..checkpoint import model_from_desc
    from ..trainer import AdversarialTrainerADR

    torch.manual_seed(config.seed)
    model = model_from_desc(model_desc(config, num_classes, tuple(shape)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model.to(device)  # fused SGD checks the parameters' device
    opt = torch.optim.SGD(parameter_groups(model, config.bn_weight_decay), lr=config.lr, momentum=config.momentum,
                          nesterov=config.sgd_nesterov(), weight_decay=config.weight_decay,
                          # fused on CUDA (an fp16 step then needs no host sync); on the CPU the unfused update
                          # keeps runs, and the README's Fashion-MNIST numbers, bit-identical to before
                          fused=(device.type == "cuda" and fused_sgd_supported(device)) or None)
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=tuple(shape),
                            nb_classes=num_classes, clip_values=(0.0, 1.0),
                            device_type="gpu" if device.type == "cuda" else "cpu")
    method, kwargs = trainer_arguments(config)
    return AdversarialTrainerADR(clf, method=method, scheduler_interval="step", verbose=verbose, **kwargs)
