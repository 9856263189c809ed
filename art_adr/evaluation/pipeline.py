"""The one evaluation pipeline: a model on images (:func:`evaluate_model`), a checkpoint or run directory on its
test set or hold-out (:func:`evaluate_checkpoint`), looping over the registered attacks
(:mod:`art_adr.attacks`: the one registry, that validation runs too).

Every model maps ``[0, 1]`` NCHW images to logits. Accuracies in reports are percentages (0-100) of the
evaluated examples; a point misclassified without attack counts as non-robust for every attack
(AutoAttack's convention), so only the correctly classified points are attacked.

Attacks are described by an :class:`~art_adr.attacks.AttackSpec` (norm, ε, step, steps, restarts, loss); its
step size defaults to art-adr's one rule, ``α = min(ε, 2.5·ε/k)`` for ``k`` steps
(:func:`~art_adr.attacks.default_eps_step`; ε/4 at 10 steps). Everything is norm-aware: an L2 spec runs L2 PGD
and AutoAttack ``norm='L2'``.

:func:`evaluate_checkpoint` is the one evaluation path of the package: ``art-adr evaluate``, ``benchmark``,
``sweep`` (through :func:`~art_adr.evaluation.cached_evaluation`) and ``analyze`` (its loader) go through it
or its pieces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import ATTACKS, AttackSpec, attack_names, get_attack
from ..attacks.autoattack import AA_ATTACKS
from ..attacks.batches import percent
from ..loader import to_unit_float
from .identity import checkpoint_info
from .report import build_report
from .sanity import sanity_checks
from .testset import SPLITS, first_n, load_split

__all__ = ["evaluate_model", "evaluate_checkpoint"]

WHICH = ("student", "teacher", "both")


def _attack_list(attacks: Sequence[str] | None) -> tuple[str, ...]:
    """``attacks`` (default: every registered one); ``ValueError`` naming unknown ones."""
    names = attack_names() if attacks is None else tuple(attacks)
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {', '.join(attack_names())}")
    return names


def evaluate_model(
    model: nn.Module, x: Tensor, y: Tensor, *, attacks: Sequence[str] | None = None, spec: AttackSpec | None = None,
    cw_steps: int | None = None, aa_version: str = "standard", seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (%) of ``model`` under each requested attack on ``(x, y)``: a report's ``models`` entry.

    Args:
        model: maps ``[N, C, H, W]`` images in ``[0, 1]`` to logits ``[N, K]``.
        x: images ``[N, C, H, W]`` (float in ``[0, 1]`` or uint8). y: int labels ``[N]``.
        attacks: registered attacks (:data:`~art_adr.attacks.ATTACKS`: clean, pgd, margin (CW-∞), apgd (the
            trainers' default validation attack), aa, ...; default all). ``clean`` always runs first: its correct
            points are the ones attacked.
        spec: the PGD attack (default ``AttackSpec()``: PGD-10 L∞ ε = 8/255, α = 2/255); margin uses it with
            the CW margin loss, AutoAttack its norm and ε.
        cw_steps: margin (CW) steps (default ``spec.steps``). aa_version: ``standard`` (default), ``rand`` or
            ``paper``.
        seed: PGD starts and AutoAttack (default 0). batch_size: default 256. device: default ``"cpu"``.
        progress: tqdm bars (default True).

    Returns:
        ``{"results": {attack: %}, "time_s": {attack: s}, "attacks": {"pgd": text, "margin": text, ...}}`` and, with
        ``aa``, ``"autoattack"`` (version, norm, seed, attacks, cumulative %, warnings, settings).
    """
    names = _attack_list(attacks)
    spec = spec if spec is not None else AttackSpec()
    if spec.loss != "ce":
        raise ValueError(f"spec.loss must be 'ce' (the PGD attack; margin is derived from it), got {spec.loss!r}")
    model = model.to(device).eval()
    y = y.cpu().long()
    common = dict(spec=spec, seed=seed, batch_size=batch_size, device=device, progress=progress)
    entry: dict[str, Any] = {"results": {}, "time_s": {}, "attacks": {}}
    clean = None
    for name in ("clean", *(a for a in ATTACKS if a in names and a != "clean")):
        attack = get_attack(name, cw_steps=cw_steps, aa_version=aa_version)
        t0 = time.perf_counter()
        result = attack.run(model, x, y, start_flags=clean, **common)
        flags = result["robust_flags"] if isinstance(result, dict) else result
        entry["results"][name], entry["time_s"][name] = percent(flags, len(y)), time.perf_counter() - t0
        attack.record(entry, spec, result)
        clean = flags if clean is None else clean
    return entry


def _resolve_spec(spec: AttackSpec | Mapping[str, Any] | None, ckpt: Mapping[str, Any]) -> AttackSpec:
    """``spec`` itself, or the run's training attack (its config) at 10 steps with the changes ``spec``."""
    if isinstance(spec, AttackSpec):
        return spec
    changes = dict(spec or {})
    if changes.get("steps") is None:
        changes["steps"] = 10
    return AttackSpec.from_config(ckpt.get("config") or {}, **changes)


def _check_arguments(which: str, split: str, aa_version: str, attacks: Sequence[str] | None,
                     n_examples: int | None) -> tuple[str, ...]:
    if which not in WHICH:
        raise ValueError(f"which must be 'student', 'teacher' or 'both', got {which!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if aa_version not in AA_ATTACKS:
        raise ValueError(f"aa_version must be one of {', '.join(AA_ATTACKS)}, got {aa_version!r}")
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    return _attack_list(attacks)


def _models(ckpt: Mapping[str, Any], which: str, device: str) -> dict[str, nn.Module]:
    """The student and/or teacher of ``ckpt`` (``both``: the teacher only when the checkpoint holds one)."""
    from ..checkpoint import model_from_checkpoint

    names = ["student", "teacher"] if which == "both" else [which]
    if which == "both" and ckpt.get("teacher") is None:
        names = ["student"]
    return {n: model_from_checkpoint(ckpt, which=n, device=device) for n in names}


def _settings(attacks: Sequence[str], spec: AttackSpec, cw_steps: int | None, aa_version: str) -> dict[str, Any]:
    """The report's ``settings``."""
    return {"attacks": list(attacks), "pgd_steps": spec.steps, "restarts": spec.restarts,
            "eps_step": spec.step_size, "cw_steps": int(cw_steps or spec.steps), "aa_version": aa_version,
            "spec": spec.to_dict()}


def evaluate_checkpoint(
    path: str | os.PathLike, *, which: str = "student", attacks: Sequence[str] | None = None,
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
        attacks: registered attacks (clean, pgd, margin, apgd, aa, ...; default all).
        spec: the PGD attack: an ``AttackSpec``, or ``None`` (default): the run's training attack from the
            checkpoint's config (its norm, ε and step) at 10 steps, so an L2 run is evaluated in L2
            (config-less checkpoints: L∞ 8/255); or a dict of changes to that attack, e.g. ``{"steps": 20}``.
        cw_steps: margin (CW) steps (default ``spec.steps``). n_examples: the first N examples in order (default all).
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
    from ..checkpoint import load_checkpoint, resolve_checkpoint
    from ..estimator import resolve_device

    attacks = _check_arguments(which, split, aa_version, attacks, n_examples)
    dev = str(resolve_device(device))
    file = resolve_checkpoint(path, prefer)
    ckpt = load_checkpoint(file)
    info = checkpoint_info(file, ckpt)
    spec = _resolve_spec(spec, ckpt)
    models = _models(ckpt, which, dev)
    ds = first_n(data if data is not None else load_split(ckpt, split, dataset, data_dir), n_examples)
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
    return build_report(entries, checkpoint=str(path), checkpoint_info=info, dataset=ds.name, split=split,
                        n_examples=len(y), eps=spec.eps, norm=spec.norm, seed=seed, batch_size=batch_size,
                        device=dev, settings=_settings(attacks, spec, cw_steps, aa_version))
