"""``aa``: AutoAttack (Croce & Hein 2020) through ``pyautoattack``, as a registered attack that runs on a whole
image set (:class:`AutoAttack`): the versions, the ADR paper's protocol, the checks' messages captured, and one
line describing the settings that ran. Importing this module imports no torch (the runner does when it runs).

The ADR paper's protocol: its code (yuyuwu5/ADR, src/robust_eval.py) evaluates with torchattacks 3.3.0's
``AutoAttack(model, eps, n_classes=n_class, seed)``, version 'standard', whose attacks keep torchattacks'
defaults: APGD-CE and APGD-T with 10 steps (not AutoAttack's 100) and 1 restart, APGD-T and FAB-T over
n_classes − 1 target classes (AutoAttack: 9), FAB-T 10 steps, Square 5000 queries, p_init 0.8, 1 restart,
p schedule rescaled to the query budget (torchattacks' resc_schedule=True; pyautoattack's standard: False).
``version="paper"`` runs exactly these settings through pyautoattack's own attack objects.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Attack, register_attack

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from .core import AttackSpec

__all__ = ["AutoAttack", "AA_ATTACKS", "AA_LABELS", "PAPER_AA_ITERATIONS", "PAPER_AA_SQUARE_QUERIES", "autoattack_eval",
           "autoattack_settings", "capture_autoattack_warnings", "configure_paper_protocol", "describe_autoattack",
           "unique"]

AA_ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr"),
              "paper": ("apgd-ce", "apgd-t", "fab-t", "square")}
AA_LABELS = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square", "apgd-dlr": "APGD-DLR"}
PAPER_AA_ITERATIONS = 10
PAPER_AA_SQUARE_QUERIES = 5000


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


def unique(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, first occurrences in order."""
    return list(dict.fromkeys(items))


def _rng_fork(device: str | torch.device) -> contextlib.AbstractContextManager:
    import torch

    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _adversary(model: nn.Module, eps: float, norm: str, version: str, seed: int, device: str | torch.device,
               n_classes: int) -> Any:
    """A pyautoattack ``AutoAttack`` of ``version`` (``paper``: :func:`configure_paper_protocol`), its targeted
    attacks limited to the ``n_classes − 1`` classes there are."""
    from pyautoattack import AutoAttack

    if version == "paper":
        adversary = AutoAttack(model, eps=eps, norm=norm, version="custom", attacks=list(AA_ATTACKS["paper"]),
                               seed=seed, device=device)
        configure_paper_protocol(adversary, n_classes)
    else:
        adversary = AutoAttack(model, eps=eps, norm=norm, version=version, seed=seed, device=device)
        for attack in (adversary.apgd_targeted, adversary.fab):  # 9 targets need 10 classes (APGD-T would fail)
            attack.n_target_classes = min(int(attack.n_target_classes), max(1, n_classes - 1))
    adversary.verbose = False
    return adversary


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
    import torch
    from pyautoattack import checks as aa_checks

    from .batches import correct_flags, percent, progress_bar, to_float
    from .core import threat_model

    if version not in AA_ATTACKS:
        raise ValueError(f"AutoAttack version must be one of {sorted(AA_ATTACKS)}, got {version!r}")
    aa_norm = threat_model(norm)
    n = len(y)
    x_cpu, y_cpu = to_float(x, "cpu"), y.cpu().long()
    flags = correct_flags(model, x_cpu, y_cpu, batch_size=batch_size, device=device) if start_flags is None \
        else start_flags.clone()
    cumulative = {"clean": percent(flags, n)}
    with capture_autoattack_warnings() as sink, _rng_fork(device):
        with torch.no_grad():
            n_classes = int(model(x_cpu[:1].to(device)).shape[1])
        adversary = _adversary(model, eps, aa_norm, version, seed, device, n_classes)
        attacks = list(adversary.attacks_to_run)
        settings = autoattack_settings(adversary, attacks)
        for attack in progress_bar(attacks, progress, f"autoattack-{version}"):
            idx = torch.nonzero(flags).flatten()
            if len(idx) > 0:
                adversary.attacks_to_run = [attack]
                _, y_adv = adversary.run_standard_evaluation(x_cpu[idx], y_cpu[idx], batch_size=batch_size)
                flags[idx] = (y_adv.cpu() == y_cpu[idx])
            cumulative[attack] = percent(flags, n)
        aa_checks.check_square_sr({k: v / 100 for k, v in cumulative.items()}, logger=adversary.logger)
    return {"version": version, "norm": aa_norm, "seed": int(seed), "attacks": attacks, "cumulative": cumulative,
            "robust_flags": flags, "warnings": unique(sink), "settings": settings}


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
        parts.append(f"{AA_LABELS.get(name, name)} ({', '.join(b for b in bits if b)})")
    origin = " — the ADR code's protocol (torchattacks 3.3 AutoAttack defaults)" if version == "paper" else ""
    return f"AutoAttack '{version}'{origin}: " + ", ".join(parts)


@register_attack
@dataclass(frozen=True)
class AutoAttack(Attack):
    """AutoAttack at the spec's norm and ε, version ``aa_version``: ``standard``, ``rand`` or ``paper`` (the ADR
    code's protocol). It runs on a whole set (:func:`autoattack_eval`), so it does not validate."""

    aa_version: str = "standard"
    name: ClassVar[str] = "aa"
    label: ClassVar[str] = "AutoAttack"
    help: ClassVar[str] = "AutoAttack, pyautoattack"

    def forwards(self, spec: AttackSpec) -> int:
        raise NotImplementedError("AutoAttack's cost depends on the points it breaks; it is not counted ahead")

    def describe(self, spec: AttackSpec) -> str:
        from ..budget import format_eps

        norm = "L∞" if spec.threat_model == "Linf" else "L2"
        return f"AutoAttack '{self.aa_version}' {norm} ε={format_eps(spec.eps)}"

    def column(self, settings: Mapping[str, Any]) -> str:
        version = settings.get("aa_version")
        return "AutoAttack" + (f" ({version})" if version else "")

    def run(self, model: Any, x: Tensor, y: Tensor, *, spec: AttackSpec, seed: int = 0, batch_size: int = 256,
            device: Any = "cpu", start_flags: Tensor | None = None, progress: bool = False) -> dict[str, Any]:
        return autoattack_eval(model, x, y, eps=spec.eps, norm=spec.norm, version=self.aa_version, seed=seed,
                               batch_size=batch_size, device=device, start_flags=start_flags, progress=progress)

    def record(self, entry: dict[str, Any], spec: AttackSpec, result: Tensor | dict[str, Any]) -> None:
        """The report keeps AutoAttack's details (version, attacks, cumulative %, warnings, settings)."""
        keys = ("version", "norm", "seed", "attacks", "cumulative", "warnings", "settings")
        entry["autoattack"] = {k: result[k] for k in keys}  # type: ignore[index]
