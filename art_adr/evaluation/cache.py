"""The one cache of evaluation results of a run's checkpoints, keyed by their SHA-256 and the attack settings.

:func:`cached_evaluation` is how ``art-adr benchmark`` (the test set) and ``art-adr sweep`` (hold-out AutoAttack)
evaluate a run's ``checkpoints/<tag>.pt``: one JSON file per model × attack × settings in the run directory,
named by :func:`cache_name` (``eval-student-n100-clean-aa-standard-s0.json``: the names of earlier versions, so
their caches still count), holding one entry per checkpoint tag with its SHA-256. An entry whose checkpoint
changed since is evaluated again; an entry without a SHA-256 (earlier versions) is trusted. The sweep's former
files (``sweep-aa-<which>-<tag>-n<N>-<version>.json``) are read when no entry of the new name exists, and so are
the files of the ``margin`` attack's former name, ``cw`` (``eval-...-clean-cw-...json``, key ``cw``):
:func:`margin_from_former_cw_file`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write
from .identity import file_sha256

__all__ = ["cache_name", "cached_evaluation", "margin_from_former_cw_file"]


def cache_name(which: str, n_examples: int | None, attack: str | None, version: str = "standard", seed: int = 0,
               split: str = "test", spec: Mapping[str, Any] | None = None) -> str:
    """Cache file of one model × one robust attack (``None``: clean only) of a run, e.g.
    ``eval-student-n100-clean-aa-standard-s0.json``. The AutoAttack version names only AutoAttack's files (PGD
    and CW do not depend on it); the hold-out split and changes to the run's attack (``spec``) add a part."""
    parts = ["clean"] + ([attack] if attack else [])
    where = "" if split == "test" else f"-{split}"
    changes = ""
    if spec:
        text = json.dumps(dict(spec), sort_keys=True, default=str)
        changes = "-spec" + hashlib.sha256(text.encode()).hexdigest()[:10]
    return (f"eval-{which}{where}-n{n_examples or 'all'}-{'-'.join(parts)}-{version if attack == 'aa' else 'standard'}"
            f"{changes}-s{seed}.json")


def _read(path: Path) -> dict[str, Any] | None:
    """A cache file's mapping; ``None`` when there is none or it is not a JSON mapping (damaged: stale)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):  # invalid JSON, not text (a pickle), unreadable
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid(cached: dict[str, Any], tag: str, attack: str | None) -> bool:
    """The cache's entry of ``tag`` is whole: a mapping with the accuracies of ``attack`` and the clean images,
    and the file says how many images (``n_examples``)."""
    entry, n = cached.get(tag), cached.get("n_examples")
    if not isinstance(entry, dict) or not _number(n) or n != int(n) or n < 1:
        return False
    digest = entry.get("sha256")
    return _number(entry.get("clean")) and (attack is None or _number(entry.get(attack))) \
        and (digest is None or isinstance(digest, str))


def _legacy_sweep(run_dir: Path, which: str, tag: str, n_examples: int | None, version: str) -> dict[str, Any] | None:
    """An entry of the sweep's former cache (``sweep-aa-...json``, hold-out AutoAttack at the run's seed; its
    on-disk key for the number of images is ``n_val``)."""
    old = _read(run_dir / f"sweep-aa-{which}-{tag}-n{n_examples or 'all'}-{version}.json")
    if old is None or not isinstance(old.get("n_val"), int):
        return None
    entry = {k: old[k] for k in ("epoch", "clean", "aa", "sha256", "norm", "eps") if k in old}
    return {"n_examples": old["n_val"], "entry": entry}


def margin_from_former_cw_file(run_dir: Path, tag: str, s: Mapping[str, Any]) -> dict[str, Any] | None:
    """An entry of the ``margin`` attack from a cache file written when it was called ``cw`` (the same attack,
    PGD on the CW margin: ``-clean-cw-`` in the file name, ``"cw"`` the key of its accuracy), under the new key."""
    old = _read(run_dir / cache_name(s["which"], s["n_examples"], "cw", s["version"], s["seed"], s["split"], s["spec"]))
    if old is None or not _valid(old, tag, "cw"):
        return None
    entry = {("margin" if k == "cw" else k): v for k, v in old[tag].items()}
    return {"n_examples": old["n_examples"], "entry": entry}


def _former(run_dir: Path, attack: str | None, tag: str, s: Mapping[str, Any]) -> dict[str, Any] | None:
    """An entry of ``tag`` in a cache file of an earlier version (the sweep's, or ``cw``'s for ``margin``)."""
    if attack == "margin":
        return margin_from_former_cw_file(run_dir, tag, s)
    if attack == "aa" and s["split"] == "holdout" and not s["spec"] and s["seed"] == s["run_seed"]:
        return _legacy_sweep(run_dir, s["which"], tag, s["n_examples"], s["version"])
    return None


def _current(entry: Mapping[str, Any] | None, checkpoint: Path) -> bool:
    """A cached entry still describes ``checkpoint``: same SHA-256 (entries without one are trusted)."""
    if entry is None:
        return False
    return entry.get("sha256") is None or entry["sha256"] == file_sha256(checkpoint)


def _entry(report: dict[str, Any], which: str) -> dict[str, Any]:
    """What the cache keeps of an evaluation report of one checkpoint."""
    model, info = report["models"][which], report["checkpoint_info"]
    entry = {"epoch": info["epoch"], **model["results"], "sha256": info["sha256"], "norm": report["norm"],
             "eps": report["eps"]}
    if "autoattack" in model:
        entry["autoattack_warnings"] = model["autoattack"]["warnings"]
        entry["autoattack_cumulative"] = model["autoattack"]["cumulative"]
    return entry


def _evaluate(run_dir: Path, tag: str, which: str, attack: str | None, data: Any, settings: Mapping[str, Any],
              **kw: Any) -> dict[str, Any]:
    from .pipeline import evaluate_checkpoint

    report = evaluate_checkpoint(run_dir / "checkpoints" / f"{tag}.pt", which=which,
                                 attacks=("clean", attack) if attack else ("clean",), data=data,
                                 aa_version=settings["version"], seed=settings["seed"], split=settings["split"],
                                 spec=settings["spec"], **kw)
    return _entry(report, which)


def _one_attack(run_dir: Path, attack: str | None, tags: Sequence[str], load: Any, settings: dict[str, Any],
                **kw: Any) -> dict[str, Any]:
    """The cache file of one attack, brought up to date for ``tags`` (written only when something ran)."""
    s = settings
    path = run_dir / cache_name(s["which"], s["n_examples"], attack, s["version"], s["seed"], s["split"], s["spec"])
    fresh = {"which": s["which"], "attacks": ["clean", *([attack] if attack else [])],
             "version": s["version"] if attack == "aa" else "standard"}
    cached = _read(path)
    damaged = path.is_file() and (cached is None or any(tag in cached and not _valid(cached, tag, attack)
                                                        for tag in tags))
    if damaged:  # a file or entry that does not parse or validate is stale: evaluated again, said once
        print(f"note: the evaluation cache {path} is damaged; evaluating again", file=sys.stderr)
    if cached is None:
        cached = fresh
    changed = False
    for tag in tags:
        checkpoint = run_dir / "checkpoints" / f"{tag}.pt"
        if _valid(cached, tag, attack) and _current(cached[tag], checkpoint):
            continue
        legacy = _former(run_dir, attack, tag, s)
        if legacy is not None and _current(legacy["entry"], checkpoint):
            if not _number(cached.get("n_examples")):
                cached["n_examples"] = legacy["n_examples"]
            cached[tag] = legacy["entry"]
            continue
        data = load()
        cached["n_examples"] = len(data.y)
        cached[tag] = _evaluate(run_dir, tag, s["which"], attack, data, s, **kw)
        changed = True
    if changed:
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(cached, indent=1)))
    return cached


def cached_evaluation(
    run_dir: str | os.PathLike, *, which: str, attacks: Sequence[str] = ("clean",), n_examples: int | None = None,
    version: str = "standard", seed: int = 0, split: str = "test", tags: Sequence[str] = ("best", "final"),
    spec: Mapping[str, Any] | None = None, device: str = "auto", batch_size: int = 256, progress: bool = True,
) -> dict[str, Any]:
    """Clean and robust accuracy (%) of a run's checkpoints ``tags`` under each of ``attacks``, evaluated through
    :func:`~art_adr.evaluation.evaluate_checkpoint` only where the cache has no current entry.

    Args:
        run_dir: a run directory (``config.yaml``, ``checkpoints/<tag>.pt``).
        which: ``"student"`` or ``"teacher"``. attacks: registered attacks (``clean`` always runs).
        n_examples: the first N images of ``split`` (``None``: all). version: AutoAttack version. seed: attack seed.
        split: ``"test"`` or ``"holdout"`` (the run's validation hold-out). tags: checkpoints (default best, final).
        spec: changes to the run's attack (as :func:`evaluate_checkpoint`'s ``spec`` dict; default none).
        device, batch_size, progress: as :func:`evaluate_checkpoint`.

    Returns:
        ``{"which", "attacks": ["clean", ...], "version", "seed", "split", "n_examples", <tag>: {"epoch", "clean",
        <attack>: %, "sha256", "norm", "eps", ...}}``; each model × attack file is the cache.
    """
    from ..runs import load_run_config
    from .testset import run_split

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    robust = [a for a in dict.fromkeys(attacks) if a != "clean"]
    data: list[Any] = []

    def load() -> Any:  # the images, loaded once and only when something is evaluated
        if not data:
            data.append(run_split(config, split, n_examples))
        return data[0]

    settings = {"which": which, "n_examples": n_examples, "version": version, "seed": int(seed), "split": split,
                "spec": dict(spec or {}), "run_seed": config.seed}
    out: dict[str, Any] = {"which": which, "attacks": ["clean", *robust], "version": version, "seed": int(seed),
                           "split": split, **{tag: {} for tag in tags}}
    for attack in robust or [None]:
        cached = _one_attack(run_dir, attack, tags, load, settings, device=device, batch_size=batch_size,
                             progress=progress)
        out["n_examples"] = cached["n_examples"]
        for tag in tags:
            out[tag].update(cached[tag])
    return out
