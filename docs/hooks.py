"""MkDocs hook of the documentation site: every public class and function of the modules the API reference
documents must have a docstring of its own — a warning otherwise, which ``strict: true`` turns into a failed build;
and ``<!-- registries -->`` in a page becomes the tables of what is registered (attacks, methods, datasets,
architectures, loggers, launchers, recipes), read from the registries themselves at build time."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.art_adr")


def documented_modules(docs_dir: Path) -> list[str]:
    """The modules named by ``::: module`` lines of the API reference pages."""
    names: list[str] = []
    for page in sorted((docs_dir / "reference").glob("*.md")):
        names += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.M)
    return names


def undocumented(module_name: str) -> list[str]:
    """``module.name`` of each public class or function in ``module.__all__`` without a docstring of its own."""
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not (own or "").strip():
            missing.append(f"{module_name}.{name}")
    return missing


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split()).replace("``", "`")


def registry_tables() -> str:
    """The Markdown of every registry: one table each, generated (never written by hand)."""
    from art_adr.architectures import ARCHITECTURES
    from art_adr.attacks import ATTACKS
    from art_adr.config import list_recipes
    from art_adr.data import DATASETS
    from art_adr.launch import LAUNCHERS
    from art_adr.loggers import LOGGERS
    from art_adr.methods import METHODS
    from art_adr.tables import markdown_table

    parts = [("Attacks (`art_adr.attacks`: `evaluate/benchmark --attacks`; `train --val-attack` if it validates)",
              ["name", "label", "validates", "what"],
              [[f"`{n}`", a.label, "yes" if a.validates else "", a.help or _first_line(a.__doc__)]
               for n, a in ATTACKS.items()]),
             ("Training methods (`art_adr.methods`: `train --method`)", ["name", "label", "what"],
              [[f"`{n}`", m.label, _first_line(m.__doc__)] for n, m in METHODS.items()]),
             ("Datasets (`art_adr.data`: `--dataset`)", ["name", "classes", "shape"],
              [[f"`{n}`", str(d.num_classes), "×".join(map(str, d.shape))] for n, d in DATASETS.items()]),
             ("Architectures (`art_adr.architectures`: `--arch`)", ["name", "what", "exported as"],
              [[f"`{n}`", ARCHITECTURES.meta(n)["help"],
                "its own class file" if ARCHITECTURES.meta(n)["local"] else "RobustBench's class"]
               for n in ARCHITECTURES]),
             ("Loggers (`art_adr.loggers`: `--logger`)", ["name", "package", "install"],
              [[f"`{n}`", f"`{LOGGERS.meta(n)['package']}`", f"`{LOGGERS.meta(n)['install']}`"] for n in LOGGERS]),
             ("Launchers (`art_adr.launch`: `benchmark/sweep --launcher`)", ["name", "what"],
              [[f"`{n}`", LAUNCHERS.meta(n)["help"]] for n in LAUNCHERS])]
    recipes = list_recipes()
    parts.append((f"Recipes (`art-adr recipes`: `--recipe`; {len(recipes)})", ["name", "description"],
                  [[f"`{n}`", _first_line(str(d))] for n, d in recipes.items()]))
    return "\n\n".join(f"## {title}\n\n" + "\n".join(markdown_table(head, rows)) for title, head, rows in parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace("<!-- registries -->", registry_tables()) if "<!-- registries -->" in markdown \
        else markdown


def on_pre_build(config: Any, **kwargs: Any) -> None:
    docs_dir = Path(config["docs_dir"])
    modules = documented_modules(docs_dir)
    if not modules:
        log.warning("the API reference documents no module (docs/reference/*.md has no '::: module' line)")
    for module in modules:
        for name in undocumented(module):
            log.warning(f"{name} is public (in __all__) but has no docstring")
