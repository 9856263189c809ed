"""Robustness evaluation (clean, PGD-k, CW-∞, AutoAttack of Croce & Hein 2020) and ADR's appendix-E checks.

Every model maps ``[0, 1]`` NCHW images to logits. Accuracies in reports are percentages (0-100) of the
evaluated examples; a point misclassified without attack counts as non-robust for every attack
(AutoAttack's convention), so only the correctly classified points are attacked.

PGD step size: ``eps_step = min(ε, 2.5·ε/k)`` for ``k`` steps (Madry et al. 2018, so that ``k`` steps
can cross the ball from any start); pass ``eps_step`` to override.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import pgd
from .checkpoint import atomic_write
from .loader import to_unit_float

__all__ = [
    "ATTACKS",
    "AA_ATTACKS",
    "SCHEMA",
    "parse_eps",
    "format_eps",
    "default_eps_step",
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

ATTACKS = ("clean", "pgd", "cw", "aa")
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
REPORT_VERSION = 1
DEFAULT_SANITY_EPS = tuple(v / 255 for v in (0, 1, 2, 4, 8, 16, 32, 64, 128, 255))
DEFAULT_SANITY_STEPS = (1, 2, 4, 8, 16, 32, 64, 100)


# ----------------------------------------------------------------------------------------------- ε parsing
def parse_eps(value: str | float) -> float:
    """ε from ``"8/255"``, ``"0.031"`` or a number; ``ValueError`` unless ``0 < ε ≤ 1`` (images in [0, 1])."""
    from .config import parse_number

    try:
        eps = parse_number(value)
    except ValueError:
        raise ValueError(f"eps must be a number or a fraction like 8/255, got {value!r}") from None
    if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] for [0, 1] images, got {value!r}")
    return eps


def format_eps(eps: float) -> str:
    """``8/255``-style text when ε is a whole number of 255ths (RobustBench's ``eps`` field), else decimal."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.6g}"


def default_eps_step(eps: float, steps: int) -> float:
    """PGD step size ``min(ε, 2.5·ε/k)`` (Madry et al. 2018, Sec. 5)."""
    return eps if steps <= 0 else min(eps, 2.5 * eps / steps)


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
    model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, eps: float, steps: int, restarts: int = 1,
    eps_step: float | None = None, loss: str = "ce", seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", start_flags: Tensor | None = None, progress: bool = False,
    desc: str = "pgd",
) -> Tensor:
    """Boolean ``[N]``: still correct after L∞ PGD-``steps`` (``loss="ce"``) or CW-∞ (``loss="cw"``).

    Only points with ``start_flags`` (default: clean-correct) are attacked; the random start is seeded.
    """
    flags = correct_flags(model, x, y, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    if steps <= 0:
        return flags
    alpha = eps_step if eps_step is not None else default_eps_step(eps, steps)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    idx = torch.nonzero(flags).flatten()
    for sl in _progress(_spans(len(idx), batch_size), progress, desc, math.ceil(len(idx) / batch_size)):
        rows = idx[sl]
        xb, yb = _to_float(x[rows], device), y[rows].to(device)
        x_adv = pgd(model, xb, yb, eps=eps, eps_step=alpha, max_iter=steps, loss=loss, restarts=restarts,
                    generator=gen, bn_mode=None)
        with torch.no_grad():
            flags[rows] = (model(x_adv).argmax(1) == yb).cpu()
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
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, version: str = "standard", seed: int = 0,
    batch_size: int = 256, device: str | torch.device = "cpu", start_flags: Tensor | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """AutoAttack (``pyautoattack``) L∞: cumulative robust accuracy after each attack, robust flags, checks.

    Attacks run one after another on the points still robust (exactly what AutoAttack's
    ``run_standard_evaluation`` does), so ``cumulative[attack]`` is the worst case over the attacks so far.
    The global torch RNG is restored afterwards (AutoAttack reseeds it).
    """
    from pyautoattack import AutoAttack
    from pyautoattack import checks as aa_checks

    if version not in AA_ATTACKS:
        raise ValueError(f"AutoAttack version must be one of {sorted(AA_ATTACKS)}, got {version!r}")
    n = len(y)
    x_cpu, y_cpu = _to_float(x, "cpu"), y.cpu().long()
    flags = correct_flags(model, x_cpu, y_cpu, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    cumulative = {"clean": _pct(flags, n)}
    with capture_autoattack_warnings() as sink, _rng_fork(device):
        if version == "paper":
            with torch.no_grad():
                n_classes = int(model(x_cpu[:1].to(device)).shape[1])
            adversary = AutoAttack(model, eps=eps, norm="Linf", version="custom", attacks=list(AA_ATTACKS["paper"]),
                                   seed=seed, device=device)
            configure_paper_protocol(adversary, n_classes)
        else:
            adversary = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed, device=device)
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
    return {"version": version, "seed": int(seed), "attacks": attacks, "cumulative": cumulative,
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
    model: nn.Module, x: Tensor, y: Tensor, *, attacks: Sequence[str] = ATTACKS, eps: float = 8 / 255,
    pgd_steps: int = 10, restarts: int = 1, eps_step: float | None = None, cw_steps: int | None = None,
    version: str = "standard", seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy (%) of ``model`` under each requested attack on ``(x, y)``: a report's ``models`` entry."""
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    model = model.to(device).eval()
    y = y.cpu().long()
    n = len(y)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device, progress=progress)
    times["clean"] = time.perf_counter() - t0
    results: dict[str, float] = {"clean": _pct(clean, n)}
    common = dict(eps=eps, restarts=restarts, seed=seed, batch_size=batch_size, device=device,
                  start_flags=clean, progress=progress)
    if "pgd" in attacks:
        t0 = time.perf_counter()
        flags = pgd_flags(model, x, y, steps=pgd_steps, eps_step=eps_step, loss="ce", desc=f"pgd-{pgd_steps}",
                          **common)
        results["pgd"], times["pgd"] = _pct(flags, n), time.perf_counter() - t0
    if "cw" in attacks:
        t0 = time.perf_counter()
        steps = cw_steps or pgd_steps
        flags = pgd_flags(model, x, y, steps=steps, eps_step=eps_step, loss="cw", desc=f"cw-{steps}",
                          **common)
        results["cw"], times["cw"] = _pct(flags, n), time.perf_counter() - t0
    entry: dict[str, Any] = {"results": results, "time_s": times}
    if "aa" in attacks:
        t0 = time.perf_counter()
        aa = autoattack_eval(model, x, y, eps=eps, version=version, seed=seed, batch_size=batch_size,
                             device=device, start_flags=clean, progress=progress)
        results["aa"], times["aa"] = aa["cumulative"][aa["attacks"][-1]], time.perf_counter() - t0
        entry["autoattack"] = {k: aa[k] for k in ("version", "seed", "attacks", "cumulative", "warnings",
                                                   "settings")}
    return entry


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
    models: dict[str, dict[str, Any]], *, checkpoint: str, dataset: str, n_examples: int, eps: float,
    seed: int, batch_size: int, device: str, settings: dict[str, Any], extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON report (see ``SCHEMA``); AutoAttack warnings of all models collected at the top."""
    warns = _unique([w for m in models.values() for w in m.get("autoattack", {}).get("warnings", [])])
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(checkpoint), "dataset": dataset, "split": "test", "n_examples": int(n_examples),
        "norm": "Linf", "eps": float(eps), "eps_text": format_eps(eps), "seed": int(seed),
        "batch_size": int(batch_size), "device": str(device), "settings": settings, "software": _software(),
        "models": models, "warnings": warns,
    }
    report.update(extra or {})
    return report


# --------------------------------------------------------------------------------------------- schema
_NUM = (int, float)
_PCT = ("pct",)  # marker: a number in [0, 100]
SCHEMA: dict[str, Any] = {
    "format": str, "version": int, "created": str, "checkpoint": str, "dataset": str, "split": str,
    "n_examples": int, "norm": str, "eps": _NUM, "eps_text": str, "seed": int, "batch_size": int,
    "device": str, "software": {"*": str}, "warnings": [str],
    "settings": {"attacks": [str], "pgd_steps": int, "restarts": int, "eps_step": (float, type(None)),
                 "cw_steps": int, "aa_version": str},
    "models": {"*": {
        "results": {"clean": _PCT, "pgd?": _PCT, "cw?": _PCT, "aa?": _PCT},
        "time_s": {"*": _NUM},
        "autoattack?": {"version": str, "seed": int, "attacks": [str], "cumulative": {"*": _PCT},
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
percentage in [0, 100]; a tuple of types: any of them."""


def _check(value: Any, spec: Any, path: str, errors: list[str]) -> None:
    if spec is _PCT:
        if isinstance(value, bool) or not isinstance(value, _NUM) or not 0 <= value <= 100:
            errors.append(f"{path}: expected a percentage in [0, 100], got {value!r}")
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
    names = {"clean": "Clean", "pgd": f"PGD-{s['pgd_steps']}", "cw": f"CW-∞-{s['cw_steps']}",
             "aa": f"AutoAttack ({s['aa_version']})"}
    cols = [a for a in ATTACKS if any(a in m["results"] for m in report["models"].values())]
    lines = [f"# Evaluation of {report['checkpoint']}", "",
             f"{report['dataset']} test, first {report['n_examples']} examples, L∞ ε = {report['eps_text']}, "
             f"seed {report['seed']}", ""]
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
def accuracy_vs_eps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps_values: Sequence[float] = DEFAULT_SANITY_EPS,
    steps: int = 100, restarts: int = 1, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", progress: bool = False,
) -> list[float]:
    """PGD-``steps`` robust accuracy (%) at each ε (ε = 0: clean) — ADR appendix E, Figure 6a."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    out = []
    for eps in _progress(list(eps_values), progress, "sanity: eps"):
        if eps <= 0:
            out.append(_pct(clean, len(y)))
            continue
        flags = pgd_flags(model, x, y, eps=float(eps), steps=steps, restarts=restarts, seed=seed,
                          batch_size=batch_size, device=device, start_flags=clean)
        out.append(_pct(flags, len(y)))
    return out


def accuracy_vs_steps(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    restarts: int = 1, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[float]:
    """PGD-k robust accuracy (%) at fixed ε for each k — ADR appendix E, Figure 6b."""
    model = model.to(device).eval()
    clean = correct_flags(model, x, y, batch_size=batch_size, device=device)
    return [_pct(pgd_flags(model, x, y, eps=eps, steps=int(k), restarts=restarts, seed=seed,
                           batch_size=batch_size, device=device, start_flags=clean), len(y))
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
    eps_values: Sequence[float] = DEFAULT_SANITY_EPS, steps_values: Sequence[int] = DEFAULT_SANITY_STEPS,
    eps_curve_steps: int = 100, tolerance: float = 1.0, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", out_dir: str | Path | None = None, name: str = "model",
    progress: bool = False,
) -> dict[str, Any]:
    """Gradient-masking checks of ADR appendix E (after Carlini et al. 2019).

    Passes when PGD at the largest ε (use ε = 1: unbounded for [0, 1] images) drives accuracy to 0 %, and
    robust accuracy vs PGD steps has converged: the last two points differ by at most ``tolerance``
    percentage points. With ``out_dir``, writes ``sanity_<name>_eps.png`` and ``sanity_<name>_steps.png``.
    """
    kw = dict(seed=seed, batch_size=batch_size, device=device, progress=progress)
    eps_acc = accuracy_vs_eps(model, x, y, eps_values=eps_values, steps=eps_curve_steps, **kw)
    steps_acc = accuracy_vs_steps(model, x, y, eps=eps, steps_values=steps_values, **kw)
    top = max(range(len(eps_values)), key=lambda i: eps_values[i])
    unbounded = eps_values[top] >= 1.0 and eps_acc[top] == 0.0
    converged = len(steps_acc) < 2 or abs(steps_acc[-1] - steps_acc[-2]) <= tolerance
    passed = bool(unbounded and converged)
    last = " → ".join(f"PGD-{k}: {a:.2f}%" for k, a in list(zip(steps_values, steps_acc))[-2:])
    summary = (f"{'PASS' if passed else 'FAIL'}: accuracy at ε={format_eps(eps_values[top])} "
               f"{eps_acc[top]:.2f}% ({'reaches' if unbounded else 'does NOT reach'} 0 %); {last} "
               f"({'converged' if converged else 'NOT converged'}, tolerance {tolerance} pp)")
    result: dict[str, Any] = {
        "passed": passed, "summary": summary, "unbounded_zero": bool(unbounded), "converged": bool(converged),
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
    result["plots"]["eps"] = str(plot_curve(
        [e * 255 for e in eps_values], eps_acc, xlabel="ε (×1/255)", xlog=True,
        path=out / f"sanity_{name}_eps.png", title=f"{name}: PGD-{eps_curve_steps} vs ε"))
    result["plots"]["steps"] = str(plot_curve(
        steps_values, steps_acc, xlabel="PGD steps", xlog=True, path=out / f"sanity_{name}_steps.png",
        title=f"{name}: PGD vs steps, ε={format_eps(eps)}"))
    return result["plots"]
