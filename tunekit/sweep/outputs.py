"""What a sweep leaves in its folder besides the trials: ``best.yaml``, ``trials.csv`` and the plots.

- ``best.yaml``: the best trial's full run config (its seed included) without its output folder, so
  ``tunekit run --config best.yaml --output DIR`` trains the same run again;
- ``trials.csv``: one row per trial (number, state, value, parameters, trainable parameters, seconds);
- ``history.png`` (optimisation history), ``importances.png`` (parameter importances, from two finished
  trials on) and ``metric_vs_params.png`` (metric against trainable parameters), when matplotlib is installed.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tunekit import config as config_mod

log = logging.getLogger("tunekit.sweep")

BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
HISTORY_PLOT = "history.png"
IMPORTANCE_PLOT = "importances.png"
PARAMS_PLOT = "metric_vs_params.png"
ATTRS = ("trainable_params", "train_seconds", "peak_memory_mb", "folder", "error")


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One plain row per trial: number, state, value, each parameter, and the run's figures."""
    names: list[str] = []
    for trial in study.get_trials(deepcopy=False):
        names.extend(k for k in trial.params if k not in names)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "value": trial.value}
        row.update({name: trial.params.get(name) for name in names})
        row.update({attr: trial.user_attrs.get(attr) for attr in ATTRS})
        rows.append(row)
    return rows


def best_trial(study: Any) -> Any | None:
    """The best COMPLETE trial, or None when no trial has finished."""
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def write_best(study: Any, folder: Path) -> Path | None:
    """``best.yaml`` from the best trial's config.yaml: the same config with no output folder and no resume."""
    trial = best_trial(study)
    if trial is None:
        return None
    run_config = Path(trial.user_attrs["folder"]) / "config.yaml"
    tree = config_mod.read_yaml(run_config)
    tree.setdefault("output", {}).update(dir=None, overwrite=False)
    tree.setdefault("training", {})["resume"] = False
    path = folder / BEST_FILE
    header = (f"# The best trial of the sweep ({trial.number}, {study.study_name}): value {trial.value!r}.\n"
              f"# Train it again with: tunekit run --config {path} --output DIR\n")
    path.write_text(header + yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Rows of plain values as a CSV file (the union of their keys as columns, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows([{k: "" if row.get(k) is None else row.get(k) for k in columns} for row in rows])
    return path


def scatter_vs_params(points: Sequence[tuple[str, float, float]], metric: str, path: Path,
                      errors: Sequence[float] | None = None) -> Path | None:
    """Plot (label, trainable parameters, metric) points, trainable parameters on a log axis; None without matplotlib."""
    try:
        from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot alone
    except ImportError:
        log.info("matplotlib is not installed; %s not written", path.name)
        return None
    if not points:
        return None
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    ax.errorbar(xs, ys, yerr=list(errors) if errors else None, fmt="o", capsize=3)
    for label, x, y in points:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _optuna_plot(kind: str, study: Any, path: Path) -> Path | None:
    """An ``optuna.visualization.matplotlib`` plot saved to ``path``; None when it cannot be drawn."""
    try:
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        log.info("matplotlib is not installed; %s not written", path.name)
        return None
    with plt.rc_context():  # optuna switches pyplot to its own style; keep it from outliving this plot
        try:
            ax = getattr(ovm, kind)(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importances over parameters no two trials share
            log.info("%s not written: %s", path.name, exc)
            return None
        fig = ax.figure
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
    return path


def write_plots(study: Any, folder: Path, metric: str) -> list[Path]:
    """The history, importance and metric-vs-parameters plots that can be drawn."""
    import warnings

    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        if complete:
            written.append(_optuna_plot("plot_optimization_history", study, folder / HISTORY_PLOT))
        if len(complete) >= 2:
            written.append(_optuna_plot("plot_param_importances", study, folder / IMPORTANCE_PLOT))
    points = [(f"#{t.number}", float(t.user_attrs["trainable_params"]), float(t.value)) for t in complete
              if t.user_attrs.get("trainable_params")]
    written.append(scatter_vs_params(points, metric, folder / PARAMS_PLOT))
    return [p for p in written if p is not None]


def write_all(study: Any, folder: Path, metric: str) -> dict[str, Any]:
    """Every output; returns the rows and the paths written (for the CLI to show)."""
    rows = trial_rows(study)
    return {"rows": rows, "best": write_best(study, folder), "csv": write_csv(rows, folder / TRIALS_FILE),
            "plots": write_plots(study, folder, metric)}
