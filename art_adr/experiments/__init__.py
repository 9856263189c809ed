"""The experiments built on training runs, each one resumable (finished runs reused, interrupted ones resumed,
evaluations cached in the run directories):

- :mod:`~art_adr.experiments.table1`: ``art-adr benchmark``, the paper's Table 1 (and Table 2 with +WA/+AWP):
  train each method × seed, evaluate best and final checkpoints, tabulate (:func:`run_benchmark`).
- :mod:`~art_adr.experiments.sweep`: ``art-adr sweep``, ADR's τ × λ grid selected on the hold-out (:func:`run_sweep`).
- :mod:`~art_adr.experiments.common`: what both share: planned runs and their training, histories, mean ± std.

(``benchmarks/`` at the top of the repository holds the speed scripts, not these.)
"""

from __future__ import annotations

from .common import (
    PlannedRun,
    ensure_trained,
    is_finished,
    log_table,
    mean_std,
    parse_seeds,
    read_history,
    train_planned,
)
from .sweep import (
    END_RULES,
    cell_name,
    format_sweep,
    grid_configs,
    heatmap_figure,
    plot_heatmap,
    run_sweep,
    score_run,
    select_cell,
    sweep_summary,
)
from .table1 import (
    AWP_RHO,
    CPU_DEFAULTS,
    DEFAULT_METHODS,
    METHODS,
    PAPER_TABLE1,
    aggregate_rows,
    evaluate_run,
    format_markdown,
    mean_history,
    method_label,
    plan_runs,
    plot_methods,
    reported_model,
    run_benchmark,
    seed_run_dir,
    write_table,
)

__all__ = ["PlannedRun", "ensure_trained", "is_finished", "log_table", "mean_std", "parse_seeds", "read_history",
           "train_planned", "END_RULES", "cell_name", "format_sweep", "grid_configs", "heatmap_figure",
           "plot_heatmap", "run_sweep", "score_run", "select_cell", "sweep_summary", "AWP_RHO", "CPU_DEFAULTS",
           "DEFAULT_METHODS", "METHODS", "PAPER_TABLE1", "aggregate_rows", "evaluate_run",
           "format_markdown", "mean_history", "method_label", "plan_runs", "plot_methods", "reported_model",
           "run_benchmark", "seed_run_dir", "write_table"]
