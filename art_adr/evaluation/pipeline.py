"""Robustness evaluation (clean, PGD-k, CW-∞, AutoAttack of Croce & Hein 2020) and ADR's appendix-E checks.

Every model maps ``[0, 1]`` NCHW images to logits. Accuracies in reports are percentages (0-100) of the
evaluated examples; a point misclassified without attack counts as non-robust for every attack
(AutoAttack's convention), so only the correctly classified points are attacked.

Attacks are described by an :class:`~art_adr.attacks.AttackSpec` (norm, ε, step, steps, restarts, loss); its
step size defaults to art-adr's one rule, ``α = min(ε, 2.5·ε/k)`` for ``k`` steps
(:func:`~art_adr.attacks.default_eps_step`; ε/4 at 10 steps). Everything is norm-aware: an L2 spec runs L2 PGD
and AutoAttack ``norm='L2'``.

:func:`evaluate_checkpoint` is the one evaluation path of the package: ``art-adr evaluate``, ``benchmark``,
``sweep`` (AutoAttack scoring) and ``analyze`` (its attack) go through it or its pieces.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import AttackSpec, default_eps_step, format_eps, pgd, threat_model
from ..checkpoint import atomic_write
from ..loader import to_unit_float

__all__ = [
    "ATTACKS",
    "AA_ATTACKS",
    "SCHEMA",
    "parse_eps",
    "format_eps",
    "default_eps_step",
    "AttackSpec",
    "checkpoint_info",
    "evaluate_checkpoint",
    "load_split",
    "file_sha256",
    "correct_flags",
    "pgd_flags",
    "autoattack_eval",
    "evaluate_model",
    "build_report",
    "validate_report",
    "format_table",
    "write_report",
    "accuracy_vs_eps",
    "accuracy_vs_steps",
    "sanity_checks",
    "write_sanity_plots",
]

ATTACKS = ("clean", "pgd", "cw", "apgd", "aa")  # apgd: the default validation attack (validation.py)
AA_ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr"),
              "paper": ("apgd-ce", "apgd-t", "fab-t", "square")}
# The ADR paper's protocol: its code (yuyuwu5/ADR, src/robust_eval.py) evaluates with torchattacks 3.3.0's
# ``AutoAttack(model, eps, n_classes=n_class, seed)``, version 'standard', whose attacks keep torchattacks'
# defaults: APGD-CE and APGD-T with 10 steps (not AutoAttack's 100) and 1 restart, APGD-T and FAB-T over
# n_classes − 1 target classes (AutoAttack: 9), FAB-T 10 steps, Square 5000 queries, p_init 0.8, 1 restart,
# p schedule rescaled to the query budget (torchattacks' resc_schedule=True; pyautoattack's standard: False).
# ``--version paper`` runs exactly these settings through pyautoattack's own attack objects.
PAPER_AA_ITERATIONS = 10
PAPER_AA_SQUARE_QUERIES = 5000
REPORT_FORMAT = "art-adr-evaluation"
REPORT_VERSION = 2  # 2: checkpoint_info (file, epoch, sha256), norm Linf/L2, per-model attack texts
DEFAULT_SANITY_EPS = tuple(v / 255 for v in (0, 1, 2, 4, 8, 16, 32, 64, 128, 255))
DEFAULT_SANITY_STEPS = (1, 2, 4, 8, 16, 32, 64, 100)


# ----------------------------------------------------------------------------------------------- ε parsing
def parse_eps(value: str | float) -> float:
    """ε from ``"8/255"``, ``"0.031"`` or a number; ``ValueError`` unless ``0 < ε ≤ 1`` (images in [0, 1])."""
    from ..config import parse_number

    try:
        eps = parse_number(value)
    except ValueError:
        raise ValueError(f"eps must be a number or a fraction like 8/255, got {value!r}") from None
    if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] for [0, 1] images, got {value!r}")
    return eps


# ``format_eps`` and ``default_eps_step`` live in ``art_adr.attacks`` (re-exported here).


# ------------------------------------------------------------------------------------------------- helpers
def _spans(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _progress(iterable: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _to_float(x: Tensor, device: torch.device | str) -> Tensor:
    return to_unit_float(x.to(device))


def _pct(flags: Tensor, n: int) -> float:
    return 100.0 * float(flags.sum().item()) / max(1, n)


@torch.no_grad()
def correct_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = False,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each clean example classified correctly (argmax of the logits)?"""
    out = torch.zeros(len(y), dtype=torch.bool)
    for sl in _progress(_spans(len(y), batch_size), progress, "clean", math.ceil(len(y) / batch_size)):
        pred = model(_to_float(x[sl], device)).argmax(1).cpu()
        out[sl] = pred == y[sl].cpu()
    return out


def pgd_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0,
    batch_size: int = 256, device: str | torch.device = "cpu", start_flags: Tensor | None = None,
    progress: bool = False, desc: str | None = None,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each example still correct after the PGD attack ``spec``?

    Args:
        model: maps ``[N, C, H, W]`` images in ``[0, 1]`` to logits ``[N, K]`` (eval mode, on ``device``).
        x: images ``[N, C, H, W]`` (float in ``[0, 1]`` or uint8). y: int labels ``[N]``.
        spec: the attack (norm, ε, step, steps, restarts; loss ``"ce"`` = PGD, ``"cw"`` = CW margin).
        seed: seed of the random starts (default 0). batch_size: default 256. device: default ``"cpu"``.
        start_flags: points to attack (default: the clean-correct ones); the others stay as given.
        progress: tqdm bar (default False). desc: its label (default ``"pgd-<steps>"`` / ``"cw-<steps>"``).
    """
    flags = correct_flags(model, x, y, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    if spec.steps <= 0:
        return flags
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    desc = desc or f"{'cw' if spec.loss == 'cw' else 'pgd'}-{spec.steps}"
    for sl in _progress(_spans(len(idx), batch_size), progress, desc, math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = _to_float(x[rows], device), y[rows].to(device)
        x_adv = pgd(model, xb, yb, eps=spec.eps, eps_step=spec.step_size, max_iter=spec.steps, norm=spec.norm,
                    loss=spec.loss, restarts=spec.restarts, generator=gen, bn_mode=None)
        with torch.no_grad():
            flags[rows] = (model(x_adv).argmax(1) == yb).cpu()
    return flags


def val_attack_flags(
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, spec: AttackSpec, name: str = "apgd",
    targets: int | None = None, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    start_flags: Tensor | None = None, progress: bool = False,
) -> Tensor:
    """Boolean ``[N]`` (CPU): is each example still correct after the trainer's validation attack ``name``
    (:mod:`art_adr.validation`; ``k`` = ``spec.steps``)? The attack ``best.pt`` is selected by, run on other
    images; seeded from ``seed``, the global RNG untouched."""
    from ..validation import DEFAULT_APGD_TARGETS, get_val_attack

    attack = get_val_attack(name, DEFAULT_APGD_TARGETS if targets is None else targets)
    flags = correct_flags(model, x, y, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    for sl in _progress(_spans(len(idx), batch_size), progress, attack.describe(spec),
                        math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = _to_float(x[rows], device), y[rows].to(device)
        flags[rows] = attack.flags(model, xb, yb, spec, clip_values=(0.0, 1.0), generator=gen).cpu()
    return flags


# ---------------------------------------------------------------------------------------------- AutoAttack
class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@contextlib.contextmanager
def capture_autoattack_warnings() -> Iterator[list[str]]:
    """Collect AutoAttack's ``checks`` messages (logger ``auto-attack`` or ``warnings.warn``) into a list."""
    sink: list[str] = []
    logger = logging.getLogger("auto-attack")
    handler = _ListHandler(sink)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield sink
        sink.extend(str(w.message) for w in caught if "autoattack" in str(w.filename).replace("_", ""))
    finally:
        logger.removeHandler(handler)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _rng_fork(device: str | torch.device) -> contextlib.AbstractContextManager:
    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def autoattack_eval(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "inf", version: str = "standard",
    seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu", start_flags: Tensor | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """AutoAttack (``pyautoattack``, ``norm='Linf'`` or ``'L2'``): cumulative robust accuracy after each attack,
    robust flags, checks.

    Attacks run one after another on the points still robust (exactly what AutoAttack's
    ``run_standard_evaluation`` does), so ``cumulative[attack]`` is the worst case over the attacks so far.
    The global torch RNG is restored afterwards (AutoAttack reseeds it).
    """
    from pyautoattack import AutoAttack
    from pyautoattack import checks as aa_checks

    if version not in AA_ATTACKS:
        raise ValueError(f"AutoAttack version must be one of {sorted(AA_ATTACKS)}, got {version!r}")
    aa_norm = threat_model(norm)
    n = len(y)
    x_cpu, y_cpu = _to_float(x, "cpu"), y.cpu().long()
    flags = correct_flags(model, x_cpu, y_cpu, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    cumulative = {"clean": _pct(flags, n)}
    with capture_autoattack_warnings() as sink, _rng_fork(device):
        with torch.no_grad():
            n_classes = int(model(x_cpu[:1].to(device)).shape[1])
        if version == "paper":
            adversary = AutoAttack(model, eps=eps, norm=aa_norm, version="custom", attacks=list(AA_ATTACKS["paper"]),
                                   seed=seed, device=device)
            configure_paper_protocol(adversary, n_classes)
        else:
            adversary = AutoAttack(model, eps=eps, norm=aa_norm, version=version, seed=seed, device=device)
            for attack in (adversary.apgd_targeted, adversary.fab):  # 9 targets need 10 classes (APGD-T would fail)
                attack.n_target_classes = min(int(attack.n_target_classes), max(1, n_classes - 1))
        adversary.verbose = False
        attacks = list(adversary.attacks_to_run)
        settings = autoattack_settings(adversary, attacks)
        for attack in _progress(attacks, progress, f"autoattack-{version}"):
            idx = torch.nonzero(flags).flatten()
            if len(idx) > 0:
                adversary.attacks_to_run = [attack]
                _, y_adv = adversary.run_standard_evaluation(x_cpu[idx], y_cpu[idx], batch_size=batch_size)
                flags[idx] = (y_adv.cpu() == y_cpu[idx])
            cumulative[attack] = _pct(flags, n)
        aa_checks.check_square_sr({k: v / 100 for k, v in cumulative.items()}, logger=adversary.logger)
    return {"version": version, "norm": aa_norm, "seed": int(seed), "attacks": attacks, "cumulative": cumulative,
            "robust_flags": flags, "warnings": _unique(sink), "settings": settings}


def _set_apgd_iterations(attack: Any, n_iter: int) -> None:
    """``n_iter`` of a pyautoattack APGD object and the checkpoint schedule it derives from it in ``__init__``
    (``n_iter_2``, ``n_iter_min``, ``size_decr``: setting ``n_iter`` alone would keep the 100-step checkpoints)."""
    attack.n_iter = int(n_iter)
    attack.n_iter_2 = max(int(0.22 * n_iter), 1)
    attack.n_iter_min = max(int(0.06 * n_iter), 1)
    attack.size_decr = max(int(0.03 * n_iter), 1)


def configure_paper_protocol(adversary: Any, n_classes: int, n_iter: int = PAPER_AA_ITERATIONS) -> Any:
    """Set a pyautoattack ``AutoAttack`` (version ``custom``) to the ADR paper's protocol (torchattacks 3.3.0's
    AutoAttack defaults): APGD-CE / APGD-T / FAB-T at ``n_iter`` = 10 iterations and 1 restart, APGD-T and FAB-T
    over ``n_classes − 1`` targets, Square 5000 queries (p_init 0.8, 1 restart, rescaled p schedule)."""
    adversary.attacks_to_run = list(AA_ATTACKS["paper"])
    targets = max(1, int(n_classes) - 1)
    _set_apgd_iterations(adversary.apgd, n_iter)
    adversary.apgd.n_restarts = 1
    adversary.apgd.eot_iter = 1
    _set_apgd_iterations(adversary.apgd_targeted, n_iter)
    adversary.apgd_targeted.n_restarts = 1
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_iter = int(n_iter)
    adversary.fab.n_restarts = 1
    adversary.fab.n_target_classes = targets
    adversary.square.n_queries = PAPER_AA_SQUARE_QUERIES
    adversary.square.p_init = 0.8
    adversary.square.n_restarts = 1
    adversary.square.rescale_schedule = True
    return adversary


def autoattack_settings(adversary: Any, attacks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What each attack of ``adversary`` will run with (iterations, restarts, targets, queries), for reports."""
    out: dict[str, dict[str, Any]] = {}
    for name in attacks:
        if name in ("apgd-ce", "apgd-dlr"):
            a = adversary.apgd
            out[name] = {"n_iter": int(a.n_iter), "n_restarts": int(a.n_restarts), "eot_iter": int(a.eot_iter)}
        elif name == "apgd-t":
            a = adversary.apgd_targeted
            out[name] = {"n_iter": int(a.n_iter), "n_restarts": int(a.n_restarts),
                         "n_target_classes": int(a.n_target_classes)}
        elif name in ("fab", "fab-t"):
            a = adversary.fab
            out[name] = {"n_iter": int(a.n_iter), "n_restarts": int(a.n_restarts)}
            if name == "fab-t":
                out[name]["n_target_classes"] = int(a.n_target_classes)
        elif name == "square":
            a = adversary.square
            out[name] = {"n_queries": int(a.n_queries), "n_restarts": int(a.n_restarts), "p_init": float(a.p_init),
                         "rescale_schedule": bool(a.rescale_schedule)}
    return out


def describe_autoattack(version: str, settings: dict[str, dict[str, Any]]) -> str:
    """One line naming the AutoAttack version and each attack's settings, e.g. for Markdown reports."""
    parts = []
    for name, st in settings.items():
        bits = [f"{st['n_iter']} it." if "n_iter" in st else f"{st['n_queries']} queries" if "n_queries" in st else ""]
        bits += [f"{st['n_restarts']} restart{'s' if st['n_restarts'] != 1 else ''}"] if "n_restarts" in st else []
        bits += [f"{st['n_target_classes']} targets"] if "n_target_classes" in st else []
        if st.get("eot_iter", 1) != 1:
            bits.append(f"EoT {st['eot_iter']}")
        parts.append(f"{_LABELS.get(name, name)} ({', '.join(b for b in bits if b)})")
    origin = " — the ADR code's protocol (torchattacks 3.3 AutoAttack defaults)" if version == "paper" else ""
    return f"AutoAttack '{version}'{origin}: " + ", ".join(parts)


# ------------------------------------------------------------------------------------------- evaluation
def evaluate_model(
    model: nn.Module, x: Tensor, y: Tensor, *, attacks: Sequence[str] = ATTACKS, spec: AttackSpec | None = None,
    cw_steps: int | None = None, aa_version: str = "standard", seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (%) of ``model`` under each requested attack on ``(x, y)``: a report's ``models`` entry.

    Args:
        model: maps ``[N, C, H, W]`` images in ``[0, 1]`` to logits ``[N, K]``.
        x: images ``[N, C, H, W]`` (float in ``[0, 1]`` or uint8). y: int labels ``[N]``.
        attacks: subset of ``ATTACKS`` = clean, pgd, cw, apgd (the validation attack), aa (default all).
        spec: the PGD attack (default ``AttackSpec()``: PGD-10 L∞ ε = 8/255, α = 2/255); CW uses it with the CW
            margin loss, AutoAttack its norm and ε.
        cw_steps: CW steps (default ``spec.steps``). aa_version: ``standard`` (default), ``rand`` or ``paper``.
        seed: PGD starts and AutoAttack (default 0). batch_size: default 256. device: default ``"cpu"``.
        progress: tqdm bars (default True).

    Returns:
        ``{"results": {attack: %}, "time_s": {attack: s}, "attacks": {"pgd": text, "cw": text}}`` and, with
        ``aa``, ``"autoattack"`` (version, norm, seed, attacks, cumulative %, warnings, settings).
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    spec = spec if spec is not None else AttackSpec()
    if spec.loss != "ce":
        raise ValueError(f"spec.loss must be 'ce' (the PGD attack; CW is derived from it), got {spec.loss!r}")
    model = model.to(device).eval()
    y = y.cpu().long()
    n = len(y)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device, progress=progress)
    times["clean"] = time.perf_counter() - t0
    results: dict[str, float] = {"clean": _pct(clean, n)}
    described: dict[str, str] = {}
    common = dict(seed=seed, batch_size=batch_size, device=device, start_flags=clean, progress=progress)
    if "pgd" in attacks:
        t0 = time.perf_counter()
        flags = pgd_flags(model, x, y, spec=spec, **common)
        results["pgd"], times["pgd"] = _pct(flags, n), time.perf_counter() - t0
        described["pgd"] = spec.describe()
    if "cw" in attacks:
        t0 = time.perf_counter()
        cw = spec.replace(loss="cw", steps=int(cw_steps or spec.steps))
        flags = pgd_flags(model, x, y, spec=cw, **common)
        results["cw"], times["cw"] = _pct(flags, n), time.perf_counter() - t0
        described["cw"] = cw.describe()
    if "apgd" in attacks:
        t0 = time.perf_counter()
        flags = val_attack_flags(model, x, y, spec=spec, **common)
        results["apgd"], times["apgd"] = _pct(flags, n), time.perf_counter() - t0
        from ..validation import get_val_attack

        described["apgd"] = get_val_attack("apgd").describe(spec)
    entry: dict[str, Any] = {"results": results, "time_s": times, "attacks": described}
    if "aa" in attacks:
        t0 = time.perf_counter()
        aa = autoattack_eval(model, x, y, eps=spec.eps, norm=spec.norm, version=aa_version, seed=seed,
                             batch_size=batch_size, device=device, start_flags=clean, progress=progress)
        results["aa"], times["aa"] = aa["cumulative"][aa["attacks"][-1]], time.perf_counter() - t0
        entry["autoattack"] = {k: aa[k] for k in ("version", "norm", "seed", "attacks", "cumulative", "warnings",
                                                   "settings")}
    return entry


# ------------------------------------------------------------------------------------ checkpoint evaluation
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_info(path: str | os.PathLike, ckpt: Mapping[str, Any] | None = None,
                    prefer: str = "best") -> dict[str, Any]:
    """``{"file", "epoch", "sha256"}`` of a checkpoint (a run directory resolves to ``checkpoints/<prefer>.pt``);
    ``epoch`` is ``None`` when the checkpoint does not record one. ``ckpt``: the already loaded dict."""
    from ..checkpoint import load_checkpoint, resolve_checkpoint

    file = resolve_checkpoint(path, prefer)
    ckpt = ckpt if ckpt is not None else load_checkpoint(file)
    epoch = ckpt.get("epoch")
    return {"file": str(file), "epoch": int(epoch) if epoch is not None else None, "sha256": file_sha256(file)}


SPLITS = ("test", "holdout")


def load_split(ckpt: Mapping[str, Any], split: str = "test", dataset: str | None = None,
               data_dir: str | os.PathLike | None = None) -> Any:
    """An ``ArrayDataset`` for evaluating the checkpoint dict ``ckpt``: the ``test`` split of ``dataset``
    (default the checkpoint's; the run's ``data_dir`` / ``dataset_kwargs`` apply when it is the run's dataset),
    or the run's validation ``holdout`` of its training set. ``ValueError`` when the classes do not match."""
    from ..data import DATASETS, load_dataset

    config = dict(ckpt.get("config") or {})
    desc = ckpt["model"]
    num_classes = int(desc["num_classes"])
    if split == "holdout":
        from ..config import resolve_config
        from ..runs import _load_data  # the very split the run validated on

        run_config = resolve_config(None, {**config, **({"data_dir": str(data_dir)} if data_dir else {})})
        if run_config.val_split != "holdout" or run_config.val_size <= 0:
            raise ValueError("split='holdout' needs a run trained with val_split=holdout and val_size > 0")
        return _load_data(run_config)[1]
    dataset = dataset or desc.get("dataset") or config.get("dataset")
    if dataset not in DATASETS:
        raise ValueError(f"checkpoint does not name a known dataset ({dataset!r}); pass dataset=... (--dataset)")
    if dataset != "synthetic" and DATASETS[dataset].num_classes != num_classes:  # before touching the disk
        raise ValueError(f"checkpoint has {num_classes} classes but {dataset} has {DATASETS[dataset].num_classes}")
    kwargs: dict[str, Any] = {}
    download = False
    if dataset == config.get("dataset"):
        data_dir = data_dir or config.get("data_dir")
        kwargs = dict(config.get("dataset_kwargs") or {})
        download = bool(config.get("download", False))
    ds = load_dataset(dataset, "test", data_dir, download, **kwargs)
    if ds.num_classes != num_classes:
        raise ValueError(f"checkpoint has {num_classes} classes but {dataset} has {ds.num_classes}")
    return ds


def evaluate_checkpoint(
    path: str | os.PathLike, *, which: str = "student", attacks: Sequence[str] = ATTACKS,
    spec: AttackSpec | Mapping[str, Any] | None = None, cw_steps: int | None = None,
    n_examples: int | None = None, aa_version: str = "standard", seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "auto", progress: bool = True, split: str = "test", dataset: str | None = None,
    data_dir: str | os.PathLike | None = None, data: Any = None, prefer: str = "best",
    sanity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint file or run directory: the one evaluation path of ``evaluate``, ``benchmark``,
    ``sweep`` and ``analyze``. Returns the report (``SCHEMA``; write it with :func:`write_report`).

    Args:
        path: a ``.pt`` checkpoint or a run directory (→ ``checkpoints/<prefer>.pt``, default ``best``).
        which: ``"student"`` (default), ``"teacher"`` (the EMA / "+WA" model) or ``"both"`` (the teacher only
            when the checkpoint holds one; the report's ``models`` says which were evaluated).
        attacks: subset of clean, pgd, cw, aa (default all).
        spec: the PGD attack: an ``AttackSpec``, or ``None`` (default): the run's training attack from the
            checkpoint's config (its norm, ε and step) at 10 steps, so an L2 run is evaluated in L2
            (config-less checkpoints: L∞ 8/255); or a dict of changes to that attack, e.g. ``{"steps": 20}``
            (:meth:`AttackSpec.from_config`).
        cw_steps: CW steps (default ``spec.steps``). n_examples: the first N examples in order (default all).
        aa_version: AutoAttack ``standard`` (default), ``rand`` or ``paper``. seed: default 0.
        batch_size: default 256. device: ``auto`` (default), ``cpu``, ``cuda``, ``cuda:N``.
        progress: tqdm bars (default True).
        split: ``"test"`` (default) or ``"holdout"`` (the run's validation hold-out of its training set).
        dataset, data_dir: test set other than the checkpoint's / its folder (default the run's).
        data: an ``ArrayDataset`` to evaluate on instead of loading ``split`` (its first ``n_examples``).
        sanity: ``None`` (default) or keyword arguments of :func:`sanity_checks` (``{}``: its defaults) to run
            the appendix-E checks per model (``models[w]["sanity"]``; plots: :func:`write_sanity_plots`).

    Example:
        >>> report = evaluate_checkpoint("runs/fm-adr", which="both", attacks=("clean", "pgd"), n_examples=100)
        >>> print(format_table(report))
    """
    from ..checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
    from ..estimator import resolve_device

    if which not in ("student", "teacher", "both"):
        raise ValueError(f"which must be 'student', 'teacher' or 'both', got {which!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if aa_version not in AA_ATTACKS:
        raise ValueError(f"aa_version must be one of {', '.join(AA_ATTACKS)}, got {aa_version!r}")
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}")
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    dev = str(resolve_device(device))
    file = resolve_checkpoint(path, prefer)
    ckpt = load_checkpoint(file)
    info = checkpoint_info(file, ckpt)
    if not isinstance(spec, AttackSpec):
        changes = dict(spec or {})
        if changes.get("steps") is None:
            changes["steps"] = 10
        spec = AttackSpec.from_config(ckpt.get("config") or {}, **changes)
    names = ["student", "teacher"] if which == "both" else [which]
    if which == "both" and ckpt.get("teacher") is None:
        names = ["student"]
    models = {n: model_from_checkpoint(ckpt, which=n, device=dev) for n in names}
    ds = data if data is not None else load_split(ckpt, split, dataset, data_dir)
    if n_examples is not None and n_examples < len(ds.y):
        ds = ds.subset(n_examples)
    x, y = to_unit_float(torch.as_tensor(ds.x)), torch.as_tensor(ds.y)
    entries: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        entries[name] = evaluate_model(model, x, y, attacks=attacks, spec=spec, cw_steps=cw_steps,
                                       aa_version=aa_version, seed=seed, batch_size=batch_size, device=dev,
                                       progress=progress)
        if sanity is not None:
            entries[name]["sanity"] = sanity_checks(
                model, x, y, **{"eps": spec.eps, "norm": spec.norm, "seed": seed, "batch_size": batch_size,
                                "device": dev, "name": name, "progress": progress, **dict(sanity)})
    settings = {"attacks": list(attacks), "pgd_steps": spec.steps, "restarts": spec.restarts,
                "eps_step": spec.step_size, "cw_steps": int(cw_steps or spec.steps), "aa_version": aa_version,
                "spec": spec.to_dict()}
    return build_report(entries, checkpoint=str(path), checkpoint_info=info, dataset=ds.name, split=split,
                        n_examples=len(y), eps=spec.eps, norm=spec.norm, seed=seed, batch_size=batch_size,
                        device=dev, settings=settings)


def _software() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("art-adr", "pyautoattack", "adversarial-robustness-toolbox"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def build_report(
    models: dict[str, dict[str, Any]], *, checkpoint: str, checkpoint_info: dict[str, Any], dataset: str,
    n_examples: int, eps: float, seed: int, batch_size: int, device: str, settings: dict[str, Any],
    norm: str = "inf", split: str = "test", extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON report (see ``SCHEMA``); AutoAttack warnings of all models collected at the top.

    ``checkpoint``: what was asked for (file or run directory); ``checkpoint_info``: ``{"file", "epoch",
    "sha256"}`` of the file evaluated (:func:`checkpoint_info`); ``norm``: ``"inf"``/``"2"`` (stored as
    ``"Linf"``/``"L2"``)."""
    warns = _unique([w for m in models.values() for w in m.get("autoattack", {}).get("warnings", [])])
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(checkpoint), "checkpoint_info": dict(checkpoint_info), "dataset": dataset,
        "split": split, "n_examples": int(n_examples),
        "norm": threat_model(norm), "eps": float(eps), "eps_text": format_eps(eps), "seed": int(seed),
        "batch_size": int(batch_size), "device": str(device), "settings": settings, "software": _software(),
        "models": models, "warnings": warns,
    }
    report.update(extra or {})
    return report


# --------------------------------------------------------------------------------------------- schema
_NUM = (int, float)
_PCT = ("pct",)  # marker: a number in [0, 100]
SCHEMA: dict[str, Any] = {
    "format": str, "version": int, "created": str, "checkpoint": str,
    "checkpoint_info": {"file": str, "epoch": (int, type(None)), "sha256": str}, "dataset": str, "split": str,
    "n_examples": int, "norm": ("Linf", "L2"), "eps": _NUM, "eps_text": str, "seed": int, "batch_size": int,
    "device": str, "software": {"*": str}, "warnings": [str],
    "settings": {"attacks": [str], "pgd_steps": int, "restarts": int, "eps_step": (float, type(None)),
                 "cw_steps": int, "aa_version": str,
                 "spec?": {"norm": str, "eps": _NUM, "eps_step": (float, type(None)), "steps": int,
                           "restarts": int, "loss": str, "step_size": _NUM}},
    "models": {"*": {
        "results": {"clean": _PCT, "pgd?": _PCT, "cw?": _PCT, "aa?": _PCT},
        "time_s": {"*": _NUM},
        "attacks?": {"*": str},
        "autoattack?": {"version": str, "norm?": str, "seed": int, "attacks": [str], "cumulative": {"*": _PCT},
                        "warnings": [str], "settings?": {"*": {"*": (int, float, bool)}}},
        "sanity?": {"passed": bool, "summary": str, "unbounded_zero": bool, "converged": bool,
                    "eps_curve": {"eps": [_NUM], "accuracy": [_PCT]},
                    "steps_curve": {"steps": [int], "accuracy": [_PCT]},
                    "tolerance": _NUM, "plots": {"*": str}},
        "robustbench?": {"dataset": str, "threat_model": str, "rank": int, "total": int, "snapshot": str,
                         "snapshot_date": str, "clean_acc": _PCT, "autoattack_acc": _PCT, "protocol": bool,
                         "table": str},
    }},
}
"""Report layout. ``"key?"``: optional key; ``"*"``: any key; ``[t]``: list of ``t``; ``("pct",)``: a
percentage in [0, 100]; a tuple of types: any of them; a tuple of strings: one of those values."""


def _check(value: Any, spec: Any, path: str, errors: list[str]) -> None:
    if spec is _PCT:
        if isinstance(value, bool) or not isinstance(value, _NUM) or not 0 <= value <= 100:
            errors.append(f"{path}: expected a percentage in [0, 100], got {value!r}")
    elif isinstance(spec, tuple) and spec and all(isinstance(v, str) for v in spec):
        if value not in spec:
            errors.append(f"{path}: expected one of {', '.join(spec)}, got {value!r}")
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, sub in spec.items():
            if key == "*":
                for k, v in value.items():
                    _check(v, sub, f"{path}.{k}", errors)
            elif key.endswith("?"):
                if key[:-1] in value:
                    _check(value[key[:-1]], sub, f"{path}.{key[:-1]}", errors)
            elif key not in value:
                errors.append(f"{path}.{key}: missing")
            else:
                _check(value[key], sub, f"{path}.{key}", errors)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            _check(v, spec[0], f"{path}[{i}]", errors)
    elif spec is int and (isinstance(value, bool) or not isinstance(value, int)):
        errors.append(f"{path}: expected int, got {value!r}")
    elif not isinstance(value, spec) or (isinstance(value, bool) and spec is not bool
                                         and not (isinstance(spec, tuple) and bool in spec)):
        errors.append(f"{path}: expected {spec}, got {value!r}")


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``ValueError`` listing every place where ``report`` departs from ``SCHEMA``."""
    errors: list[str] = []
    _check(report, SCHEMA, "report", errors)
    if not errors and report["format"] != REPORT_FORMAT:
        errors.append(f"report.format: expected {REPORT_FORMAT!r}")
    if errors:
        raise ValueError("invalid evaluation report: " + "; ".join(errors))


# ---------------------------------------------------------------------------------------------- output
_LABELS = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square",
           "apgd-dlr": "APGD-DLR"}


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def format_table(report: dict[str, Any]) -> str:
    """Markdown summary of a report: accuracies (%) per model and attack, AutoAttack breakdown, warnings."""
    s = report["settings"]
    sym = "L∞" if report.get("norm", "Linf") == "Linf" else "L2"
    cw_sym = "∞" if sym == "L∞" else "L2"
    names = {"clean": "Clean", "pgd": f"PGD-{s['pgd_steps']}", "cw": f"CW-{cw_sym}-{s['cw_steps']}",
             "apgd": f"APGD-CE+T-{s['pgd_steps']}", "aa": f"AutoAttack ({s['aa_version']})"}
    cols = [a for a in ATTACKS if any(a in m["results"] for m in report["models"].values())]
    info = report.get("checkpoint_info") or {}
    lines = [f"# Evaluation of {report['checkpoint']}", ""]
    if info:
        epoch = f"epoch {info['epoch']}" if info.get("epoch") is not None else "epoch not recorded"
        lines += [f"Checkpoint `{info['file']}`, {epoch}, sha256 {info['sha256'][:16]}", ""]
    split = {"test": "test", "holdout": "hold-out (of the training set)"}.get(report.get("split", "test"),
                                                                           report.get("split", "test"))
    step = f", PGD step α = {format_eps(s['eps_step'])}" if s.get("eps_step") else ""
    lines += [f"{report['dataset']} {split}, first {report['n_examples']} examples, {sym} ε = {report['eps_text']}"
              f"{step}, seed {report['seed']}", ""]
    rows = [[w] + [f"{m['results'][c]:.2f}" if c in m["results"] else "–" for c in cols]
            for w, m in report["models"].items()]
    lines += _md_table(["model"] + [names[c] for c in cols], rows)
    aa_models = {w: m["autoattack"] for w, m in report["models"].items() if "autoattack" in m}
    if aa_models:
        attacks = next(iter(aa_models.values()))["attacks"]
        lines += ["", "AutoAttack, cumulative robust accuracy (%) after each attack:", ""]
        rows = [[w, f"{a['cumulative']['clean']:.2f}"] + [f"{a['cumulative'][k]:.2f}" for k in attacks]
                for w, a in aa_models.items()]
        lines += _md_table(["model", "clean"] + ["+" + _LABELS.get(k, k) for k in attacks], rows)
        first = next(iter(aa_models.values()))
        if first.get("settings"):
            lines += ["", describe_autoattack(first["version"], first["settings"])]
    for w, m in report["models"].items():
        if "sanity" in m:
            lines += ["", f"Sanity ({w}): {m['sanity']['summary']}"]
    for w, m in report["models"].items():
        if "robustbench" in m:
            rb = m["robustbench"]
            full = "" if rb["protocol"] else " (NOT the full protocol: fewer than 10 000 images)"
            lines += ["", f"RobustBench {rb['dataset']}/{rb['threat_model']} placement of the {w}: rank "
                      f"{rb['rank']} of {rb['total']}{full}", "", rb["table"]]
    if report["warnings"]:
        lines += ["", "AutoAttack warnings:"] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(report: dict[str, Any], out_dir: str | Path, stem: str = "evaluation") -> dict[str, Path]:
    """Validate, then write ``<stem>.json`` and ``<stem>.md`` atomically into ``out_dir``."""
    report = _json_ready(report)
    validate_report(report)
    out = Path(out_dir)
    text = json.dumps(report, indent=2)
    table = format_table(report)
    json_path = atomic_write(out / f"{stem}.json", lambda tmp: Path(tmp).write_text(text))
    md_path = atomic_write(out / f"{stem}.md", lambda tmp: Path(tmp).write_text(table))
    return {"json": json_path, "markdown": md_path}


# ---------------------------------------------------------------------------------- sanity (appendix E)
def unbounded_eps(x: Tensor, norm: str = "inf") -> float:
    """The smallest ε whose ball holds the whole ``[0, 1]`` image box: 1 for L∞, √(C·H·W) for L2."""
    return 1.0 if threat_model(norm) == "Linf" else math.sqrt(x[0].numel())


def default_sanity_eps(eps: float, x: Tensor, norm: str = "inf") -> tuple[float, ...]:
    """ε values of the accuracy-vs-ε curve: ``DEFAULT_SANITY_EPS`` (0 … 255/255) for L∞; for L2 0, ε/8 … 8ε
    (doubling) and the unbounded radius √(C·H·W)."""
    if threat_model(norm) == "Linf":
        return DEFAULT_SANITY_EPS
    top = unbounded_eps(x, norm)
    return (0.0, *sorted({min(top, eps * 2.0 ** k) for k in range(-3, 4)}), top)


def accuracy_vs_eps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps_values: Sequence[float] = DEFAULT_SANITY_EPS,
    steps: int = 100, restarts: int = 1, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = False, norm: str = "inf",
) -> list[float]:
    """PGD-``steps`` robust accuracy (%) at each ε (ε = 0: clean) in ``norm`` — ADR appendix E, Figure 6a.
    The step at each ε is the default rule ``min(ε, 2.5·ε/steps)``."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    out = []
    for eps in _progress(list(eps_values), progress, "sanity: eps"):
        if eps <= 0:
            out.append(_pct(clean, len(y)))
            continue
        spec = AttackSpec(norm=norm, eps=float(eps), steps=int(steps), restarts=restarts)
        flags = pgd_flags(model, x, y, spec=spec, seed=seed, batch_size=batch_size, device=device,
                          start_flags=clean)
        out.append(_pct(flags, len(y)))
    return out


def accuracy_vs_steps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    restarts: int = 1, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: bool = False, norm: str = "inf",
) -> list[float]:
    """PGD-k robust accuracy (%) at fixed ε for each k in ``norm`` (step ``min(ε, 2.5·ε/k)``) — ADR appendix E,
    Figure 6b."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    return [_pct(pgd_flags(model, x, y, spec=AttackSpec(norm=norm, eps=eps, steps=int(k), restarts=restarts),
                           seed=seed, batch_size=batch_size, device=device, start_flags=clean), len(y))
            for k in _progress(list(steps_values), progress, "sanity: steps")]


def plot_curve(xs: Sequence[float], ys: Sequence[float], *, xlabel: str, title: str, path: str | Path,
               xlog: bool = False) -> Path:
    """Line plot of robust accuracy (%) against ``xs``, saved atomically as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(list(xs), list(ys), marker="o")
    if xlog:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel=xlabel, ylabel="robust accuracy (%)", title=title, ylim=(-2, 102))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def sanity_checks(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float = 8 / 255,
    eps_values: Sequence[float] | None = None, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    eps_curve_steps: int = 100, tolerance: float = 1.0, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", out_dir: str | Path | None = None, name: str = "model",
    progress: bool = False, norm: str = "inf",
) -> dict[str, Any]:
    """Gradient-masking checks of ADR appendix E (after Carlini et al. 2019).

    Passes when PGD at the largest ε (unbounded: ε ≥ 1 for L∞, ε ≥ √(C·H·W) for L2, see
    :func:`unbounded_eps`) drives accuracy to 0 %, and robust accuracy vs PGD steps has converged: the last two
    points differ by at most ``tolerance`` percentage points. ``eps_values`` default:
    :func:`default_sanity_eps` (``DEFAULT_SANITY_EPS`` for L∞). ``norm``: ``"inf"`` (default) or ``"2"``. With
    ``out_dir``, writes ``sanity_<name>_eps.png`` and ``sanity_<name>_steps.png``.
    """
    kw = dict(seed=seed, batch_size=batch_size, device=device, progress=progress, norm=norm)
    eps_values = tuple(eps_values) if eps_values is not None else default_sanity_eps(eps, x, norm)
    eps_acc = accuracy_vs_eps(model, x, y, eps_values=eps_values, steps=eps_curve_steps, **kw)
    steps_acc = accuracy_vs_steps(model, x, y, eps=eps, steps_values=steps_values, **kw)
    top = max(range(len(eps_values)), key=lambda i: eps_values[i])
    unbounded = eps_values[top] >= unbounded_eps(x, norm) - 1e-9 and eps_acc[top] == 0.0
    converged = len(steps_acc) < 2 or abs(steps_acc[-1] - steps_acc[-2]) <= tolerance
    passed = bool(unbounded and converged)
    last = " → ".join(f"PGD-{k}: {a:.2f}%" for k, a in list(zip(steps_values, steps_acc))[-2:])
    summary = (f"{'PASS' if passed else 'FAIL'}: accuracy at ε={format_eps(eps_values[top])} "
               f"{eps_acc[top]:.2f}% ({'reaches' if unbounded else 'does NOT reach'} 0 %); {last} "
               f"({'converged' if converged else 'NOT converged'}, tolerance {tolerance} pp)")
    result: dict[str, Any] = {
        "passed": passed, "summary": summary, "unbounded_zero": bool(unbounded), "converged": bool(converged),
        "norm": threat_model(norm),
        "eps_curve": {"eps": [float(e) for e in eps_values], "accuracy": eps_acc, "steps": eps_curve_steps},
        "steps_curve": {"steps": [int(k) for k in steps_values], "accuracy": steps_acc, "eps": eps},
        "tolerance": float(tolerance), "plots": {},
    }
    if out_dir is not None:
        write_sanity_plots(result, out_dir, name)
    return result


def write_sanity_plots(result: dict[str, Any], out_dir: str | Path, name: str = "model") -> dict[str, str]:
    """Write ``sanity_<name>_eps.png`` and ``sanity_<name>_steps.png``; records their paths in ``result``."""
    out = Path(out_dir)
    eps_values, eps_acc = result["eps_curve"]["eps"], result["eps_curve"]["accuracy"]
    steps_values, steps_acc = result["steps_curve"]["steps"], result["steps_curve"]["accuracy"]
    eps, eps_curve_steps = result["steps_curve"]["eps"], result["eps_curve"]["steps"]
    sym = "L∞" if result.get("norm", "Linf") == "Linf" else "L2"
    result["plots"]["eps"] = str(plot_curve(
        [e * 255 for e in eps_values], eps_acc, xlabel=f"{sym} ε (×1/255)", xlog=True,
        path=out / f"sanity_{name}_eps.png", title=f"{name}: {sym} PGD-{eps_curve_steps} vs ε"))
    result["plots"]["steps"] = str(plot_curve(
        steps_values, steps_acc, xlabel="PGD steps", xlog=True, path=out / f"sanity_{name}_steps.png",
        title=f"{name}: {sym} PGD vs steps, ε={format_eps(eps)}"))
    return result["plots"]
