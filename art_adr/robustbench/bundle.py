"""What a RobustBench submission says: the ``model_info`` json (every field of RobustBench's schema), the filled
"[New Model]" issue, the paper fields, and the accuracies it reports (from an evaluation report or given)."""

from __future__ import annotations

import re
from typing import Any

from ..budget import format_eps

__all__ = ["ROBUSTBENCH_DATASETS", "THREAT_MODELS", "ROBUSTBENCH_N_EXAMPLES", "ADR_PAPER", "PLACEHOLDERS",
           "ARCH_NAMES", "NAME_RE", "FORBIDDEN_KEY_PARTS", "ExportError", "model_info", "new_model_issue",
           "paper_fields", "default_footnote", "check_n_examples", "CONSENT_LINES", "CHECKPOINT_HELP"]


ROBUSTBENCH_DATASETS = ("cifar10", "cifar100")


THREAT_MODELS = ("Linf",)


ROBUSTBENCH_N_EXAMPLES = 10_000  # RobustBench evaluates on the first 10 000 test images (the whole test set)


ADR_PAPER = {
    "name": "Annealing Self-Distillation Rectification Improves Adversarial Training",
    "link": "https://arxiv.org/abs/2305.12118",
    "authors": "Yu-Yu Wu, Hung-Jui Wang, Shang-Tse Chen",
    "venue": "ICLR 2024",
}


PLACEHOLDERS = {"link": "<PAPER URL>", "authors": "<AUTHORS>", "venue": "<VENUE>"}  # not the ADR paper's


ARCH_NAMES = {"resnet18": "ResNet-18", "preact-resnet18": "PreActResNet-18",
              "wrn-28-10": "WideResNet-28-10", "wrn-34-10": "WideResNet-34-10",
              "dm-wrn-28-10": "WideResNet-28-10", "dm-wrn-34-10": "WideResNet-34-10",
              "mlp": "MLP", "small-cnn": "SmallCNN", "conv-fc": "ConvFC", "conv-bn": "ConvBN"}


NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


FORBIDDEN_KEY_PARTS = ("model.", "module.")  # robustbench.utils.load_model strips these from every key


class ExportError(ValueError):
    """The checkpoint or arguments cannot make a valid RobustBench submission."""


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


CONSENT_LINES = (
    "The boxes below are yours to tick: art-adr leaves them empty.",
    "- \"add my models to the Model Zoo\": RobustBench's maintainers add the entry of model_zoo/ (and the file of "
    "model_zoo/architectures/, if any) to their repository, and `robustbench.utils.load_model` downloads your "
    "checkpoint from the link you give.",
    "- \"MIT license\": you release the weights under the MIT license (RobustBench's own); tick the custom-license "
    "box with a URL instead if you do not.",
)


CHECKPOINT_HELP = (
    "<URL: host models/{dataset}/Linf/{name}.pt where RobustBench can download it; its zoo entries name a Google "
    "Drive file by its id (`'gdrive_id'`, the part after /d/ of a share link open to anyone with the link), so "
    "upload the .pt to Google Drive, share it, and put the link here and the id in the entry's 'gdrive_id'>"
)


def new_model_issue(name: str, info: dict[str, Any], *, eval_note: str, checkpoint_url: str | None = None,
                    n_examples: int = ROBUSTBENCH_N_EXAMPLES, own_architecture: bool = False,
                    leaderboard: bool = True) -> str:
    """The RobustBench "[New Model]" issue template (.github/ISSUE_TEMPLATE/new-model.md), filled in: the consent
    boxes (Model Zoo, MIT license) left unticked with what each means, the checkpoint link explained (RobustBench
    hosts by ``gdrive_id``), a warning when ``n_examples`` is fewer than the full test set or when RobustBench
    has no leaderboard for the dataset."""
    url = checkpoint_url or CHECKPOINT_HELP.format(dataset=info["dataset"], name=name)
    own = "x" if own_architecture else " "
    head = "" if leaderboard else (
        f"> Not a submission: RobustBench has no L∞ leaderboard for {info['dataset']!r}. This bundle is in its "
        "format (model_info, model-zoo entry, weights) and loads with the bundle's load_bundle.py.\n\n")
    partial = (f"- **Warning**: partial evaluation, {n_examples} of the {ROBUSTBENCH_N_EXAMPLES} test images "
               "(RobustBench's protocol evaluates all of them; not a leaderboard result)\n"
               if leaderboard and n_examples < ROBUSTBENCH_N_EXAMPLES else "")
    return (
        f"Title: [New Model] {name}\n\n" + head +
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
        f"- **Checkpoint and code**: {url} (code: https://github.com/Trusted-AI/"
        "adversarial-robustness-toolbox + art-adr)\n"
        + (f"- **Footnote**: {info['footnote']}\n" if info.get("footnote") else "") + partial
        + "\n# Model Zoo:\n\n" + "\n".join(CONSENT_LINES) + "\n\n"
        "- [ ] I want to add my models to the Model Zoo (check if true)\n"
        f"- [{own}] I use an architecture that is **not** included among those in "
        "robustbench/model_zoo/architectures (check if true).\n"
        "- [ ] I agree to release my model(s) under MIT license (check if true) **OR**\n"
        "- [ ] I want my models to be released under a custom license, located here: (custom license URL here)\n"
    )


def default_footnote(which: str, decay: float = 0.995) -> str | None:
    """The "+WA" note for an exported EMA teacher, with the run's decay."""
    return f"+WA: weights of the EMA teacher (weight averaging, decay {decay:g})." if which == "teacher" else None


def paper_fields(cfg: dict[str, Any]) -> dict[str, str]:
    """``name``/``link``/``authors``/``venue`` defaults: the ADR paper for an ADR run (``adr`` true or absent
    from the run's config); for a run trained without ADR a neutral name ("PGD-AT (art-adr)", "TRADES
    (art-adr)", ...) and ``PLACEHOLDERS`` to fill in: such a model is not the ADR paper's."""
    if cfg.get("adr", True):
        return {k: ADR_PAPER[k] for k in ("name", "link", "authors", "venue")}
    from ..methods import METHODS

    method = str(cfg.get("method") or "at")
    title = METHODS.get(method).display_name() if method in METHODS else method.upper()
    return {"name": f"{title} (art-adr)", **PLACEHOLDERS}


def check_n_examples(n: int | None, dataset: str, allow_partial: bool, leaderboard: bool = True) -> int:
    """The number of test images behind the accuracies (``None``: the full test set); ``ExportError`` for a
    partial evaluation of a ``leaderboard`` dataset (a leaderboard claim) unless ``allow_partial``."""
    full = ROBUSTBENCH_N_EXAMPLES
    if n is None:
        return full
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= full:
        raise ExportError(f"n_examples must be an integer in [1, {full}] ({dataset} has {full} test images), "
                          f"got {n!r}")
    if n < full and leaderboard and not allow_partial:
        raise ExportError(f"the accuracies come from {n} of the {full} {dataset} test images; RobustBench's "
                          f"protocol evaluates all {full} (`art-adr evaluate --robustbench`). Pass --allow-partial "
                          "(allow_partial=True) to export anyway, marked as partial in model_info")
    return n
