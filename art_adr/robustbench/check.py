"""``art-adr export --check``: what a maintainer runs on a bundle before accepting it. The files are there, the
``model_info`` follows RobustBench's schema, its numbers are the evaluation report's (of the checkpoint the weights
come from), the weights load the way RobustBench loads a zoo model (``load_model``, or the bundle's own
``load_bundle.py`` where RobustBench has no leaderboard) and give the logits recorded at export, and the first test
images, re-evaluated, give the report's clean accuracy."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .bundle import ROBUSTBENCH_DATASETS, ROBUSTBENCH_N_EXAMPLES, model_info
from .evidence import read_report
from .export import MANIFEST_FORMAT, bundle_paths, register_exported

__all__ = ["BundleCheckError", "check_bundle", "bundle_names"]

_ACC = re.compile(r"^\d{1,3}\.\d\d$")


class BundleCheckError(ValueError):
    """A bundle fails a check: the message says which, in one line."""


def bundle_names(bundle_dir: str | Path) -> list[str]:
    """The models of a bundle: the folders of ``evaluation/`` that hold a ``manifest.json``."""
    return sorted(p.parent.name for p in Path(bundle_dir).glob("evaluation/*/manifest.json"))


def _manifest(root: Path, name: str | None) -> dict[str, Any]:
    if not root.is_dir():
        raise BundleCheckError(f"bundle folder {root} does not exist")
    names = bundle_names(root)
    if name is None:
        if len(names) != 1:
            raise BundleCheckError(f"{root} holds {len(names)} exported models {names}: name one (--name)"
                                   if names else f"{root} is not an art-adr bundle (no evaluation/*/manifest.json)")
        name = names[0]
    path = root / "evaluation" / name / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleCheckError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or manifest.get("name") != name:
        raise BundleCheckError(f"{path} is not the manifest of {name!r} ({MANIFEST_FORMAT})")
    return manifest


def _files(root: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    """Every file the bundle must hold, by key; ``BundleCheckError`` naming the first missing one."""
    from ..architectures import ARCHITECTURES
    from .local import architecture_module

    arch = manifest["arch"]
    module = architecture_module(arch) if arch in ARCHITECTURES.names(local=True) else None
    rel = bundle_paths(manifest["name"], manifest["dataset"], manifest["threat_model"], module)
    if manifest["numbers"] != "report":
        rel = {k: p for k, p in rel.items() if k not in ("report", "autoattack_log")}
    for p in rel.values():
        if not (root / p).is_file():
            raise BundleCheckError(f"missing file {p}")
    return {k: root / p for k, p in rel.items()}


def _schema(info: Any, manifest: dict[str, Any]) -> None:
    """``model_info``: RobustBench's fields and types, accuracies as 2-decimal percentages."""
    if not isinstance(info, dict):
        raise BundleCheckError("model_info is not a JSON object")
    required = set(model_info(dataset="d", architecture="a", clean_acc=1, autoattack_acc=1))
    keys = set(info)
    if not required <= keys or not keys <= required | {"external"}:
        raise BundleCheckError(f"model_info fields differ from RobustBench's schema: missing "
                               f"{sorted(required - keys)}, unknown {sorted(keys - required - {'external'})}")
    for key in ("link", "name", "authors", "venue", "dataset", "architecture", "eps"):
        if not isinstance(info[key], str):
            raise BundleCheckError(f"model_info {key} must be a string, got {info[key]!r}")
    if not (isinstance(info["additional_data"], bool) and isinstance(info["unreliable"], bool)
            and type(info["number_forward_passes"]) is int and isinstance(info["footnote"], (str, type(None)))):
        raise BundleCheckError("model_info additional_data/unreliable must be booleans, number_forward_passes an "
                               "integer, footnote a string or null")
    for key in ("clean_acc", "autoattack_acc", "reported", "external"):
        value = info.get(key, "0.00")
        if not isinstance(value, str) or not _ACC.match(value) or float(value) > 100:
            raise BundleCheckError(f"model_info {key} must be a percentage with two decimals, got {value!r}")
    if float(info["autoattack_acc"]) > float(info["clean_acc"]):
        raise BundleCheckError("model_info autoattack_acc is above clean_acc")
    if info["dataset"] != manifest["dataset"]:
        raise BundleCheckError(f"model_info dataset {info['dataset']!r} is not the bundle's {manifest['dataset']!r}")


def _numbers(files: dict[str, Path], info: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The numbers of ``model_info`` are the report's (the report unchanged since export, of the exported
    checkpoint); returns the report (``None`` for external numbers, which the footnote must say)."""
    from ..evaluation import file_sha256

    n, foot = int(manifest["n_examples"]), info["footnote"] or ""
    if manifest["leaderboard"] and n < ROBUSTBENCH_N_EXAMPLES and "Partial evaluation" not in foot:
        raise BundleCheckError(f"evaluated on {n} of {ROBUSTBENCH_N_EXAMPLES} test images, but model_info's "
                               "footnote does not mark the entry as partial")
    if manifest["numbers"] != "report":
        if "External numbers" not in foot:
            raise BundleCheckError("numbers are external but model_info's footnote does not say so")
        return None
    if file_sha256(files["report"]) != manifest["report_sha256"]:
        raise BundleCheckError(f"{files['report'].name} was changed after export (sha256 differs from the manifest)")
    try:
        report, _ = read_report(files["report"])
    except ValueError as exc:
        raise BundleCheckError(str(exc)) from None
    if report["checkpoint_info"]["sha256"] != manifest["checkpoint"]["sha256"] or report["n_examples"] != n:
        raise BundleCheckError("the evaluation report is not of the exported checkpoint (sha256 or n_examples)")
    results = report["models"][manifest["which"]]["results"]
    for key, res in (("clean_acc", "clean"), ("autoattack_acc", "aa")):
        if info[key] != f"{float(results[res]):.2f}":
            raise BundleCheckError(f"model_info {key} {info[key]} is not the evaluation report's "
                                   f"{float(results[res]):.2f}")
    return report


def _reload(root: Path, manifest: dict[str, Any]) -> nn.Module:
    """The model loaded as RobustBench loads a zoo model: ``robustbench.utils.load_model`` for its datasets,
    the bundle's ``load_bundle.py`` (the same steps, torch only) elsewhere."""
    from .standalone import load_model

    name, dataset, tm = manifest["name"], manifest["dataset"], manifest["threat_model"]
    try:
        if dataset in ROBUSTBENCH_DATASETS:
            from robustbench.utils import load_model as rb_load_model

            register_exported(root, name, dataset, tm)
            return rb_load_model(name, model_dir=root / "models", dataset=dataset, threat_model=tm)
        return load_model(name, dataset=dataset, threat_model=tm, bundle_dir=root)
    except (RuntimeError, KeyError, SyntaxError, NameError, AttributeError) as exc:
        raise BundleCheckError(f"the bundle does not load: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:300]}") from None


def _logits(model: nn.Module, manifest: dict[str, Any]) -> None:
    ref = manifest["reference"]
    x = torch.rand((len(ref["logits"]), *ref["input_shape"]), generator=torch.Generator().manual_seed(ref["seed"]))
    with torch.no_grad():
        got = model(x)
    want = torch.tensor(ref["logits"], dtype=got.dtype)
    if got.shape != want.shape or (got - want).abs().max().item() > 1e-5 * max(1.0, want.abs().max().item()):
        raise BundleCheckError("the loaded model's logits differ from those recorded at export (weights changed?)")


def _reevaluate(model: nn.Module, report: dict[str, Any], manifest: dict[str, Any], data_dir: str | Path | None,
                n_check: int | None) -> str:
    """Clean accuracy of the first test images against the report's: exact (one image in a thousand of slack for
    another device) when all ``n`` are re-evaluated, else the bounds the report's count implies."""
    from ..data import load_dataset
    from ..loader import to_unit_float

    test = manifest["test_set"]
    n = int(report["n_examples"])
    k = min(n, n_check or n)
    try:
        ds = load_dataset(test["dataset"], "test", data_dir, False, **test["dataset_kwargs"])
    except (ValueError, OSError) as exc:
        return f"re-evaluation skipped: {' '.join(str(exc).split())} (--data-dir)"
    x, y = to_unit_float(torch.as_tensor(ds.x[:k])), torch.as_tensor(ds.y[:k]).long()
    with torch.no_grad():
        correct = sum(int((model(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum()) for i in range(0, k, 256))
    total = round(float(report["models"][manifest["which"]]["results"]["clean"]) * n / 100)
    slack = math.ceil(n / 1000)
    low, high = max(0, total - (n - k)) - slack, min(k, total) + slack
    if not low <= correct <= high:
        raise BundleCheckError(f"re-evaluated clean accuracy {100 * correct / k:.2f}% on the first {k} test images "
                               f"contradicts the report's {100 * total / n:.2f}% on {n}")
    return f"clean accuracy re-evaluated: {correct}/{k} correct (report: {total}/{n})"


def check_bundle(bundle_dir: str | Path, name: str | None = None, *, data_dir: str | Path | None = None,
                 n_check: int | None = None) -> list[str]:
    """Check a bundle written by :func:`export_robustbench` (the model ``name``; default its only one): files,
    ``model_info`` schema, numbers against the evaluation report, weights unchanged since export, the load
    round trip (RobustBench's ``load_model`` or the bundle's own loader) and a clean re-evaluation of the first
    ``n_check`` test images (default: all the report evaluated; skipped, and said, where the test set is not in
    ``data_dir``). Returns one line per check passed; ``BundleCheckError`` (one line) at the first failure."""
    from ..evaluation import file_sha256

    root = Path(bundle_dir)
    manifest = _manifest(root, name)
    files = _files(root, manifest)
    done = [f"files present: {len(files)}"]
    try:
        info = json.loads(files["model_info"].read_text())
    except ValueError as exc:
        raise BundleCheckError(f"model_info is not valid JSON: {exc}") from None
    _schema(info, manifest)
    done.append("model_info follows RobustBench's schema")
    report = _numbers(files, info, manifest)
    done.append("numbers are the evaluation report's" if report else "numbers are marked external")
    if file_sha256(files["weights"]) != manifest["weights_sha256"]:
        raise BundleCheckError(f"{files['weights'].name} is not the exported weights (sha256 differs from the "
                               "manifest)")
    model = _reload(root, manifest).cpu().eval()
    _logits(model, manifest)
    how = "robustbench.utils.load_model" if manifest["dataset"] in ROBUSTBENCH_DATASETS else "load_bundle.py"
    done.append(f"loads through {how} with the logits recorded at export")
    if report is not None:
        done.append(_reevaluate(model, report, manifest, data_dir, n_check))
    return done
