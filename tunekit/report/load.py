"""Reading what the report shows: a run folder (config, summary, metrics, details, held-out answers) or a
sweep folder (trials table, best configuration, plots, trial runs).

A folder that is neither, or a file that cannot be read, raises a :class:`tunekit.errors.UsageError` /
:class:`~tunekit.errors.DataError` with one sentence naming the file and the fix.
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunekit.errors import DataError, UsageError
from tunekit.report import sections as sec
from tunekit.report.details import EVAL_DETAILS_FILE

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
HELDOUT_FILE = "heldout.jsonl"
PROVIDERS_FILE = "providers.json"
SWEEP_FILES = ("trials.csv", "best.yaml")


@dataclass
class RunData:
    """One run folder, read."""

    folder: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    providers: dict[str, Any] = field(default_factory=dict)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Lines about what could not be shown (a section left out, an unfinished run)."""

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    @property
    def metric(self) -> str | None:
        """The run's main metric: the one it kept the best weights by, else the first non-loss evaluation metric."""
        named = self.summary.get("metric_for_best") or (self.config.get("training") or {}).get("metric_for_best")
        if named:
            return str(named)
        final = self.summary.get("final_metrics") or {}
        keys = [k for k in final if k.startswith("eval_")] or [k for r in self.records for k in r if k.startswith("eval_")]
        return next((k for k in keys if "loss" not in k), keys[0] if keys else None)


@dataclass
class SweepData:
    """One sweep folder, read."""

    folder: Path
    columns: list[str]
    rows: list[list[str]]
    best_yaml: str | None
    plots: dict[str, str]
    """Plot file name -> ``data:image/png;base64,...`` URI."""
    trials: list[RunData]

    @property
    def name(self) -> str:
        return self.folder.name


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r} ({type(exc).__name__}: {exc}); check the file's permissions "
                        "or write the run folder again.") from None


def _json(path: Path, want: type) -> Any:
    try:
        value = json.loads(_text(path))
    except ValueError:
        raise DataError(f"{str(path)!r} is not valid JSON; the run folder is damaged, train the run again.") from None
    if not isinstance(value, want):
        raise DataError(f"{str(path)!r} does not hold a JSON {want.__name__}; the run folder is damaged, "
                        "train the run again.")
    return value


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line cut short (a killed run) is skipped."""
    out = []
    for line in _text(path).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _yaml(path: Path) -> dict[str, Any]:
    try:
        value = yaml.safe_load(_text(path))
    except yaml.YAMLError:
        raise DataError(f"{str(path)!r} is not valid YAML; the run folder is damaged, train the run again.") from None
    if not isinstance(value, dict):
        raise DataError(f"{str(path)!r} does not hold a configuration mapping; the run folder is damaged.")
    return value


def is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() or (folder / SUMMARY_FILE).is_file()


def is_sweep(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SWEEP_FILES)


def read_run(folder: str | Path) -> RunData:
    """Read a run folder written by ``tunekit run`` (finished or not)."""
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"{str(path)!r} is not a folder; pass a run folder written by `tunekit run` "
                         "or a sweep folder written by `tunekit sweep`.")
    if not is_run(path):
        raise UsageError(f"{str(path)!r} is not a tunekit run folder (no config.yaml or summary.json); pass the "
                         "folder `tunekit run` wrote.")
    config = _yaml(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else {}
    summary = _json(path / SUMMARY_FILE, dict) if (path / SUMMARY_FILE).is_file() else {}
    run = RunData(path, config, summary)
    if (path / METRICS_FILE).is_file():
        run.records = _jsonl(path / METRICS_FILE)
    if (path / PROVIDERS_FILE).is_file():
        run.providers = _json(path / PROVIDERS_FILE, dict)
    if (path / HELDOUT_FILE).is_file():
        run.heldout = _jsonl(path / HELDOUT_FILE)
    if (path / EVAL_DETAILS_FILE).is_file():
        run.details, skipped = sec.clean(_json(path / EVAL_DETAILS_FILE, list))
        run.notes.extend(skipped)
    if not summary:
        run.notes.append("the run has not finished (no summary.json): final figures are missing")
    return run


def _png_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r} ({exc.strerror}); check the file's permissions.") from None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def read_sweep(folder: str | Path) -> SweepData:
    """Read a sweep folder written by ``tunekit sweep``: trials.csv, best.yaml, its PNG plots and trial runs."""
    path = Path(folder)
    if not is_sweep(path):
        raise UsageError(f"{str(path)!r} is not a tunekit sweep folder (no trials.csv or best.yaml); pass the folder "
                         "`tunekit sweep` wrote.")
    columns: list[str] = []
    rows: list[list[str]] = []
    if (path / "trials.csv").is_file():
        table = list(csv.reader(_text(path / "trials.csv").splitlines()))
        columns, rows = (table[0], table[1:]) if table else ([], [])
    best = _text(path / "best.yaml") if (path / "best.yaml").is_file() else None
    plots = {p.name: _png_uri(p) for p in sorted(path.glob("*.png"))}
    return SweepData(path, columns, rows, best, plots, [read_run(t) for t in _trial_folders(path, columns, rows)])


def _trial_folders(path: Path, columns: list[str], rows: list[list[str]]) -> list[Path]:
    """The trials' run folders: trials.csv's ``folder`` column, else the ``trial-<n>`` folders of the sweep."""
    found: list[Path] = []
    if "folder" in columns:
        at = columns.index("folder")
        for row in rows:
            named = Path(row[at]) if at < len(row) and row[at] else None
            for candidate in (named, path / named.name if named else None):
                if candidate is not None and candidate.is_dir() and is_run(candidate):
                    found.append(candidate)
                    break
    if found:
        return found
    return sorted((p for p in path.glob("trial-*") if p.is_dir() and is_run(p)),
                  key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else 0)
