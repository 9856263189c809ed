"""Where a bundle's numbers come from: art-adr's evaluation report of the exported checkpoint (its SHA-256 checked
against the report's), or numbers the user marks as external; the AutoAttack log a maintainer asks for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..budget import format_eps
from .bundle import ROBUSTBENCH_N_EXAMPLES, ExportError

__all__ = ["Numbers", "numbers_from_report", "external_numbers", "autoattack_log", "read_report"]

Numbers = dict[str, Any]
"""``clean``, ``aa`` (percent), ``n`` (test images), ``source`` (``"report"`` or ``"external"``), ``method`` (the
issue's "Evaluation method"), ``report_text`` and ``log`` (``None`` for external numbers)."""

_AA_NAMES = {"standard": "AutoAttack standard (Croce & Hein 2020: APGD-CE, APGD-T, FAB-T, Square)",
             "rand": "AutoAttack rand (for randomised defences: APGD-CE, APGD-DLR with EoT)",
             "paper": "AutoAttack 'paper' (the ADR code's protocol, torchattacks 3.3 defaults; weaker than standard)"}


def read_report(report: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    """``(report, its JSON text)``: a report file's own bytes, or a dict written as JSON; ``ExportError`` when it
    cannot be read or departs from the evaluation report's schema."""
    from ..evaluation import validate_report

    if isinstance(report, dict):
        text = json.dumps(report, indent=2)
    else:
        try:
            text = Path(report).read_text()
            report = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read evaluation report {report}: {exc}") from None
    if not isinstance(report, dict):
        raise ExportError("the evaluation report is not a JSON object")
    try:
        validate_report(report)
    except ValueError as exc:
        raise ExportError(f"{exc} (write it with `art-adr evaluate`)") from None
    return report, text


def numbers_from_report(report: dict[str, Any] | str | Path, sha256: str, which: str, dataset: str,
                        eps: float) -> Numbers:
    """The accuracies of ``which`` in an ``art-adr evaluate`` report of the checkpoint whose file has SHA-256
    ``sha256``; ``ExportError`` when the report is of another checkpoint, model, dataset, norm or ε, or has no
    AutoAttack result."""
    report, text = read_report(report)
    theirs = report["checkpoint_info"]["sha256"]
    if theirs != sha256:
        raise ExportError(f"the evaluation report is of another checkpoint ({report['checkpoint_info']['file']}, "
                          f"sha256 {theirs[:12]}…; the exported file's is {sha256[:12]}…): evaluate the exported "
                          "checkpoint with `art-adr evaluate`")
    entry = report["models"].get(which)
    if entry is None or "aa" not in entry["results"] or "autoattack" not in entry:
        raise ExportError(f"evaluation report has no AutoAttack result for the {which} "
                          f"(`art-adr evaluate --which {which}` with the attack `aa`)")
    if report["norm"] != "Linf":
        raise ExportError(f"evaluation report is for the {report['norm']} norm; the export is for L∞ (Linf)")
    if report["dataset"] != dataset or abs(float(report["eps"]) - eps) > 1e-9 or report.get("split") != "test":
        raise ExportError(f"evaluation report is for the {report['dataset']} {report.get('split')} split at "
                          f"ε={report['eps_text']}, not the {dataset} test set at ε={format_eps(eps)}")
    aa, n = entry["autoattack"], int(report["n_examples"])
    version = report["software"].get("pyautoattack", "unknown")
    method = (f"{_AA_NAMES.get(aa['version'], 'AutoAttack ' + aa['version'])}, pyautoattack {version}, seed "
              f"{aa['seed']}, first {n} {dataset} test images (art-adr's evaluation report, "
              f"checkpoint sha256 {sha256[:12]}…)")
    return {"clean": float(entry["results"]["clean"]), "aa": float(entry["results"]["aa"]), "n": n,
            "source": "report", "method": method, "version": aa["version"], "report_text": text,
            "log": autoattack_log(report, which)}


def external_numbers(clean_acc: float | None, autoattack_acc: float | None, n_examples: int | None) -> Numbers:
    """Accuracies the user typed and marked as external: art-adr has not measured them and says so."""
    if clean_acc is None or autoattack_acc is None:
        raise ExportError("external numbers need both clean_acc and autoattack_acc (--clean-acc, --autoattack-acc)")
    n = ROBUSTBENCH_N_EXAMPLES if n_examples is None else n_examples
    return {"clean": float(clean_acc), "aa": float(autoattack_acc), "n": n, "source": "external",
            "method": "external: accuracies supplied by the submitter, not measured by art-adr (no evaluation "
                      "report or AutoAttack log in the bundle)", "version": None, "report_text": None, "log": None}


def autoattack_log(report: dict[str, Any], which: str) -> str:
    """AutoAttack's log of ``which`` in a report: settings, then the robust accuracy after each attack (art-adr
    runs the attacks one after another on the points still robust, as ``run_standard_evaluation``)."""
    from ..attacks.autoattack import AA_LABELS, describe_autoattack

    aa = report["models"][which]["autoattack"]
    info, soft = report["checkpoint_info"], report["software"]
    lines = [f"AutoAttack log of the {which} of {info['file']} (sha256 {info['sha256']})",
             f"from art-adr's evaluation report created {report['created']} (evaluation.json beside this file)",
             "software: " + ", ".join(f"{k} {v}" for k, v in soft.items()),
             f"setting {aa['version']} version, norm {aa.get('norm', report['norm'])}, eps "
             f"{report['eps_text']} ({report['eps']:.6f}), seed {aa['seed']}, device {report['device']}, "
             f"{report['n_examples']} {report['dataset']} {report['split']} images"]
    if aa.get("settings"):
        lines.append(describe_autoattack(aa["version"], aa["settings"]))
    lines.append(f"initial accuracy: {aa['cumulative']['clean']:.2f}%")
    for attack in aa["attacks"]:
        if attack in aa["cumulative"]:
            lines.append(f"robust accuracy after {AA_LABELS.get(attack, attack)}: {aa['cumulative'][attack]:.2f}%")
    lines.append(f"robust accuracy: {report['models'][which]['results']['aa']:.2f}%")
    lines += [f"warning: {w}" for w in aa.get("warnings", [])]
    return "\n".join(lines) + "\n"
