"""RobustBench (Croce et al. 2021, robustbench==1.1.1): ``autoattack`` adapter, submission export, leaderboard.

* ``fill_autoattack_module()`` / ``install_autoattack_adapter()`` — RobustBench imports ``autoattack`` (the
  upstream git package of Croce & Hein) with its signatures (``AutoAttack(..., log_path=)``,
  ``run_standard_evaluation(x, y, bs=)`` returning ``x_adv``); PyPI's ``pyautoattack`` is the same code under
  another module name with keyword-only, renamed arguments. art-adr installs a top-level ``autoattack``
  module (``shims/autoattack``) built by ``fill_autoattack_module``, so a plain ``import robustbench`` works;
  ``install_autoattack_adapter`` registers the same in memory where that module is missing.
* ``export_robustbench(...)`` — the files of a RobustBench model submission (weights, ``model_info`` json
  with every field of RobustBench's schema, model-zoo entry, filled "[New Model]" issue), written
  atomically; evaluations on fewer than the 10 000 test images only with ``allow_partial`` (and marked).
* ``leaderboard_table(...)`` — placement against the shipped leaderboard snapshot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import torch_save

__all__ = [
    "ROBUSTBENCH_DATASETS",
    "THREAT_MODELS",
    "ROBUSTBENCH_N_EXAMPLES",
    "ADR_PAPER",
    "fill_autoattack_module",
    "install_autoattack_adapter",
    "import_robustbench",
    "robustbench_benchmark",
    "export_robustbench",
    "model_info",
    "model_zoo_entry",
    "new_model_issue",
    "register_exported",
    "load_leaderboard",
    "leaderboard_table",
    "format_leaderboard",
    "ExportError",
]

ROBUSTBENCH_DATASETS = ("cifar10", "cifar100")
THREAT_MODELS = ("Linf",)
ROBUSTBENCH_N_EXAMPLES = 10_000  # RobustBench evaluates on the first 10 000 test images (the whole test set)
LEADERBOARD_FILE = Path(__file__).with_name("leaderboard-2025-03-31.json")
ADR_PAPER = {
    "name": "Annealing Self-Distillation Rectification Improves Adversarial Training",
    "link": "https://arxiv.org/abs/2305.12118",
    "authors": "Yu-Yu Wu, Hung-Jui Wang, Shang-Tse Chen",
    "venue": "ICLR 2024",
}
PLACEHOLDERS = {"link": "<PAPER URL>", "authors": "<AUTHORS>", "venue": "<VENUE>"}  # not the ADR paper's
ARCH_NAMES = {"resnet18": "ResNet-18", "preact-resnet18": "PreActResNet-18",
              "wrn-28-10": "WideResNet-28-10", "wrn-34-10": "WideResNet-34-10",
              "dm-wrn-28-10": "WideResNet-28-10", "dm-wrn-34-10": "WideResNet-34-10"}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
FORBIDDEN_KEY_PARTS = ("model.", "module.")  # robustbench.utils.load_model strips these from every key


class ExportError(ValueError):
    """The checkpoint or arguments cannot make a valid RobustBench submission."""


# -------------------------------------------------------------------------------------- autoattack adapter
def _adapter_class() -> type:
    """``autoattack.AutoAttack`` with the upstream signatures, on top of ``pyautoattack.AutoAttack``."""
    import pyautoattack

    class AutoAttack(pyautoattack.AutoAttack):
        """Upstream ``AutoAttack(model, norm, eps, seed, verbose, attacks_to_run, version, is_tf_model,
        device, log_path)`` mapped onto ``pyautoattack`` (messages go to logger ``auto-attack``)."""

        def __init__(self, model: Any, norm: str = "Linf", eps: float = 0.3, seed: int | None = None,
                     verbose: bool = True, attacks_to_run: list[str] | tuple[str, ...] = (),
                     version: str = "standard", is_tf_model: bool = False, device: Any = "cuda",
                     log_path: str | None = None) -> None:
            if is_tf_model:
                raise NotImplementedError("pyautoattack supports PyTorch models only")
            attacks = list(attacks_to_run) if attacks_to_run else None
            super().__init__(model, attacks=attacks, device=device, eps=eps, norm=norm, seed=seed,
                             version=version)
            self.verbose, self.log_path = verbose, log_path

        @contextlib.contextmanager
        def _logging(self) -> Iterator[None]:
            handlers: list[logging.Handler] = []
            if self.log_path:
                handlers.append(logging.FileHandler(self.log_path))
            if self.verbose:
                handlers.append(logging.StreamHandler(sys.stdout))
            old_level = self.logger.level
            for h in handlers:
                h.setLevel(logging.DEBUG)
                self.logger.addHandler(h)
            if handlers:
                self.logger.setLevel(logging.DEBUG)
            try:
                yield
            finally:
                for h in handlers:
                    self.logger.removeHandler(h)
                    h.close()
                self.logger.setLevel(old_level)

        def run_standard_evaluation(self, x_orig: torch.Tensor, y_orig: torch.Tensor, bs: int = 250,
                                    return_labels: bool = False, state_path: Any = None) -> Any:
            """Upstream signature: returns ``x_adv`` (and ``y_adv`` when ``return_labels``)."""
            state = Path(state_path) if state_path is not None else None
            with self._logging():
                x_adv, y_adv = super().run_standard_evaluation(x_orig, y_orig, batch_size=bs, state_path=state)
            return (x_adv, y_adv) if return_labels else x_adv

        def run_standard_evaluation_individual(self, x_orig: torch.Tensor, y_orig: torch.Tensor,
                                               bs: int = 250, return_labels: bool = False) -> dict[str, Any]:
            """Upstream signature: ``{attack: x_adv}`` (or ``(x_adv, y_adv)`` with ``return_labels``)."""
            with self._logging():
                adv = super().run_standard_evaluation_individual(x_orig, y_orig, batch_size=bs)
            return {k: (v if return_labels else v[0]) for k, v in adv.items()}

        def clean_accuracy(self, x_orig: torch.Tensor, y_orig: torch.Tensor, bs: int = 250) -> float:
            """Upstream signature (same as pyautoattack's)."""
            return super().clean_accuracy(x_orig, y_orig, bs=bs)

        def set_version(self, version: str = "standard") -> None:
            """Upstream public name of ``_set_version``."""
            self.version = version
            self._set_version(version)

    return AutoAttack


AUTOATTACK_SUBMODULES = ("state", "checks", "autopgd_base", "fab_pt", "fab_base", "square", "other_utils")


def fill_autoattack_module(pkg: types.ModuleType) -> types.ModuleType:
    """Give ``pkg`` (the module ``autoattack``) the upstream API backed by ``pyautoattack``: ``AutoAttack``
    with the upstream signatures, ``autoattack.autoattack`` and the submodules of ``AUTOATTACK_SUBMODULES``
    (registered in ``sys.modules`` under ``autoattack.<name>``). Used by the top-level ``autoattack`` module
    that art-adr installs and by ``install_autoattack_adapter``; returns ``pkg``."""
    import importlib

    import pyautoattack

    if not hasattr(pkg, "__path__"):
        pkg.__path__ = []  # a package, so ``import autoattack.state`` resolves through sys.modules
    pkg.__version__ = getattr(pyautoattack, "__version__", "unknown")
    pkg.AutoAttack = _adapter_class()
    for sub in AUTOATTACK_SUBMODULES:
        try:
            mod = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:
            continue
        sys.modules[f"{pkg.__name__}.{sub}"] = mod
        setattr(pkg, sub, mod)
    main = types.ModuleType(f"{pkg.__name__}.autoattack", "upstream ``autoattack.autoattack`` (art-adr adapter)")
    main.AutoAttack = pkg.AutoAttack
    sys.modules[main.__name__] = main
    pkg.autoattack = main
    return pkg


def install_autoattack_adapter() -> bool:
    """Make ``import autoattack`` work: a no-op when it already does (art-adr installs a top-level
    ``autoattack`` module built by ``fill_autoattack_module``, or the upstream package is installed); else
    register an in-memory ``autoattack`` backed by ``pyautoattack``. Returns ``True`` when this call
    registered it."""
    if "autoattack" in sys.modules:
        return False
    try:
        import autoattack  # noqa: F401
        return False
    except ImportError:
        pass
    pkg = types.ModuleType("autoattack", "pyautoattack under the upstream name (installed by art_adr)")
    sys.modules["autoattack"] = pkg
    try:
        fill_autoattack_module(pkg)
    except BaseException:
        sys.modules.pop("autoattack", None)
        raise
    return True


def import_robustbench() -> types.ModuleType:
    """``import robustbench`` after installing the adapter; ``ImportError`` with the fix when impossible."""
    install_autoattack_adapter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            import robustbench
            import robustbench.eval  # noqa: F401
            import robustbench.utils  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"RobustBench is unavailable ({exc}); art-adr needs it: "
                          "`pip install robustbench==1.1.1 'setuptools<81' 'pyautoattack>=0.2'`") from exc
    return robustbench


def robustbench_benchmark(model: nn.Module, *, dataset: str = "cifar10", n_examples: int = 10000,
                          data_dir: str | Path = "./data", batch_size: int = 250, device: Any = "cpu",
                          eps: float = 8 / 255, **kw: Any) -> tuple[float, float]:
    """Run ``robustbench.eval.benchmark`` (AutoAttack standard, L∞) through the adapter: ``(clean, robust)``."""
    rb = import_robustbench()
    return rb.eval.benchmark(model.eval(), n_examples=n_examples, dataset=dataset, threat_model="Linf",
                             data_dir=str(data_dir), device=torch.device(device), batch_size=batch_size,
                             eps=eps, **kw)


# -------------------------------------------------------------------------------------------- export
def _fmt_acc(value: float | str | None, field: str) -> str:
    if value is None:
        raise ExportError(f"{field} is required (pass it, or an evaluation report with AutoAttack results)")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExportError(f"{field} must be a number (percent), got {value!r}") from None
    if not 0.0 <= v <= 100.0:
        raise ExportError(f"{field} must be a percentage in [0, 100], got {value!r}")
    return f"{v:.2f}"


def model_info(
    *, dataset: str, architecture: str, clean_acc: float | str, autoattack_acc: float | str,
    reported: float | str | None = None, eps: float = 8 / 255, additional_data: bool = False,
    number_forward_passes: int = 1, footnote: str | None = None, name: str = ADR_PAPER["name"],
    link: str = ADR_PAPER["link"], authors: str = ADR_PAPER["authors"], venue: str = ADR_PAPER["venue"],
    external: float | str | None = None, unreliable: bool = False,
) -> dict[str, Any]:
    """RobustBench's ``model_info/<dataset>/Linf/<Name>.json``: every field of the schema of the shipped
    entries (robustbench ``model_info`` at commit 78fcc9e), in their order, accuracies as 2-decimal strings.

    ``external`` (an adaptive attack's robust accuracy, at most AutoAttack's) is written only when given, as
    in RobustBench's own entries (RobustBench ranks by ``autoattack_acc`` when it is absent). ``footnote`` is
    ``null`` when there is none; ``unreliable`` (RobustBench's flag for a potentially unreliable evaluation)
    is ``false`` by default. Only schema fields are written: a partial evaluation (``n_examples`` fewer than
    ``ROBUSTBENCH_N_EXAMPLES``) is marked in the footnote by the caller. Robust accuracy above clean accuracy
    (or ``external`` above ``autoattack_acc``) is an ``ExportError``.
    """
    from .evaluation import format_eps

    aa = _fmt_acc(autoattack_acc, "autoattack_acc")
    clean = _fmt_acc(clean_acc, "clean_acc")
    if float(aa) > float(clean):
        raise ExportError(f"autoattack_acc {aa} is above clean_acc {clean}: robust accuracy cannot exceed clean "
                          "accuracy (swapped values?)")
    if external is not None and float(_fmt_acc(external, "external")) > float(aa):
        raise ExportError(f"external {_fmt_acc(external, 'external')} is above autoattack_acc {aa}: it is the "
                          "lower accuracy of a stronger (adaptive) attack")
    info: dict[str, Any] = {
        "link": link, "name": name, "authors": authors, "additional_data": bool(additional_data),
        "number_forward_passes": int(number_forward_passes), "dataset": dataset, "venue": venue,
        "architecture": architecture, "eps": format_eps(eps),
        "clean_acc": clean,
        "reported": _fmt_acc(reported, "reported") if reported is not None else aa,
        "autoattack_acc": aa,
        **({"external": _fmt_acc(external, "external")} if external is not None else {}),
        "footnote": footnote or None,
        "unreliable": bool(unreliable),
    }
    return info


def _rb_constructor(spec: dict[str, Any]) -> dict[str, Any]:
    """RobustBench constructor whose keys avoid ``model.``/``module.`` (which ``load_model`` strips).

    ``normalize_model(net, mean, std)`` names the net ``model``; it is rebuilt as
    ``nn.Sequential(OrderedDict([("normalize", ImageNormalizer(mean, std)), ("net", net)]))``.
    """
    ctor, prefix, normalizer = spec["constructor"], spec["prefix"], spec["normalizer"]
    suffix = f", {spec['mean']}, {spec['std']})"
    if ctor.startswith("normalize_model(") and ctor.endswith(suffix):
        inner = ctor[len("normalize_model("):-len(suffix)]
        ctor = (f'nn.Sequential(OrderedDict([("normalize", ImageNormalizer({spec["mean"]}, {spec["std"]})), '
                f'("net", {inner})]))')
        imports = [line.replace("import normalize_model", "import ImageNormalizer")
                   for line in spec["import_line"].splitlines()]
        imports = ["from collections import OrderedDict", "import torch.nn as nn"] + imports
        return {**spec, "import_line": "\n".join(dict.fromkeys(imports)), "constructor": ctor,
                "prefix": "net.", "normalizer": "normalize."}
    return {**spec, "constructor": ctor, "prefix": prefix, "normalizer": normalizer}


def _build(import_line: str, constructor: str) -> nn.Module:
    """Evaluate a model-zoo constructor (after its imports) in a fresh namespace."""
    import_robustbench()
    ns: dict[str, Any] = {}
    exec(import_line, ns)  # noqa: S102 - our own generated source
    return eval(constructor, ns)  # noqa: S307


def _export_state_dict(state: dict[str, torch.Tensor], spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    from .models import robustbench_state_dict

    sd = robustbench_state_dict(state, spec)
    out = {k: v.detach().to("cpu").clone().contiguous() for k, v in sd.items()}
    bad = [k for k in out if any(p in k for p in FORBIDDEN_KEY_PARTS)]
    if bad:
        raise ExportError(f"state-dict keys {bad[:3]} contain 'model.'/'module.', which RobustBench strips")
    return out


def model_zoo_entry(name: str, dataset: str, import_line: str, constructor: str) -> str:
    """Text to paste into ``robustbench/model_zoo/<dataset>.py`` (imports + the ``linf`` OrderedDict item)."""
    return (
        f"# 1) add to the imports of robustbench/model_zoo/{dataset}.py:\n{import_line}\n\n"
        f"# 2) add to its `linf = OrderedDict([...])` (ThreatModel.Linf) list:\n"
        f"('{name}', {{\n    'model': lambda: {constructor},\n    'gdrive_id': '<GDRIVE_ID>',\n}}),\n"
    )


def _zoo_item(entry_text: str) -> str:
    return entry_text.split(" list:\n", 1)[1].strip().rstrip(",")


def new_model_issue(name: str, info: dict[str, Any], *, eval_note: str, checkpoint_url: str = "<URL>",
                    n_examples: int = ROBUSTBENCH_N_EXAMPLES) -> str:
    """The RobustBench "[New Model]" issue template (.github/ISSUE_TEMPLATE/new-model.md), filled in (with a
    warning when ``n_examples`` is fewer than the full test set)."""
    yes = "x"  # export is for the Model Zoo, under the MIT license
    return (
        f"Title: [New Model] {name}\n\n"
        "# Paper Information\n\n"
        f"- **Paper Title**: {info['name']}\n- **Paper URL**: {info['link']}\n"
        f"- **Paper authors**: {info['authors']}\n- **Venue**: {info['venue']}\n\n"
        "# Leaderboard Claim(s)\n\n## Model 1\n\n"
        f"- **Model name**: {name}\n- **Dataset**: {info['dataset']}\n"
        f"- **Architecture**: {info['architecture']}\n- **Threat Model**: Linf\n- **eps**: {info['eps']}\n"
        f"- **Clean accuracy**: {info['clean_acc']}%\n- **Robust accuracy**: {info['autoattack_acc']}%"
        f" (reported: {info['reported']}%)\n"
        f"- **Additional data**: {str(info['additional_data']).lower()}\n"
        f"- **Evaluation method**: {eval_note}\n"
        f"- **Checkpoint and code**: {checkpoint_url} (code: https://github.com/Trusted-AI/"
        "adversarial-robustness-toolbox + art-adr)\n"
        + (f"- **Footnote**: {info['footnote']}\n" if info.get("footnote") else "")
        + (f"- **Warning**: partial evaluation, {n_examples} of the {ROBUSTBENCH_N_EXAMPLES} test images "
           "(not RobustBench's protocol)\n" if n_examples < ROBUSTBENCH_N_EXAMPLES else "")
        + "\n# Model Zoo:\n\n"
        f"- [{yes}] I want to add my models to the Model Zoo (check if true)\n"
        "- [ ] I use an architecture that is **not** included among those in "
        "robustbench/model_zoo/architectures (check if true).\n"
        f"- [{yes}] I agree to release my model(s) under MIT license (check if true) **OR**\n"
        "- [ ] I want my models to be released under a custom license, located here: (custom license URL here)\n"
    )


def _accuracies_from_report(report: dict[str, Any] | str | Path, which: str, dataset: str,
                            eps: float) -> tuple[float, float, str, int]:
    """``(clean, autoattack, evaluation note, number of test images)`` of an ``art-adr evaluate`` report."""
    if not isinstance(report, dict):
        try:
            report = json.loads(Path(report).read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read evaluation report {report}: {exc}") from None
    entry = report.get("models", {}).get(which, {})
    res = entry.get("results", {})
    if "aa" not in res:
        raise ExportError(f"evaluation report has no AutoAttack result for the {which}")
    if report.get("norm", "Linf") != "Linf":
        raise ExportError(f"evaluation report is for the {report.get('norm')} norm; the export is for L∞ (Linf)")
    if report.get("dataset") != dataset or abs(float(report.get("eps", -1)) - eps) > 1e-9:
        raise ExportError(f"evaluation report is for {report.get('dataset')} at ε={report.get('eps')}, "
                          f"not {dataset} at ε={eps}")
    n = report.get("n_examples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ExportError(f"evaluation report does not say how many test images were evaluated "
                          f"(n_examples = {n!r})")
    aa = entry.get("autoattack", {})
    note = (f"AutoAttack {aa.get('version', 'standard')} (pyautoattack, seed {aa.get('seed')}) on the first "
            f"{n} {dataset} test images")
    return float(res["clean"]), float(res["aa"]), note, n


def _default_footnote(which: str, decay: float = 0.995) -> str | None:
    """The "+WA" note for an exported EMA teacher, with the run's decay."""
    return f"+WA: weights of the EMA teacher (weight averaging, decay {decay:g})." if which == "teacher" else None


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def paper_fields(cfg: dict[str, Any]) -> dict[str, str]:
    """``name``/``link``/``authors``/``venue`` defaults: the ADR paper for an ADR run (``adr`` true or absent
    from the run's config); for a run trained without ADR a neutral name ("PGD-AT (art-adr)", "TRADES
    (art-adr)", ...) and ``PLACEHOLDERS`` to fill in: such a model is not the ADR paper's."""
    if cfg.get("adr", True):
        return {k: ADR_PAPER[k] for k in ("name", "link", "authors", "venue")}
    from .methods import METHOD_NAMES, get_method

    method = str(cfg.get("method") or "at")
    title = get_method(method).display_name() if method in METHOD_NAMES else method.upper()
    return {"name": f"{title} (art-adr)", **PLACEHOLDERS}


def _check_n_examples(n: int | None, dataset: str, allow_partial: bool) -> int:
    """The number of test images behind the accuracies (``None``: the full test set); ``ExportError`` for a
    partial evaluation unless ``allow_partial``."""
    full = ROBUSTBENCH_N_EXAMPLES
    if n is None:
        return full
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= full:
        raise ExportError(f"n_examples must be an integer in [1, {full}] ({dataset} has {full} test images), "
                          f"got {n!r}")
    if n < full and not allow_partial:
        raise ExportError(f"the accuracies come from {n} of the {full} {dataset} test images; RobustBench's "
                          f"protocol evaluates all {full} (`art-adr evaluate --robustbench`). Pass --allow-partial "
                          "(allow_partial=True) to export anyway, marked as partial in model_info")
    return n


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
    from .checkpoint import load_model
    from .evaluation import format_eps
    from .models import robustbench_spec

    if not NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must be letters, digits, '_' or '-' (e.g. Wu2024Annealing_RN18)")
    if threat_model not in THREAT_MODELS:
        raise ExportError(f"threat model must be one of {THREAT_MODELS}, got {threat_model!r}")
    unknown = set(info) - {"link", "authors", "venue", "number_forward_passes", "external", "unreliable"}
    if unknown:
        raise TypeError(f"unexpected model_info fields {sorted(unknown)}")
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

    eval_note = f"AutoAttack standard, ε={format_eps(eps)}"
    if report is not None:
        clean_acc, autoattack_acc, eval_note, report_n = _accuracies_from_report(report, which, dataset, eps)
        if n_examples is not None and n_examples != report_n:
            raise ExportError(f"n_examples={n_examples} contradicts the evaluation report ({report_n} test images)")
        n_examples = report_n
    elif n_examples is not None:
        eval_note += f", first {n_examples} {dataset} test images"
    n_used = _check_n_examples(n_examples, dataset, allow_partial)
    cfg = ckpt.get("config") or {}
    if additional_data is None:
        additional_data = bool(cfg.get("extra_data"))
    fields = {**paper_fields(cfg), **{k: v for k, v in info.items() if v is not None}}
    if paper_name:
        fields["name"] = paper_name
    notes = [footnote or _default_footnote(which, float(cfg.get("ema_decay", 0.995)))]
    if n_used < ROBUSTBENCH_N_EXAMPLES:
        notes.insert(0, f"Partial evaluation: {n_used} of the {ROBUSTBENCH_N_EXAMPLES} test images, "
                        "not RobustBench's protocol.")
    meta = model_info(dataset=dataset, architecture=ARCH_NAMES.get(desc["arch"], desc["arch"]),
                      clean_acc=clean_acc, autoattack_acc=autoattack_acc, reported=reported, eps=eps,
                      additional_data=additional_data, footnote=" ".join(n for n in notes if n) or None,
                      **fields)
    ctor = _rb_constructor(spec)
    state = _export_state_dict(model.state_dict(), ctor)
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
    entry = model_zoo_entry(name, dataset, ctor["import_line"], ctor["constructor"])
    with _staging(out) as tmp:
        for p in rel.values():
            (tmp / p).parent.mkdir(parents=True, exist_ok=True)
        torch_save({"state_dict": state}, tmp / rel["weights"])
        _verify_weights(tmp / rel["weights"], ctor, model, spec["input_shape"])
        (tmp / rel["model_info"]).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / rel["model_zoo"]).write_text(entry)
        (tmp / rel["issue"]).write_text(new_model_issue(name, meta, eval_note=eval_note, n_examples=n_used))
        for p in rel.values():
            (out / p).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / p, out / p)
    return {k: out / p for k, p in rel.items()}


def _verify_weights(path: Path, ctor: dict[str, Any], model: nn.Module, shape: tuple[int, ...]) -> None:
    """Reload with ``weights_only=True`` into the zoo constructor, on the device of ``model``; logits must
    match ours (≤ 1e-5 relative: our forwards pool with ``adaptive_avg_pool2d``, RobustBench's with
    ``avg_pool2d(k)``, same sum up to float rounding; TF32 convolutions are off for the check)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    rb_model = _build(ctor["import_line"], ctor["constructor"])
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
    key, value = eval(_zoo_item(text), ns)  # noqa: S307
    value["gdrive_id"] = "local-export"  # never used: the .pt file is already in model_dir
    model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][key] = value


# ----------------------------------------------------------------------------------------- leaderboard
def load_leaderboard(path: str | Path = LEADERBOARD_FILE) -> dict[str, Any]:
    """The shipped snapshot: ``{"source", "note", "date", "entries": {"cifar10/Linf": [...], ...}}``."""
    return json.loads(Path(path).read_text())


def _score(entry: dict[str, Any]) -> float:
    value = entry.get("external") or entry.get("autoattack_acc")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def leaderboard_table(dataset: str, threat_model: str = "Linf", ours: dict[str, Any] | None = None,
                      snapshot: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Leaderboard rows ranked by ``external`` if present else ``autoattack_acc`` (RobustBench's rule),
    with ``ours`` (``name``, ``clean_acc``, ``autoattack_acc``, ``architecture``, ``additional_data``)
    inserted and flagged ``ours=True``. Each row also carries the snapshot's ``source`` and ``date``."""
    snap = snapshot or load_leaderboard()
    key = f"{dataset}/{threat_model}"
    if key not in snap["entries"]:
        raise ValueError(f"no {key} leaderboard in the snapshot; available: {sorted(snap['entries'])}")
    rows = [{"model_id": e.get("model_id", ""), "name": e.get("name", ""), "clean_acc": float(e["clean_acc"]),
             "autoattack_acc": float(e["autoattack_acc"]), "score": _score(e),
             "architecture": e.get("architecture", ""), "additional_data": bool(e.get("additional_data")),
             "venue": e.get("venue", ""), "ours": False} for e in snap["entries"][key]]
    if ours is not None:
        rows.append({"model_id": ours.get("name", "ours"), "name": ours.get("paper", ADR_PAPER["name"]),
                     "clean_acc": float(ours["clean_acc"]), "autoattack_acc": float(ours["autoattack_acc"]),
                     "score": float(ours["autoattack_acc"]), "architecture": ours.get("architecture", ""),
                     "additional_data": bool(ours.get("additional_data", False)),
                     "venue": ours.get("venue", "(this run)"), "ours": True})
    rows.sort(key=lambda r: (-r["score"], r["ours"]))  # ties: ours placed after the listed model
    for i, r in enumerate(rows, 1):
        r.update(rank=i, source=snap["source"], date=snap.get("date", ""))
    return rows


def format_leaderboard(rows: list[dict[str, Any]], context: int = 3) -> str:
    """Markdown excerpt: the top ``context`` rows and the rows around ours, with the snapshot source; the
    "ranked by" column is the score the rank follows (``external`` where an entry has a lower one)."""
    mine = [r["rank"] for r in rows if r["ours"]]
    keep = {r["rank"] for r in rows if r["rank"] <= context or any(abs(r["rank"] - m) <= context for m in mine)}
    lines = ["| rank | model | clean | AutoAttack | ranked by | architecture | extra data |",
             "|---|---|---|---|---|---|---|"]
    last = 0
    for r in rows:
        if r["rank"] not in keep:
            continue
        if r["rank"] > last + 1:
            lines.append("| … | | | | | | |")
        mark = "**" if r["ours"] else ""
        ranked = f"{r['score']:.2f}" + (" (external)" if r["score"] != r["autoattack_acc"] else "")
        lines.append(f"| {r['rank']} | {mark}{r['model_id']}{mark} | {r['clean_acc']:.2f} | "
                     f"{r['autoattack_acc']:.2f} | {ranked} | {r['architecture']} | "
                     f"{'yes' if r['additional_data'] else 'no'} |")
        last = r["rank"]
    src = rows[0]["source"] if rows else ""
    where = f"Placement: rank {mine[0]} of {len(rows)}. " if mine else ""
    return "\n".join(lines) + f"\n\n{where}Snapshot: {src}\n"
