"""MkDocs hook of the documentation site: every public class and function of the modules the API reference
documents must have a docstring of its own — a warning otherwise, which ``strict: true`` turns into a failed build."""

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


def on_pre_build(config: Any, **kwargs: Any) -> None:
    docs_dir = Path(config["docs_dir"])
    modules = documented_modules(docs_dir)
    if not modules:
        log.warning("the API reference documents no module (docs/reference/*.md has no '::: module' line)")
    for module in modules:
        for name in undocumented(module):
            log.warning(f"{name} is public (in __all__) but has no docstring")
