"""A RobustBench submission bundle from a checkpoint: weights under RobustBench's keys, ``model_info``, the
model-zoo entry and the "[New Model]" issue, checked (the weights reload into the zoo constructor and give our
logits) in a staging folder before anything is moved into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..budget import format_eps
from ..checkpoint import missing_folders, remove_empty_folders, torch_save
from .adapter import import_robustbench
from .bundle import (
    ARCH_NAMES,
    NAME_RE,
    ROBUSTBENCH_DATASETS,
    ROBUSTBENCH_N_EXAMPLES,
    THREAT_MODELS,
    ExportError,
    accuracies_from_report,
    check_n_examples,
    default_footnote,
    model_info,
    new_model_issue,
    paper_fields,
)
from .zoo import build_zoo_model, export_state_dict, model_zoo_entry, robustbench_spec, zoo_constructor, zoo_item

__all__ = ["export_robustbench", "register_exported", "INFO_FIELDS"]

INFO_FIELDS = ("link", "authors", "venue", "number_forward_passes", "external", "unreliable")  # extra model_info


def export_robustbench(
    checkpoint: str | Path, out_dir: str | Path, name: str, *, which: str = "student",
    dataset: str | None = None, threat_model: str = "Linf", eps: float = 8 / 255,
    clean_acc: float | None = None, autoattack_acc: float | None = None, reported: float | None = None,
    report: dict[str, Any] | str | Path | None = None, additional_data: bool | None = None,
    footnote: str | None = None, paper_name: str | None = None, overwrite: bool = False,
    n_examples: int | None = None, allow_partial: bool = False, device: str | torch.device = "cpu", **info: Any,
) -> dict[str, Path]:
    """Write a RobustBench submission bundle for a checkpoint's student or teacher ("+WA") model.

    Files (under ``out_dir``): ``models/<dataset>/Linf/<name>.pt`` (``{"state_dict"}``, CPU tensors),
    ``model_info/<dataset>/Linf/<name>.json``, ``model_zoo/<dataset>/Linf/<name>.py`` (entry to paste)
    and ``issue/<name>.md`` (filled "[New Model]" template). Everything is staged in a temporary folder and
    checked (weights reload with ``weights_only=True`` into the zoo constructor and give the same logits on
    ``device``) before being moved into place; on error nothing is left behind.

    The accuracies come from ``report`` (an ``art-adr evaluate`` report; its ``n_examples``) or from
    ``clean_acc``/``autoattack_acc`` measured on ``n_examples`` test images (default: all 10 000). Fewer than
    ``ROBUSTBENCH_N_EXAMPLES`` raises ``ExportError`` unless ``allow_partial``; then ``model_info``'s footnote
    and the issue text say so. ``paper_name`` and extra ``info`` keys (``link``, ``authors``,
    ``venue``, ``number_forward_passes``, ``external``, ``unreliable``) go to ``model_info``; their defaults are
    the ADR paper's, or, for a run trained without ADR (config ``adr: false``), a neutral name such as
    "PGD-AT (art-adr)" with ``PLACEHOLDERS`` for link, authors and venue.
    """
    _check_arguments(name, threat_model, info)
    model, ckpt, dataset, spec = _exportable_model(checkpoint, which, dataset, device)
    clean_acc, autoattack_acc, eval_note, n_used = _accuracies(report, which, dataset, eps, clean_acc,
                                                               autoattack_acc, n_examples, allow_partial)
    cfg = ckpt.get("config") or {}
    if additional_data is None:
        additional_data = bool(cfg.get("extra_data"))
    fields = {**paper_fields(cfg), **{k: v for k, v in info.items() if v is not None}}
    if paper_name:
        fields["name"] = paper_name
    notes = [footnote or default_footnote(which, float(cfg.get("ema_decay", 0.995)))]
    if n_used < ROBUSTBENCH_N_EXAMPLES:
        notes.insert(0, f"Partial evaluation: {n_used} of the {ROBUSTBENCH_N_EXAMPLES} test images, "
                        "not RobustBench's protocol.")
    arch = ckpt["model"]["arch"]
    meta = model_info(dataset=dataset, architecture=ARCH_NAMES.get(arch, arch),
                      clean_acc=clean_acc, autoattack_acc=autoattack_acc, reported=reported, eps=eps,
                      additional_data=additional_data, footnote=" ".join(n for n in notes if n) or None,
                      **fields)
    ctor = zoo_constructor(spec)
    state = export_state_dict(model.state_dict(), ctor)
    rel = {
        "weights": Path("models") / dataset / threat_model / f"{name}.pt",
        "model_info": Path("model_info") / dataset / threat_model / f"{name}.json",
        "model_zoo": Path("model_zoo") / dataset / threat_model / f"{name}.py",
        "issue": Path("issue") / f"{name}.md",
    }
    out = Path(out_dir)
    existing = [str(out / p) for p in rel.values() if (out / p).exists()]
    if existing and not overwrite:
        raise ExportError(f"refusing to overwrite {existing[0]} (pass overwrite=True / --overwrite)")
    texts = {"model_info": json.dumps(meta, indent=2) + "\n",
             "model_zoo": model_zoo_entry(name, dataset, ctor["import_line"], ctor["constructor"]),
             "issue": new_model_issue(name, meta, eval_note=eval_note, n_examples=n_used)}
    _write_bundle(out, rel, state, texts, ctor, model, spec["input_shape"])
    return {k: out / p for k, p in rel.items()}


def _check_arguments(name: str, threat_model: str, info: dict[str, Any]) -> None:
    if not NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must be letters, digits, '_' or '-' (e.g. Wu2024Annealing_RN18)")
    if threat_model not in THREAT_MODELS:
        raise ExportError(f"threat model must be one of {THREAT_MODELS}, got {threat_model!r}")
    unknown = set(info) - set(INFO_FIELDS)
    if unknown:
        raise TypeError(f"unexpected model_info fields {sorted(unknown)}")


def _exportable_model(checkpoint: str | Path, which: str, dataset: str | None,
                      device: str | torch.device) -> tuple[nn.Module, dict[str, Any], str, dict[str, Any]]:
    """``(model, checkpoint, dataset, zoo spec)``: ``ExportError`` unless RobustBench has a leaderboard for the
    dataset and a class for the architecture."""
    from ..checkpoint import load_model

    model, ckpt = load_model(checkpoint, which=which, device=device)
    desc = ckpt["model"]
    dataset = dataset or desc.get("dataset")
    if dataset not in ROBUSTBENCH_DATASETS:
        raise ExportError(f"RobustBench has no L∞ leaderboard for {dataset!r}; use one of {ROBUSTBENCH_DATASETS}")
    if desc.get("dataset") not in (None, dataset):
        raise ExportError(f"checkpoint was trained on {desc.get('dataset')!r}, not {dataset!r}")
    try:
        spec = robustbench_spec(desc["arch"], desc["num_classes"], dataset, **desc.get("kwargs", {}))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return model, ckpt, dataset, spec


def _accuracies(report: dict[str, Any] | str | Path | None, which: str, dataset: str, eps: float,
                clean_acc: float | None, autoattack_acc: float | None, n_examples: int | None,
                allow_partial: bool) -> tuple[float | None, float | None, str, int]:
    """``(clean, AutoAttack, evaluation note, test images)``: from the report when there is one, else as given."""
    eval_note = f"AutoAttack standard, ε={format_eps(eps)}"
    if report is not None:
        clean_acc, autoattack_acc, eval_note, report_n = accuracies_from_report(report, which, dataset, eps)
        if n_examples is not None and n_examples != report_n:
            raise ExportError(f"n_examples={n_examples} contradicts the evaluation report ({report_n} test images)")
        n_examples = report_n
    elif n_examples is not None:
        eval_note += f", first {n_examples} {dataset} test images"
    return clean_acc, autoattack_acc, eval_note, check_n_examples(n_examples, dataset, allow_partial)


def _write_bundle(out: Path, rel: dict[str, Path], state: dict[str, torch.Tensor], texts: dict[str, str],
                  ctor: dict[str, Any], model: nn.Module, shape: tuple[int, ...]) -> None:
    """Stage the weights (checked) and ``texts`` under ``out``, then move every file into place."""
    with _staging(out) as tmp:
        for p in rel.values():
            (tmp / p).parent.mkdir(parents=True, exist_ok=True)
        torch_save({"state_dict": state}, tmp / rel["weights"])
        _verify_weights(tmp / rel["weights"], ctor, model, shape)
        for key in ("model_info", "model_zoo", "issue"):
            (tmp / rel[key]).write_text(texts[key])
        for p in rel.values():
            (out / p).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / p, out / p)


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A staging folder in ``out_dir``, removed afterwards; an export that fails leaves no folder it created."""
    created = missing_folders(out_dir)
    tmp: Path | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
        yield tmp
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_empty_folders(created)
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _verify_weights(path: Path, ctor: dict[str, Any], model: nn.Module, shape: tuple[int, ...]) -> None:
    """Reload with ``weights_only=True`` into the zoo constructor, on the device of ``model``; logits must
    match ours (≤ 1e-5 relative: our forwards pool with ``adaptive_avg_pool2d``, RobustBench's with
    ``avg_pool2d(k)``, same sum up to float rounding; TF32 convolutions are off for the check)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    rb_model = build_zoo_model(ctor["import_line"], ctor["constructor"])
    try:
        rb_model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"exported weights do not load into the RobustBench constructor: {exc}") from None
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    exact = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
             if device.type == "cuda" else contextlib.nullcontext())
    with torch.no_grad(), exact:
        ours, theirs = model.eval()(x), rb_model.to(device).eval()(x)
    diff = (ours - theirs).abs().max().item()
    if diff > 1e-5 * max(1.0, ours.abs().max().item()):
        raise ExportError(f"RobustBench constructor gives different logits (max |Δ| = {diff:.3g})")


def register_exported(bundle_dir: str | Path, name: str, dataset: str, threat_model: str = "Linf") -> None:
    """Add an exported entry to ``robustbench.model_zoo.model_dicts`` at run time, from its model-zoo text
    (evaluated in the namespace of ``robustbench/model_zoo/<dataset>.py``), so ``load_model`` finds it."""
    import importlib

    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    text = (Path(bundle_dir) / "model_zoo" / dataset / threat_model / f"{name}.py").read_text()
    zoo = importlib.import_module(f"robustbench.model_zoo.{dataset}")
    ns = dict(vars(zoo))
    exec(text.split("# 2)", 1)[0], ns)  # noqa: S102 - the imports we generated
    key, value = eval(zoo_item(text), ns)  # noqa: S307
    value["gdrive_id"] = "local-export"  # never used: the .pt file is already in model_dir
    model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][key] = value
