"""``tunekit compare``: several methods trained on the same data with the same budget, side by side.

Each (method, seed) is an ordinary run folder ``<output>/<method>/seed-<seed>/`` trained in a fresh process, so
its peak memory (the process's peak resident size) is its own and not the largest of the runs before it.
Everything but the method (and the seed) comes from the base config; ``training.lr`` stays the base config's
when it sets one, otherwise each method trains at its own suggested rate. Results: ``compare.csv``,
``compare.json`` and ``compare.png`` (the metric against trainable parameters) in the output folder.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunekit import config as config_mod
from tunekit.errors import UsageError
from tunekit.sweep.outputs import scatter_vs_params, write_csv
from tunekit.sweep.space import copy_tree, put

log = logging.getLogger("tunekit.sweep")

CSV_FILE = "compare.csv"
JSON_FILE = "compare.json"
PLOT_FILE = "compare.png"


@dataclass
class MethodRow:
    """One method's results over its seeds."""

    method: str
    metric: str
    values: list[float] = field(default_factory=list)
    trainable_params: int = 0
    train_seconds: float = 0.0
    """Mean over the seeds."""
    peak_memory_mb: float = 0.0
    """Largest over the seeds."""
    adapter_bytes: int = 0
    folders: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def flat(self) -> dict[str, Any]:
        """The row as plain values (for CSV and JSON)."""
        out = asdict(self)
        out.update(mean=self.mean, std=self.std, seeds=len(self.values))
        return out


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def plan(base: Mapping[str, Any], methods: Sequence[str], seeds: int, output: Path,
         metric: str | None = None, overwrite: bool = False) -> list[tuple[str, int, dict[str, Any]]]:
    """(method, seed, run config tree) for every run, each checked before any of them trains."""
    from tunekit.methods.protocol import make_options
    from tunekit.plugins import registries

    if not methods:
        raise UsageError("--methods is empty; name at least one method, e.g. --methods lora,full.")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {seeds}.")
    first_seed = config_mod.from_dict(base).training.seed
    runs = []
    for method in methods:
        for seed in range(first_seed, first_seed + seeds):
            tree = copy_tree(base)
            put(tree, "method.name", method)
            put(tree, "training.seed", seed)
            put(tree, "output.dir", str(output / method / f"seed-{seed}"))
            put(tree, "output.overwrite", overwrite)
            if metric:
                put(tree, "training.metric_for_best", metric)
            cfg = config_mod.from_dict(tree)
            make_options(registries().methods.get(method), cfg.method_options)
            runs.append((method, seed, tree))
    return runs


class _MetricName:
    """Listener that keeps the name of the metric the engine judged the run by."""

    name: str | None = None

    def on_train_end(self, result: Any) -> None:
        self.name = getattr(result, "metric_for_best", None)


def _one_run(tree: dict[str, Any]) -> dict[str, Any]:
    """Train one run (in a worker process) and return its summary, with the metric name."""
    from tunekit.runs.runner import run

    listener = _MetricName()
    result = run(tree, listeners=[listener])
    return {**result.summary, "metric_for_best": listener.name}


def _add(rows: dict[str, MethodRow], method: str, summary: Mapping[str, Any], metric: str | None) -> None:
    name = metric or summary.get("metric_for_best")
    final = summary.get("final_metrics", {})
    if not name or name not in final:
        raise UsageError(f"the {method} run has no metric {name!r} (it has {', '.join(sorted(final))}); "
                         "pass --metric with one of those.")
    row = rows.setdefault(method, MethodRow(method, name))
    row.values.append(float(final[name]))
    row.trainable_params = int(summary["trainable_params"])
    n = len(row.values)
    row.train_seconds = (row.train_seconds * (n - 1) + float(summary.get("train_seconds", 0.0))) / n
    row.peak_memory_mb = max(row.peak_memory_mb, float(summary.get("peak_memory_mb", 0.0)))
    row.adapter_bytes = folder_bytes(Path(summary["output_dir"]) / "adapter")
    row.folders.append(str(summary["output_dir"]))


def compare(base: Mapping[str, Any], methods: Sequence[str], output: Path, seeds: int = 1,
            metric: str | None = None, overwrite: bool = False,
            on_run: Callable[[str, int, dict[str, Any]], None] | None = None,
            initializer: Callable[[], None] | None = None) -> list[MethodRow]:
    """Train every method ``seeds`` times, one fresh process per run, and write the comparison into ``output``.

    ``initializer`` runs first in each run's process (the CLI quietens the libraries there as it does at home).
    """
    runs = plan(base, methods, seeds, output, metric, overwrite)
    rows: dict[str, MethodRow] = {}
    ctx = multiprocessing.get_context("spawn")
    for method, seed, tree in runs:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=initializer) as pool:
            summary = pool.submit(_one_run, tree).result()
        _add(rows, method, summary, metric)
        if on_run is not None:
            on_run(method, seed, summary)
    result = list(rows.values())
    write(result, output)
    return result


def write(rows: Sequence[MethodRow], output: Path) -> list[Path]:
    """compare.csv, compare.json and compare.png in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    flat = [row.flat() for row in rows]
    csv_rows = [{k: v for k, v in r.items() if k not in ("values", "folders")} for r in flat]
    written = [write_csv(csv_rows, output / CSV_FILE)]
    (output / JSON_FILE).write_text(json.dumps(flat, indent=2), encoding="utf-8")
    written.append(output / JSON_FILE)
    metric = rows[0].metric if rows else "metric"
    plot = scatter_vs_params([(r.method, float(r.trainable_params), r.mean) for r in rows], metric,
                             output / PLOT_FILE, errors=[r.std for r in rows])
    return written + ([plot] if plot else [])
