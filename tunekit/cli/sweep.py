"""``tunekit sweep``: search hyperparameters (and the method) with Optuna; every trial is an ordinary run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tunekit import config as config_mod
from tunekit.cli import cli, console, worker_setup
from tunekit.cli.run import config_flags, overrides_from_flags


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def trials_table(rows: list[dict[str, Any]], metric: str, best: int | None) -> Table:
    """The trials of a study as a rich table (the best one starred)."""
    fixed = {"number", "state", "value", "trainable_params", "train_seconds", "peak_memory_mb", "folder", "error"}
    params = [k for k in (rows[0] if rows else {}) if k not in fixed]
    table = Table(title=f"trials ({metric})", title_justify="left")
    for col in ("#", "state", metric, *params, "trainable", "train s"):
        table.add_column(col, justify="right" if col not in ("state",) else "left")
    for row in rows:
        star = " ★" if row["number"] == best else ""
        table.add_row(f"{row['number']}{star}", row["state"], _fmt(row["value"]), *(_fmt(row[p]) for p in params),
                      f"{row['trainable_params']:,}" if row.get("trainable_params") else "-", _fmt(row["train_seconds"]))
    return table


def _on_trial(metric: str) -> Any:
    def show(rec: Any) -> None:
        value = f" {metric}={rec.value:.4f}" if rec.value is not None else ""
        error = f" ({rec.error})" if rec.error else ""
        console.print(f"trial {rec.number}: {rec.state}{value}{error}", highlight=False)
    return show


@cli.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), help="Base YAML run config.")
@click.option("--space", "-s", "space_path", required=True, type=click.Path(dir_okay=False),
              help="YAML search space (see docs/sweeps.md).")
@click.option("--trials", "-n", type=int, required=True, help="Trials the study should have done (COMPLETE or PRUNED).")
@click.option("--workers", "-w", type=int, default=1, show_default=True, help="Worker processes sharing the study.")
@click.option("--storage", default=None, help="Optuna storage URL; default sqlite:///<sweep folder>/study.db.")
@click.option("--timeout", type=float, default=None, help="Start no new trial after this many seconds.")
@click.option("--name", default=None, help="Sweep name (and study name); default: the space file's name.")
@click.option("--root", default="sweeps", show_default=True, help="Folder that holds the sweep folders.")
@config_flags
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any base config key, e.g. --set method.r=16.")
def sweep(config_path: str | None, space_path: str, trials: int, workers: int, storage: str | None,
          timeout: float | None, name: str | None, root: str, sets: tuple[str, ...], **flags: Any) -> None:
    """Search a space of run configs for the best validation metric; trials go to ROOT/NAME/trial-<n>/."""
    from tunekit.sweep import outputs, space, study

    cfg = config_mod.load(config_path, overrides_from_flags(flags), list(sets))
    base = cfg.to_dict()
    base["output"] = {"dir": None, "overwrite": False}
    parsed = space.load(space_path, base)
    sweep_name = name or Path(space_path).stem
    plan = study.resolve(sweep_name, Path(root) / sweep_name, base, parsed, trials, storage, timeout)
    console.print(f"sweep {sweep_name!r}: {trials} trials, {plan.direction} {plan.metric}, storage {plan.storage}",
                  highlight=False)
    from tunekit.cli.progress import progress_listener

    def progress() -> list[Any]:
        return [progress_listener()] if console.is_terminal else []

    result = study.start(plan, workers, progress, _on_trial(plan.metric), worker_setup())
    written = outputs.write_all(result, plan.folder, plan.metric)
    best = outputs.best_trial(result)
    console.print(trials_table(written["rows"], plan.metric, best.number if best else None))
    if best is None:
        console.print("no trial finished; nothing to pick (run the same command again to continue).")
        return
    console.print(f"best: trial {best.number} {plan.metric}={best.value:.4f}", highlight=False)
    for path in [written["best"], written["csv"], *written["plots"]]:
        console.print(f"wrote {path}", highlight=False)


# Each trial is a fresh run in ROOT/NAME/trial-<n>/: the run flags that choose or reuse an output folder do not apply.
sweep.params = [p for p in sweep.params if p.name not in ("output", "resume", "overwrite")]
