"""The run report: one self-contained HTML page per run (``report.html``), and for several runs or a sweep.

``tunekit run`` writes ``<run>/report.html`` when it ends; ``tunekit report RUN [RUN...]`` writes one for any
run folders and sweep folders. The page needs no network: CSS inline, charts inline as SVG (matplotlib, the
``plots`` extra), sweep plots embedded as ``data:`` URIs. What a task's final evaluation saw comes from its
job's optional ``eval_details()`` (``tunekit.report.sections`` describes the generic section kinds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tunekit.errors import UsageError
from tunekit.report.details import EVAL_DETAILS_FILE, DetailsRecorder, write_atomic

REPORT_FILE = "report.html"

__all__ = ["EVAL_DETAILS_FILE", "REPORT_FILE", "DetailsRecorder", "build", "default_output", "write_report"]


def build(folders: Sequence[str | os.PathLike]) -> str:
    """The HTML page for run folders and sweep folders (each read before anything is written)."""
    from tunekit.report import load, render

    if not folders:
        raise UsageError("no folder to report on; pass one or more run folders (or a sweep folder).")
    runs, sweeps = [], []
    for folder in folders:
        path = Path(folder)
        if path.is_dir() and load.is_sweep(path) and not load.is_run(path):
            sweeps.append(load.read_sweep(path))
        else:
            runs.append(load.read_run(path))
    return render.render(runs, sweeps)


def default_output(folders: Sequence[str | os.PathLike]) -> Path:
    """Where the report goes by default: inside the folder for one folder, else ``report.html`` here."""
    return Path(folders[0]) / REPORT_FILE if len(folders) == 1 else Path(REPORT_FILE)


def write_report(folders: Sequence[str | os.PathLike], output: str | os.PathLike | None = None) -> Path:
    """Write the report of ``folders`` to ``output`` (default: :func:`default_output`) atomically; return its path."""
    page = build(folders)
    path = Path(output) if output is not None else default_output(folders)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.parent.is_dir():
        raise UsageError(f"cannot write the report to {str(path)!r}: the folder {str(path.parent)!r} does not exist; "
                         "create it or pass another -o FILE.")
    try:
        write_atomic(path, page)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {str(path)!r} ({exc.strerror}); pass another -o FILE.") from None
    return path
