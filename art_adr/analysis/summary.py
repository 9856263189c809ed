"""The analyses' results as JSON: plain types, per-example values summarised (means, medians, histograms)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .metrics import histogram

__all__ = ["to_json", "summarize"]


def to_json(obj: Any) -> Any:
    """Plain JSON types only: arrays and tensors to lists, NaN and infinities to ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (np.ndarray, Tensor)):
        return to_json(np.asarray(torch.as_tensor(obj).detach().cpu()).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def summarize(results: Mapping[str, Any], hist_bins: int = 30) -> dict[str, Any]:
    """JSON-ready summary: per-example entropies / JS as means, medians and histograms; landscapes in full."""
    out: dict[str, Any] = {"settings": dict(results["settings"]), "models": {}}
    for name, res in results["models"].items():
        m: dict[str, Any] = {}
        o = res.get("outputs")
        if o is not None:
            log_c = math.log(o["num_classes"])
            correct = np.asarray(o["correct"], dtype=bool)
            groups = {
                "clean": o["entropy_clean"], "adv": o["entropy_adv"],
                "correct": o["entropy_clean"][correct], "incorrect": o["entropy_clean"][~correct],
            }
            if "entropy_ood" in o:
                groups["ood"] = o["entropy_ood"]
            m["accuracy"], m["adv_accuracy"] = o["accuracy"], o["adv_accuracy"]
            m["ece_clean"], m["ece_adv"] = o["ece_clean"], o["ece_adv"]
            m["entropy"] = {
                k: {"n": int(len(v)), "mean": float(np.mean(v)) if len(v) else None,
                    "median": float(np.median(v)) if len(v) else None,
                    "hist": histogram(v, hist_bins, (0, log_c))}
                for k, v in groups.items()
            }
            m["entropy_max"] = log_c
            js = o["js"]
            m["js"] = {"mean": float(np.mean(js)), "median": float(np.median(js)),
                       "hist": histogram(js, hist_bins, (0, math.log(2)))}
            m["reliability_clean"], m["reliability_adv"] = o["reliability_clean"], o["reliability_adv"]
        if "weights" in res:
            m["weight_landscape"] = res["weights"]
        if "inputs" in res:
            m["input_landscape"] = [
                {"index": d["index"], "label": d["label"], "a": d["a"], "b": d["b"], "loss": d["loss"],
                 "mean_slope": float(np.mean(d["slope"]))} for d in res["inputs"]
            ]
        out["models"][name] = m
    return to_json(out)
