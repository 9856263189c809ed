"""Run configuration and YAML recipes (the paper's §5.1 settings; recipes fill the same fields as CLI flags)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import defaults
from .budget import ConfigError, parse_number  # ConfigError: the error of every config check (defined in budget)
from .defaults import AUTO, is_auto

__all__ = ["RunConfig", "ConfigError", "load_recipe", "list_recipes", "recipe_path", "parse_seeds",
           "resolve_config"]


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class RunConfig:
    """Every option of ``art-adr train``; a recipe sets a subset, CLI flags override it."""

    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    subset: int | None = None  # first-n (seeded random) training examples, for budgets
    extra_data: str | None = None  # .npz with image/label (DDPM sets)
    extra_fraction: float = 0.0  # fraction of every batch drawn from extra_data
    extra_sampling: str = "shuffle"  # "shuffle": the ADR authors' extra-data loader (a permutation per pass, cycled);
    # "replacement": art-adr's former draw (uniform indices with replacement per batch)
    val_split: str = "holdout"  # "holdout" (from the training set) or "test" (the whole test set)
    val_size: int = 1000  # images of the hold-out (val_split "holdout" only)
    augment: bool = True
    crop_padding: int = 4
    # model
    arch: str = "small-cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    # method
    method: str = "at"  # a name in art_adr.methods.METHODS: "at", "trades", "mart", "standard"
    adr: bool = True
    temperature: tuple[float, float] | str = defaults.TEMPERATURE  # (start, end) or "auto" (art_adr.auto_schedule)
    interpolation: tuple[float, float] | str = defaults.INTERPOLATION  # (start, end) or "auto"
    ema_decay: float = defaults.EMA_DECAY
    ema_warmup: bool = defaults.EMA_WARMUP
    beta: float = defaults.BETA  # TRADES β / MART β
    awp_rho: float = 0.0
    awp_warmup: int = 0
    awp_variant: str = "official"  # "official" (ADR authors' awp.py: all params, BN stats from the unperturbed
    # pass, SGD without Nesterov) or "weights-only" (art-adr's former AWP: ndim > 1 weights only)
    attack_bn_mode: str | None = None  # None: the method's default (AT "train"; TRADES: its variant's; MART "eval")
    trades_variant: str = "official"  # "official" (ADR authors' code) or "reference" (TRADES reference code)
    ema_buffers: str = "average"  # the EMA teacher's BN statistics: "average" (ADR authors') or "student" (copied)
    bn_momentum: float | None = None  # BatchNorm momentum (None: the layers' own); authors' DDPM runs: 0.01
    # attack
    eps: float = 0.1
    eps_step: float | None = None  # None: art_adr.attacks.default_eps_step(eps, max_iter), filled in by validate()
    max_iter: int = 10
    norm: str = "inf"
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    drop_last: bool = True  # drop each epoch's last partial batch (ADR authors' loaders: 390 iterations per CIFAR
    # epoch at 128; static shapes for torch.compile; every DDP rank a non-empty shard); false keeps it (small sets)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True  # see sgd_nesterov(): off without momentum and in official-variant AWP runs
    weight_decay: float = 5e-4
    bn_weight_decay: bool = True  # False: no weight decay on BatchNorm γ/β (ADR authors' DDPM runs)
    lr_schedule: str = "multistep"  # "multistep" or "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the run
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear LR warm-up from 1e-6 (timm's), under either schedule
    # evaluation during training
    eval_every: int = 1
    eval_max_iter: int = defaults.EVAL_MAX_ITER
    eval_batch_size: int = 256
    val_attack: str = defaults.VAL_ATTACK  # an attack that validates (art_adr.attacks): "apgd", "margin", "pgd"
    val_targets: int = defaults.VAL_TARGETS  # APGD-T target classes of val_attack="apgd"
    val_full_every: int = 1  # every k-th validation measures student+teacher, PGD-k too; the others what selects
    best_metric: str = defaults.BEST_METRIC  # "robust_acc" (val_attack, student), "teacher_robust_acc" (+WA), or a
    # history key such as "pgd_acc"; the trainer, metrics and best.pt agree
    save_every: int = 0  # also keep checkpoints/epoch-NNNN.pt every k epochs (0: only last/best/final)
    # system
    seed: int = 0
    device: str = "auto"
    amp: str | None = None
    channels_last: bool = False
    compile: bool | str = False  # False, True (= "default") or a mode: art_adr.compiling.COMPILE_MODES
    sync_bn: bool = False  # DDP: SyncBatchNorm (normalise over the global batch, not each GPU's shard); CUDA only
    # bookkeeping
    recipe: str | None = None
    description: str = ""

    def validate(self) -> RunConfig:
        """Check ranges and choices (``ConfigError`` naming the field); fill ``eps_step`` when it is ``None``."""
        self._validate_threat_model()
        self._validate_rectification()
        self._validate_training()
        self._validate_selection()
        self._validate_options()
        self._validate_numbers()
        return self

    def _validate_threat_model(self) -> None:
        from .budget import default_eps_step
        from .methods import METHODS

        _need(self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        _need(0 < self.eps <= 1, f"eps must be in (0, 1], got {self.eps}")
        _need(self.max_iter >= 1, "max_iter must be >= 1")
        if self.eps_step is None:
            self.eps_step = default_eps_step(self.eps, self.max_iter)
        _need(0 < self.eps_step <= self.eps, f"eps_step must be in (0, eps], got {self.eps_step}")
        _need(self.norm in ("inf", "2"), f"norm must be 'inf' or '2', got {self.norm!r}")

    def _validate_rectification(self) -> None:
        if not is_auto(self.temperature):
            _need(len(self.temperature) == 2,
                  f"temperature must be a number, [start, end] or 'auto', got {self.temperature}")
            _need(min(self.temperature) > 0, f"temperature must be > 0, got {list(self.temperature)}")
        if not is_auto(self.interpolation):
            _need(len(self.interpolation) == 2,
                  f"interpolation must be a number, [start, end] or 'auto', got {self.interpolation}")
            _need(all(0 <= v <= 1 for v in self.interpolation),
                  f"interpolation {list(self.interpolation)} is outside [0, 1]")
        _need(not (is_auto(self.temperature) or is_auto(self.interpolation))
              or self.val_size > 0 or self.val_split == "test",
              "temperature/interpolation 'auto' are set from the validation hold-out: val_size must be > 0")

    def _validate_training(self) -> None:
        _need(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        _need(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        _need(self.lr > 0, "lr must be > 0")
        _need(self.lr_schedule in ("multistep", "cosine"), "lr_schedule must be 'multistep' or 'cosine'")
        _need(all(0 < m < 1 for m in self.milestones), "milestones are fractions of the run in (0, 1)")
        _need(self.val_split in ("holdout", "test"), "val_split must be 'holdout' or 'test'")
        _need(self.val_size >= 0, "val_size must be >= 0")
        _need(0 <= self.extra_fraction < 1, "extra_fraction must be in [0, 1)")
        _need(self.extra_sampling in ("shuffle", "replacement"), "extra_sampling must be 'shuffle' or 'replacement'")

    def _validate_selection(self) -> None:
        try:
            from .attacks import get_attack
            from .validation import resolve_best_metric

            get_attack(self.val_attack, validates=True, targets=self.val_targets)
            resolve_best_metric(self.best_metric, self.val_attack)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _validate_options(self) -> None:
        _need(self.amp in (None, "bf16", "fp16"), "amp must be bf16, fp16 or none")
        _need(self.compile in (False, True) or self.compile in _compile_modes(),
              f"compile must be true, false or one of {', '.join(_compile_modes())}, got {self.compile!r}")
        _need(self.attack_bn_mode in (None, "train", "eval"), "attack_bn_mode must be train or eval")
        _need(self.ema_buffers in defaults.EMA_BUFFERS, f"ema_buffers must be one of {defaults.EMA_BUFFERS}")
        _need(self.trades_variant in ("official", "reference"), "trades_variant must be 'official' or 'reference'")
        _need(self.bn_momentum is None or 0 < self.bn_momentum <= 1, "bn_momentum must be in (0, 1]")
        _need(self.subset is None or self.subset >= 1, "subset must be >= 1")
        taken = sorted({"num_classes", "dataset"} & set(self.arch_kwargs))
        _need(not taken, f"arch_kwargs cannot set {taken}: they come from the dataset")
        _need(self.awp_rho >= 0, "awp_rho must be >= 0")
        _need(self.awp_variant in ("official", "weights-only"), "awp_variant must be 'official' or 'weights-only'")

    def _validate_numbers(self) -> None:
        for name in _NUMBER_FIELDS + _PAIR_FIELDS + ("milestones",):
            vals = getattr(self, name)
            if is_auto(vals):
                continue
            _need(all(v is None or math.isfinite(v) for v in (vals if isinstance(vals, (tuple, list)) else [vals])),
                 f"{name} must be finite, got {vals}")
        _need(self.eval_every >= 1, f"eval_every must be >= 1 (validate every k epochs), got {self.eval_every}")
        _need(self.val_full_every >= 1, f"val_full_every must be >= 1 (every k-th validation is full), got "
              f"{self.val_full_every}")
        _need(self.save_every >= 0, f"save_every must be >= 0 (0: no per-epoch checkpoints), got {self.save_every}")
        _need(self.eval_max_iter >= 1, f"eval_max_iter must be >= 1, got {self.eval_max_iter}")
        _need(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        _need(self.crop_padding >= 0, f"crop_padding must be >= 0, got {self.crop_padding}")
        _need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        _need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _need(self.lr_gamma > 0, f"lr_gamma must be > 0, got {self.lr_gamma}")
        _need(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _need(self.awp_warmup >= 0, f"awp_warmup must be >= 0, got {self.awp_warmup}")
        _need(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        _need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    def sgd_nesterov(self) -> bool:
        """Whether the run's SGD uses Nesterov momentum — the one place this is decided: ``nesterov`` with
        momentum > 0, except AWP runs of the official variant, which use plain momentum SGD as the ADR
        authors' AWP runs do (their ``AWP(..., SGD, momentum=0.9)`` has no Nesterov)."""
        if self.awp_rho > 0 and self.awp_variant == "official":
            return False
        return bool(self.nesterov) and self.momentum > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), for YAML and checkpoints."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def _compile_modes() -> tuple[str, ...]:
    from .compiling import COMPILE_MODES

    return COMPILE_MODES


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# Fields added after runs were written, with the value a run written before them had: a config.yaml or checkpoint
# without the field is read with this value (an old run resumes, and is scored, exactly as it was trained).
LEGACY_DEFAULTS: dict[str, Any] = {"save_every": 0, "val_attack": "pgd", "val_targets": defaults.VAL_TARGETS,
                                   "drop_last": False, "sync_bn": False, "extra_sampling": "replacement",
                                   "ema_buffers": "average", "val_full_every": 1}


def with_legacy_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict with every field it predates filled in as :data:`LEGACY_DEFAULTS` says."""
    return {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in saved}, **saved}


def selected_model(config: Any) -> str:
    """``"teacher"`` when the run's ``best_metric`` selects by the EMA teacher (the +WA model), else ``"student"``."""
    metric = config.get("best_metric") if isinstance(config, dict) else getattr(config, "best_metric", "")
    return "teacher" if str(metric or "").startswith("teacher_") else "student"
_PAIR_FIELDS = ("temperature", "interpolation")
_NUMBER_FIELDS = ("eps", "eps_step", "lr", "ema_decay", "beta", "awp_rho", "extra_fraction", "weight_decay",
                  "momentum", "lr_gamma", "warmup_epochs", "bn_momentum")


def coerce(key: str, value: Any) -> Any:
    """Convert a YAML/CLI value to the field's type (fractions like ``8/255`` allowed for numbers)."""
    if key not in FIELDS:
        raise ConfigError(f"unknown option {key!r}; valid options: {', '.join(sorted(FIELDS))}")
    if value is None:
        return None
    if key in _PAIR_FIELDS:
        if is_auto(value) or (isinstance(value, (list, tuple)) and len(value) == 1 and is_auto(value[0])):
            return AUTO
        vals = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(vals) == 1:  # one number: constant, as the trainers take it
            vals = vals * 2
        if len(vals) != 2:
            raise ConfigError(f"{key} must be a number or [start, end], got {value!r}")
        return tuple(parse_number(v) for v in vals)
    if key == "milestones":
        return tuple(parse_number(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if key in _NUMBER_FIELDS:
        return parse_number(value)
    if key == "norm":
        return "inf" if str(value).lower() in ("inf", "linf", "np.inf") else str(value).lower().lstrip("l")
    if key == "amp" and str(value).lower() == "none":
        return None
    if key == "compile":
        from .compiling import compile_mode

        try:
            mode = compile_mode(value.lower() if isinstance(value, str) else value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return mode is not None and (mode == "default" or mode)
    default = FIELDS[key].default
    if isinstance(default, bool):
        return _boolean(key, value)
    if isinstance(default, int) or key in ("subset",):
        return _integer(key, value)
    if key in ("dataset_kwargs", "arch_kwargs") and not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping")
    return value


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _boolean(key: str, value: Any) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case) or a YAML boolean; anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{key} must be true or false (also yes/no, on/off, 1/0), got {value!r}")


def _integer(key: str, value: Any) -> int:
    """An integer, or a number / numeric string with no fractional part; ``1.5`` or ``True`` are errors."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        pass
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(number)


def recipe_dir() -> Path:
    """The folder of the shipped recipes (package data of ``art_adr.recipes``); ``ConfigError`` when it holds
    none (an installation built without its package data)."""
    folder = Path(str(resources.files("art_adr.recipes")))
    if not any(folder.glob("*.yaml")):
        raise ConfigError(f"no recipes in {folder}: this installation of art-adr lacks its package data "
                          "(art_adr/recipes/*.yaml); reinstall art-adr")
    return folder


def list_recipes() -> dict[str, str]:
    """Recipe name → one-line description, for every YAML file shipped in ``art_adr/recipes``."""
    out = {}
    for p in sorted(recipe_dir().glob("*.yaml")):
        if p.name.startswith("_"):  # bases, not runnable recipes
            continue
        data = yaml.safe_load(p.read_text()) or {}
        out[p.stem] = data.get("description", "")
    return out


def _is_path(name: str) -> bool:
    """A recipe given as a file path: it ends in ``.yaml``/``.yml`` or holds a path separator."""
    return name.endswith((".yaml", ".yml")) or any(sep and sep in name for sep in ("/", os.sep, os.altsep))


def recipe_path(name: str) -> Path:
    """A recipe's file: a *name* (``cifar10-at-adr``) resolves only inside the shipped recipe folder; a *path*
    (ending in ``.yaml``/``.yml``, or holding a separator) is read where it points. ``ConfigError`` saying which
    of the two was meant when there is no such file."""
    if _is_path(name):
        p = Path(name)
        if p.is_file():
            return p
        stem = p.name.rsplit(".", 1)[0] if p.suffix in (".yaml", ".yml") else p.name
        hint = f"; the shipped recipe is named {stem!r}" if (recipe_dir() / f"{stem}.yaml").is_file() else ""
        raise ConfigError(f"recipe file {name!r} not found (a recipe ending in .yaml/.yml or holding a path "
                          f"separator is read as a file path){hint}")
    cand = recipe_dir() / f"{name}.yaml"
    if not name or not cand.is_file():
        raise ConfigError(f"unknown recipe name {name!r}; `art-adr recipes` lists them (a file is read when given "
                          f"as a path: ending in .yaml/.yml or holding a separator, e.g. ./{name}.yaml)")
    return cand


def load_recipe(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Resolve a recipe (following ``base:`` chains) to a dict of validated field values."""
    if name in _seen:
        raise ConfigError(f"recipe base cycle: {' -> '.join(_seen + (name,))}")
    path = recipe_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of options")
    base = data.pop("base", None)
    values = load_recipe(base, _seen + (name,)) if base else {}
    for k, v in data.items():
        values[k] = coerce(k, v)
    if "recipe" not in data:  # a run's config.yaml replayed as a recipe keeps the run's recipe name
        values["recipe"] = Path(name).stem
    return values


def resolve_config(recipe: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults ← recipe ← overrides (CLI flags), validated."""
    values = load_recipe(recipe) if recipe else {}
    for k, v in (overrides or {}).items():
        try:
            values[k] = coerce(k, v)
        except ConfigError as exc:  # name the option (`--set lr=abc`: "lr: not a number: 'abc'")
            raise ConfigError(str(exc) if k in str(exc) else f"{k}: {exc}") from None
    return RunConfig(**values).validate()


def parse_seeds(text: str | Sequence[int] | None) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` → ``[0, 1, 2]`` / ``[0, 1, 2, 3, 4]``; duplicates dropped, order kept."""
    if text is None:
        return []
    if not isinstance(text, str):
        return list(dict.fromkeys(int(s) for s in text))
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ConfigError(f"seeds must be integers like 0,1,2 or 0-2, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"no seeds in {text!r}")
    return list(dict.fromkeys(seeds))
