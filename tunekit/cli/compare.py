"""``tunekit compare``: train several methods on the same data and budget and show one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tunekit import config as config_mod
from tunekit.cli import cli, console, worker_setup
from tunekit.cli.run import config_flags, overrides_from_flags


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def compare_table(rows: list[Any]) -> Table:
    """The comparison as a rich table: one row per method."""
    metric = rows[0].metric if rows else "metric"
    table = Table(title=f"methods compared on {metric}", title_justify="left")
    several = any(len(row.values) > 1 for row in rows)  # one seed has no spread: show no "± 0"
    for col in ("method", f"{metric} (mean ± std)" if several else metric, "seeds", "trainable params", "train s",
                "peak MB", "adapter"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in rows:
        value = f"{row.mean:.4f} ± {row.std:.4f}" if len(row.values) > 1 else f"{row.mean:.4f}"
        table.add_row(row.method, value, str(len(row.values)), f"{row.trainable_params:,}",
                      f"{row.train_seconds:.1f}", f"{row.peak_memory_mb:,.0f}", _bytes(row.adapter_bytes))
    return table


@cli.command()
@click.option("--methods", "method_list", required=True, help="Comma-separated method names, e.g. lora,pfeiffer,full.")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), help="Base YAML run config.")
@click.option("--seeds", type=int, default=1, show_default=True,
              help="Runs per method, with seeds training.seed, training.seed+1, ...")
@click.option("--metric", default=None, help="Metric to compare; default: the task's own (training.metric_for_best).")
@config_flags
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any base config key, e.g. --set training.max_steps=200.")
def compare(method_list: str, config_path: str | None, seeds: int, metric: str | None, sets: tuple[str, ...], **flags: Any) -> None:
    """Train each method on the same data and budget; tabulate metric, trainable parameters, time, memory, size."""
    from tunekit.sweep import compare as cmp

    methods = [m.strip() for m in method_list.split(",") if m.strip()]
    output = Path(flags.pop("output", None) or "compare")
    base = config_mod.load(config_path, overrides_from_flags(flags), list(sets)).to_dict()

    def show(method: str, seed: int, summary: dict[str, Any]) -> None:
        console.print(f"{method} seed {seed}: done in {summary.get('train_seconds', 0):.1f}s "
                      f"({summary['output_dir']})", highlight=False)

    rows = cmp.compare(base, methods, output, seeds, metric, bool(flags.get("overwrite")), show, worker_setup())
    console.print(compare_table(rows))
    for name in (cmp.CSV_FILE, cmp.JSON_FILE, cmp.PLOT_FILE):
        if (output / name).exists():
            console.print(f"wrote {output / name}", highlight=False)


# The methods come from --methods and each run starts fresh: drop --method and --resume; --output is the
# comparison's folder rather than one run's.
compare.params = [p for p in compare.params if p.name not in ("method", "resume")]
for _param in compare.params:
    if _param.name == "output":
        _param.help = "Folder for the runs (OUTPUT/<method>/seed-<n>/) and compare.csv/json/png; default ./compare."
