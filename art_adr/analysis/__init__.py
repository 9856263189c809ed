"""Output-distribution, calibration and loss-landscape analyses (Wu et al. 2024, §3.2, §5.5, App. E).

- :mod:`~art_adr.analysis.metrics`: entropy, JS divergence, ECE and the reliability curve, on a model's logits
  and PGD examples (:func:`output_analysis`).
- :mod:`~art_adr.analysis.landscapes`: the weight loss landscape (Fig. 4) and the input loss landscape (Fig. 7).
- :mod:`~art_adr.analysis.images`: images fitted to a model (:func:`adapt_images`), the offline OOD set.
- :mod:`~art_adr.analysis.pipeline`: :func:`analyze_models`, every analysis on several models, comparably.
- :mod:`~art_adr.analysis.summary`: the results as JSON (:func:`summarize`, :func:`to_json`).
- :mod:`~art_adr.analysis.plots`: one PNG per analysis (:func:`plot_all`).
"""

from __future__ import annotations

from .images import adapt_images, digits_ood
from .landscapes import (
    filter_normalized_direction,
    input_landscape,
    perturbed_weights,
    surface_gradient,
    weight_landscape,
)
from .metrics import (
    adversarial_examples,
    entropy,
    expected_calibration_error,
    histogram,
    js_divergence,
    output_analysis,
    predict_logits,
    reliability_curve,
    robust_loss,
)
from .pipeline import ANALYSES, analysis_settings, analyze_models
from .plots import (
    plot_all,
    plot_calibration,
    plot_entropy_ood,
    plot_entropy_pairs,
    plot_input_landscape,
    plot_js,
    plot_weight_landscape,
    slope_norm,
    step_histogram,
)
from .summary import summarize, to_json

__all__ = [
    "entropy",
    "js_divergence",
    "expected_calibration_error",
    "reliability_curve",
    "histogram",
    "filter_normalized_direction",
    "perturbed_weights",
    "predict_logits",
    "adversarial_examples",
    "robust_loss",
    "weight_landscape",
    "input_landscape",
    "surface_gradient",
    "adapt_images",
    "digits_ood",
    "output_analysis",
    "analyze_models",
    "analysis_settings",
    "ANALYSES",
    "to_json",
    "summarize",
    "plot_all",
    "plot_entropy_ood",
    "plot_entropy_pairs",
    "plot_js",
    "plot_calibration",
    "plot_weight_landscape",
    "plot_input_landscape",
    "slope_norm",
    "step_histogram",
]
