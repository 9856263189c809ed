"""The evaluation report: its JSON layout (``SCHEMA``, :func:`validate_report`), assembly (:func:`build_report`),
the Markdown summary (:func:`format_table`; attack columns named by the attack registry) and writing.

Accuracies are percentages (0-100) of the evaluated examples; ``format`` is ``"art-adr-evaluation"``, ``version`` 2
(``checkpoint_info`` = file, epoch, sha256; norm ``Linf``/``L2``; per-model attack texts).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks import attack_names, format_eps, get_attack, threat_model
from ..attacks.autoattack import AA_LABELS, describe_autoattack, unique
from ..checkpoint import atomic_write
from ..tables import markdown_table

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "SCHEMA", "build_report", "validate_report", "format_table",
           "write_report", "column_names"]

REPORT_FORMAT = "art-adr-evaluation"
REPORT_VERSION = 2  # 2: checkpoint_info (file, epoch, sha256), norm Linf/L2, per-model attack texts


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
    warns = unique([w for m in models.values() for w in m.get("autoattack", {}).get("warnings", [])])
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
        "results": {"clean": _PCT, "*": _PCT},  # one percentage per evaluation attack
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
        raise ValueError("invalid evaluation report: " + "; ".join(unique(errors)))


# ---------------------------------------------------------------------------------------------- output
def column_names(report: dict[str, Any]) -> dict[str, str]:
    """The attacks a report's models were evaluated with, in registry order (unregistered ones last, by name),
    each with its table header from the registry (:meth:`~art_adr.attacks.Attack.column`)."""
    s = {**report["settings"], "norm": report.get("norm", "Linf")}
    seen = unique([a for m in report["models"].values() for a in m["results"]])
    names = [a for a in attack_names() if a in seen] + [a for a in seen if a not in attack_names()]
    return {a: get_attack(a).column(s) if a in attack_names() else a for a in names}


def _header_lines(report: dict[str, Any]) -> list[str]:
    """Title, the checkpoint evaluated, and the images and threat model."""
    s = report["settings"]
    sym = "L∞" if report.get("norm", "Linf") == "Linf" else "L2"
    info = report.get("checkpoint_info") or {}
    lines = [f"# Evaluation of {report['checkpoint']}", ""]
    if info:
        epoch = f"epoch {info['epoch']}" if info.get("epoch") is not None else "epoch not recorded"
        lines += [f"Checkpoint `{info['file']}`, {epoch}, sha256 {info['sha256'][:16]}", ""]
    split = {"test": "test", "holdout": "hold-out (of the training set)"}.get(report.get("split", "test"),
                                                                           report.get("split", "test"))
    step = f", PGD step α = {format_eps(s['eps_step'])}" if s.get("eps_step") else ""
    return lines + [f"{report['dataset']} {split}, first {report['n_examples']} examples, {sym} ε = "
                    f"{report['eps_text']}{step}, seed {report['seed']}", ""]


def _autoattack_lines(report: dict[str, Any]) -> list[str]:
    """AutoAttack's cumulative accuracy after each of its attacks, and the settings they ran with."""
    aa_models = {w: m["autoattack"] for w, m in report["models"].items() if "autoattack" in m}
    if not aa_models:
        return []
    first = next(iter(aa_models.values()))
    attacks = first["attacks"]
    lines = ["", "AutoAttack, cumulative robust accuracy (%) after each attack:", ""]
    rows = [[w, f"{a['cumulative']['clean']:.2f}"] + [f"{a['cumulative'][k]:.2f}" for k in attacks]
            for w, a in aa_models.items()]
    lines += markdown_table(["model", "clean"] + ["+" + AA_LABELS.get(k, k) for k in attacks], rows)
    if first.get("settings"):
        lines += ["", describe_autoattack(first["version"], first["settings"])]
    return lines


def _more_lines(report: dict[str, Any]) -> list[str]:
    """Sanity summaries, RobustBench placements and AutoAttack's warnings."""
    lines: list[str] = []
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
    return lines


def format_table(report: dict[str, Any]) -> str:
    """Markdown summary of a report: accuracies (%) per model and attack, AutoAttack breakdown, warnings."""
    names = column_names(report)
    rows = [[w] + [f"{m['results'][c]:.2f}" if c in m["results"] else "–" for c in names]
            for w, m in report["models"].items()]
    lines = _header_lines(report) + markdown_table(["model", *names.values()], rows)
    return "\n".join(lines + _autoattack_lines(report) + _more_lines(report)) + "\n"


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

