"""A RobustBench-format bundle from a checkpoint: weights under the model-zoo keys, ``model_info``, the model-zoo
entry (with the architecture's own file when RobustBench has no class for it), the "[New Model]" issue, the
evaluation report and AutoAttack log behind the numbers, ``load_bundle.py`` and a manifest; checked (the weights
reload into the zoo constructor and give our logits) in a staging folder before anything is moved into place.

Any dataset: where RobustBench has a leaderboard the bundle is a submission, elsewhere (e.g. Fashion-MNIST) a
bundle in its format that loads the same way through the bundle's ``load_bundle.py``."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import missing_folders, remove_empty_folders, torch_save
from . import standalone
from .adapter import import_robustbench
from .bundle import (
    ARCH_NAMES,
    NAME_RE,
    ROBUSTBENCH_DATASETS,
    ROBUSTBENCH_N_EXAMPLES,
    THREAT_MODELS,
    ExportError,
    check_n_examples,
    default_footnote,
    model_info,
    new_model_issue,
    paper_fields,
)
from .evidence import Numbers, external_numbers, numbers_from_report, read_report
from .local import local_spec
from .standalone import zoo_namespace
from .zoo import build_zoo_model, export_state_dict, model_zoo_entry, robustbench_spec, zoo_constructor, zoo_item

__all__ = ["export_robustbench", "register_exported", "reference_logits", "bundle_paths", "INFO_FIELDS",
           "MANIFEST_FORMAT", "LOADER_FILE"]

INFO_FIELDS = ("link", "authors", "venue", "number_forward_passes", "external", "unreliable")  # extra model_info
MANIFEST_FORMAT = "art-adr-robustbench-bundle"
LOADER_FILE = "load_bundle.py"  # the bundle's loader: the source of art_adr.robustbench.standalone
REFERENCE_SEED = 0


def export_robustbench(
    checkpoint: str | Path, out_dir: str | Path, name: str, *, which: str = "student",
    dataset: str | None = None, threat_model: str = "Linf", eps: float | None = None,
    report: dict[str, Any] | str | Path | None = None, clean_acc: float | None = None,
    autoattack_acc: float | None = None, external_numbers: bool = False, reported: float | None = None,
    additional_data: bool | None = None, footnote: str | None = None, paper_name: str | None = None,
    overwrite: bool = False, n_examples: int | None = None, allow_partial: bool = False,
    device: str | torch.device = "cpu", **info: Any,
) -> dict[str, Path]:
    """Write a RobustBench-format bundle for a checkpoint's student or teacher ("+WA") model; returns its files.

    Files (under ``out_dir``; see :func:`bundle_paths`): ``models/<dataset>/Linf/<name>.pt`` (``{"state_dict"}``,
    CPU tensors), ``model_info/<dataset>/Linf/<name>.json``, ``model_zoo/<dataset>/Linf/<name>.py`` (the entry to
    paste; for art-adr's own architectures also ``model_zoo/architectures/art_adr_<arch>.py``, self-contained),
    ``issue/<name>.md`` (the "[New Model]" issue, consent boxes unticked), ``evaluation/<name>/`` (the report,
    ``autoattack.log``, ``manifest.json``) and ``load_bundle.py`` (RobustBench's ``load_model`` for the bundle,
    torch only). Staged and checked (the weights reload with ``weights_only=True`` into the zoo constructor and
    give the same logits on ``device``) before being moved into place; on error nothing is left behind.

    The numbers come from ``report``, ``art-adr evaluate``'s report of this very checkpoint (its SHA-256 must be
    the checkpoint file's), or, with ``external_numbers=True`` only, from ``clean_acc``/``autoattack_acc``
    measured elsewhere on ``n_examples`` test images (default all 10 000), recorded as external. ``eps``: the
    report's ε by default (8/255 with external numbers); a report at another ε is refused. Where RobustBench
    has a leaderboard for the dataset, fewer than ``ROBUSTBENCH_N_EXAMPLES`` images raise ``ExportError`` unless
    ``allow_partial``; a partial evaluation is marked in ``model_info``'s footnote and the issue text.
    ``paper_name`` and extra ``info`` keys (``link``, ``authors``, ``venue``, ``number_forward_passes``,
    ``external``, ``unreliable``) go to ``model_info``; their defaults are the ADR paper's, or, for a run trained
    without ADR (config ``adr: false``), a neutral name such as "PGD-AT (art-adr)" with ``PLACEHOLDERS``.
    """
    _check_arguments(name, threat_model, info)
    model, ckpt, file, dataset, spec = _exportable_model(checkpoint, which, dataset, device)
    leaderboard = dataset in ROBUSTBENCH_DATASETS
    if eps is None:  # the report's ε, else RobustBench's L∞ 8/255
        eps = float(read_report(report)[0]["eps"]) if report is not None and not external_numbers else 8 / 255
    numbers = _numbers(report, file, which, dataset, eps, (clean_acc, autoattack_acc), external_numbers,
                       n_examples)
    numbers["n"] = check_n_examples(numbers["n"], dataset, allow_partial, leaderboard)
    meta = _model_info(ckpt, dataset, numbers, which, eps, leaderboard, reported=reported,
                       additional_data=additional_data, footnote=footnote, paper_name=paper_name, **info)
    rel = bundle_paths(name, dataset, threat_model, spec.get("module"))
    texts = _texts(name, dataset, meta, spec, numbers, leaderboard)
    out = Path(out_dir)
    _refuse_overwrite(out, rel, texts, overwrite)
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "name": name, "dataset": dataset,
                "threat_model": threat_model, "which": which, "arch": ckpt["model"]["arch"],
                "leaderboard": leaderboard, "numbers": numbers["source"], "n_examples": numbers["n"],
                "checkpoint": {"file": file.name, "sha256": _sha256(file)},
                "test_set": {"dataset": dataset, "dataset_kwargs": _dataset_kwargs(ckpt, dataset)}}
    _write_bundle(out, rel, _state(model, spec), texts, spec, model, manifest)
    return {k: out / p for k, p in rel.items()}


def bundle_paths(name: str, dataset: str, threat_model: str = "Linf", module: str | None = None) -> dict[str, Path]:
    """The files of model ``name`` in a bundle, relative to its folder (``module``: the architecture file's)."""
    rel = {
        "weights": Path("models") / dataset / threat_model / f"{name}.pt",
        "model_info": Path("model_info") / dataset / threat_model / f"{name}.json",
        "model_zoo": Path("model_zoo") / dataset / threat_model / f"{name}.py",
        "issue": Path("issue") / f"{name}.md",
        "report": Path("evaluation") / name / "evaluation.json",
        "autoattack_log": Path("evaluation") / name / "autoattack.log",
        "manifest": Path("evaluation") / name / "manifest.json",
        "loader": Path(LOADER_FILE),
    }
    if module:
        rel["architecture"] = Path("model_zoo") / "architectures" / f"{module}.py"
    return rel


def _check_arguments(name: str, threat_model: str, info: dict[str, Any]) -> None:
    if not NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must be letters, digits, '_' or '-' (e.g. Wu2024Annealing_RN18)")
    if threat_model not in THREAT_MODELS:
        raise ExportError(f"threat model must be one of {THREAT_MODELS}, got {threat_model!r}")
    unknown = set(info) - set(INFO_FIELDS)
    if unknown:
        raise TypeError(f"unexpected model_info fields {sorted(unknown)}")


def _exportable_model(checkpoint: str | Path, which: str, dataset: str | None, device: str | torch.device
                      ) -> tuple[nn.Module, dict[str, Any], Path, str, dict[str, Any]]:
    """``(model, checkpoint, its file, dataset, zoo spec)``: RobustBench's classes where it has them (3×32×32
    inputs), else art-adr's own class in a file of the bundle; ``ExportError`` otherwise."""
    from ..architectures import ARCHITECTURES
    from ..checkpoint import load_model, resolve_checkpoint

    file = resolve_checkpoint(checkpoint)
    model, ckpt = load_model(file, which=which, device=device)
    desc = ckpt["model"]
    dataset = dataset or desc.get("dataset")
    if not dataset:
        raise ExportError("the checkpoint names no dataset; pass dataset=... (--dataset)")
    if desc.get("dataset") not in (None, dataset):
        raise ExportError(f"checkpoint was trained on {desc.get('dataset')!r}, not {dataset!r}")
    try:
        if desc["arch"] in ARCHITECTURES.names(local=True):
            spec = local_spec(desc["arch"], desc["num_classes"], dataset, desc.get("input_shape"),
                              **desc.get("kwargs", {}))
        else:
            spec = robustbench_spec(desc["arch"], desc["num_classes"], dataset, **desc.get("kwargs", {}))
    except (ValueError, TypeError) as exc:
        raise ExportError(str(exc)) from None
    return model, ckpt, file, dataset, spec


def _numbers(report: dict[str, Any] | str | Path | None, file: Path, which: str, dataset: str, eps: float,
             typed: tuple[float | None, float | None], external: bool, n_examples: int | None) -> Numbers:
    """The numbers: from the report of this checkpoint, or typed ones marked external; never a mix."""
    if external:
        if report is not None:
            raise ExportError("external numbers and an evaluation report exclude each other: give one")
        return external_numbers(*typed, n_examples)
    if any(v is not None for v in typed):
        raise ExportError("clean_acc/autoattack_acc typed by hand must be marked as measured elsewhere "
                          "(external_numbers=True, --external-numbers); else give the evaluation report")
    if report is None:
        raise ExportError("the numbers come from an evaluation report of this checkpoint (`art-adr evaluate` "
                          "writes evaluation.json; --report), or are marked external (--external-numbers)")
    numbers = numbers_from_report(report, _sha256(file), which, dataset, eps)
    if n_examples is not None and n_examples != numbers["n"]:
        raise ExportError(f"n_examples={n_examples} contradicts the evaluation report ({numbers['n']} test images)")
    return numbers


def _model_info(ckpt: dict[str, Any], dataset: str, numbers: Numbers, which: str, eps: float, leaderboard: bool,
                *, reported: float | None, additional_data: bool | None, footnote: str | None,
                paper_name: str | None, **info: Any) -> dict[str, Any]:
    """``model_info``: the numbers, the paper, and a footnote saying what a maintainer must know."""
    cfg = ckpt.get("config") or {}
    if additional_data is None:
        additional_data = bool(cfg.get("extra_data"))
    fields = {**paper_fields(cfg), **{k: v for k, v in info.items() if v is not None}}
    if paper_name:
        fields["name"] = paper_name
    notes = [footnote or default_footnote(which, float(cfg.get("ema_decay", 0.995)))]
    n = numbers["n"]
    if n < ROBUSTBENCH_N_EXAMPLES:
        notes.insert(0, f"Partial evaluation: {n} of the {ROBUSTBENCH_N_EXAMPLES} test images, "
                        "not RobustBench's protocol." if leaderboard else f"Evaluated on the first {n} test images.")
    if numbers["source"] == "external":
        notes.insert(0, "External numbers: supplied by the submitter, not measured by art-adr.")
    elif numbers["version"] != "standard":
        notes.insert(0, f"AutoAttack version {numbers['version']!r}, not 'standard'.")
    arch = ckpt["model"]["arch"]
    return model_info(dataset=dataset, architecture=ARCH_NAMES.get(arch, arch), clean_acc=numbers["clean"],
                      autoattack_acc=numbers["aa"], reported=reported, eps=eps, additional_data=additional_data,
                      footnote=" ".join(t for t in notes if t) or None, **fields)


def _texts(name: str, dataset: str, meta: dict[str, Any], spec: dict[str, Any], numbers: Numbers,
           leaderboard: bool) -> dict[str, str]:
    """Every text file of the bundle, by its key in :func:`bundle_paths`."""
    ctor = zoo_constructor(spec) if not spec.get("local") else spec
    texts = {"model_info": json.dumps(meta, indent=2) + "\n",
             "model_zoo": model_zoo_entry(name, dataset, ctor["import_line"], ctor["constructor"],
                                          leaderboard=leaderboard),
             "issue": new_model_issue(name, meta, eval_note=numbers["method"], n_examples=numbers["n"],
                                      own_architecture=bool(spec.get("local")), leaderboard=leaderboard),
             "loader": Path(standalone.__file__).read_text()}
    if numbers["report_text"] is not None:
        texts.update(report=numbers["report_text"], autoattack_log=numbers["log"])
    if spec.get("local"):
        texts["architecture"] = spec["source"]
    return texts


def _refuse_overwrite(out: Path, rel: dict[str, Path], texts: dict[str, str], overwrite: bool) -> None:
    """``ExportError`` before writing over this model's files, or over a shared file (``load_bundle.py``, an
    architecture file) whose text differs, unless ``overwrite``."""
    if overwrite:
        return
    for key, p in rel.items():
        target = out / p
        if not target.exists():
            continue
        shared = key in ("loader", "architecture")
        if not shared or not target.is_file() or target.read_text() != texts[key]:
            raise ExportError(f"refusing to overwrite {target} (pass overwrite=True / --overwrite)")


def _state(model: nn.Module, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights under the zoo entry's keys, on the CPU (art-adr's own keys for its own classes)."""
    if spec.get("local"):
        return {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    return export_state_dict(model.state_dict(), zoo_constructor(spec))


def _dataset_kwargs(ckpt: dict[str, Any], dataset: str) -> dict[str, Any]:
    cfg = ckpt.get("config") or {}
    return dict(cfg.get("dataset_kwargs") or {}) if cfg.get("dataset") == dataset else {}


def _sha256(path: Path) -> str:
    from ..evaluation import file_sha256

    return file_sha256(path)


def _write_bundle(out: Path, rel: dict[str, Path], state: dict[str, torch.Tensor], texts: dict[str, str],
                  spec: dict[str, Any], model: nn.Module, manifest: dict[str, Any]) -> None:
    """Stage the weights (checked), the texts and the manifest under ``out``, then move every file into place."""
    written = [k for k in rel if k in texts or k in ("weights", "manifest")]
    with _staging(out) as tmp:
        for p in rel.values():
            (tmp / p).parent.mkdir(parents=True, exist_ok=True)
        torch_save({"state_dict": state}, tmp / rel["weights"])
        bundled = _verify_weights(tmp / rel["weights"], spec, model)
        manifest.update(weights_sha256=_sha256(tmp / rel["weights"]),
                        report_sha256=None, reference=reference_logits(bundled, spec["input_shape"]))
        for key, text in texts.items():
            (tmp / rel[key]).write_text(text)
        if "report" in texts:
            manifest["report_sha256"] = _sha256(tmp / rel["report"])
        (tmp / rel["manifest"]).write_text(json.dumps(manifest, indent=1) + "\n")
        for key in written:
            (out / rel[key]).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel[key], out / rel[key])
        for key in set(rel) - set(written):  # an overwritten export's report and log, when this one has none
            (out / rel[key]).unlink(missing_ok=True)


def reference_logits(model: nn.Module, shape: tuple[int, ...] | list[int], seed: int = REFERENCE_SEED,
                     n: int = 2) -> dict[str, Any]:
    """``model``'s logits (on the CPU) on ``n`` uniform images drawn with ``seed``: what ``export --check`` compares
    a reloaded bundle with."""
    x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = copy.deepcopy(model).cpu().eval()(x)
    return {"seed": seed, "input_shape": list(shape), "logits": logits.tolist()}


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


def _zoo_model(spec: dict[str, Any]) -> nn.Module:
    """The zoo entry's constructor evaluated: RobustBench's classes, or the architecture file's own."""
    if spec.get("local"):
        ns: dict[str, Any] = {}
        exec(spec["source"], ns)  # noqa: S102 - our own generated source
        return eval(spec["constructor"], ns)  # noqa: S307
    ctor = zoo_constructor(spec)
    return build_zoo_model(ctor["import_line"], ctor["constructor"])


def _verify_weights(path: Path, spec: dict[str, Any], model: nn.Module) -> nn.Module:
    """Reload with ``weights_only=True`` into the zoo constructor, on the device of ``model``; logits must
    match ours (≤ 1e-5 relative: our forwards pool with ``adaptive_avg_pool2d``, RobustBench's with
    ``avg_pool2d(k)``, same sum up to float rounding; TF32 convolutions are off for the check). Returns the
    reloaded model."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    rb_model = _zoo_model(spec)
    try:
        rb_model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"exported weights do not load into the model-zoo constructor: {exc}") from None
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.rand((2, *spec["input_shape"]), generator=torch.Generator().manual_seed(0)).to(device)
    exact = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
             if device.type == "cuda" else contextlib.nullcontext())
    with torch.no_grad(), exact:
        ours, theirs = model.eval()(x), rb_model.to(device).eval()(x)
    diff = (ours - theirs).abs().max().item()
    if diff > 1e-5 * max(1.0, ours.abs().max().item()):
        raise ExportError(f"the model-zoo constructor gives different logits (max |Δ| = {diff:.3g})")
    return rb_model


def register_exported(bundle_dir: str | Path, name: str, dataset: str, threat_model: str = "Linf") -> None:
    """Add an exported entry to ``robustbench.model_zoo.model_dicts`` at run time, from its model-zoo text
    (evaluated in the namespace of ``robustbench/model_zoo/<dataset>.py``, an architecture file of the bundle
    imported under RobustBench's module name), so ``load_model`` finds it."""
    import importlib

    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    root = Path(bundle_dir)
    text = (root / "model_zoo" / dataset / threat_model / f"{name}.py").read_text()
    zoo = importlib.import_module(f"robustbench.model_zoo.{dataset}")
    ns = {**vars(zoo), **zoo_namespace(root, text)}
    key, value = eval(zoo_item(text), ns)  # noqa: S307
    value["gdrive_id"] = "local-export"  # never used: the .pt file is already in model_dir
    model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][key] = value
