"""Sections of a task's evaluation details: the generic pieces a task hands the report.

A task's job may define ``eval_details() -> list[dict]`` (``JOB_OPTIONAL`` in ``tunekit.tasks.protocol``): what its
most recent ``evaluate`` saw, as plain JSON-able sections of three kinds the report renders without knowing the
task:

- ``table``: ``{"kind": "table", "title", "columns": [...], "rows": [[...], ...], "note"?}``;
- ``matrix``: ``{"kind": "matrix", "title", "labels": [...], "values": [[int, ...], ...], "rows_are",
  "columns_are", "note"?}`` (a square count matrix, e.g. a confusion matrix: rows true, columns predicted);
- ``examples``: a table whose cells hold longer text, ``{"kind": "examples", "title", "columns", "rows",
  "marks"?: ["good" | "bad" | "", ...], "note"?}`` (``marks`` colour whole rows).

The builders below make them; :func:`clean` checks sections read back from a run folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KINDS = ("table", "matrix", "examples")
MAX_ROWS = 200
"""Rows kept per section: a report stays small whatever the size of the evaluation set."""
MAX_TEXT = 600
"""Characters kept per text cell."""


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if value is None or isinstance(value, (int, bool)):
        return value
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[_cell(v) for v in row] for row in list(rows)[:MAX_ROWS]]


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str | None = None) -> dict[str, Any]:
    """A table section (numbers rounded to 4 places, at most ``MAX_ROWS`` rows)."""
    return {"kind": "table", "title": title, "columns": list(columns), "rows": _rows(rows), "note": note}


def examples(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], marks: Sequence[str] | None = None,
             note: str | None = None) -> dict[str, Any]:
    """An examples section: rows of text (inputs, expected and predicted answers); ``marks`` good/bad per row."""
    out = {"kind": "examples", "title": title, "columns": list(columns), "rows": _rows(rows), "note": note}
    if marks is not None:
        out["marks"] = [str(m) for m in list(marks)[:MAX_ROWS]]
    return out


def matrix(title: str, labels: Sequence[str], values: Sequence[Sequence[int]], rows_are: str = "true",
           columns_are: str = "predicted", note: str | None = None) -> dict[str, Any]:
    """A square count matrix (``values[i][j]``: items of ``labels[i]`` counted as ``labels[j]``)."""
    return {"kind": "matrix", "title": title, "labels": [str(x) for x in labels],
            "values": [[int(v) for v in row] for row in values], "rows_are": rows_are, "columns_are": columns_are,
            "note": note}


def prf_table(title: str, counts: Mapping[str, tuple[int, int, int]], name: str = "class",
              note: str | None = None) -> dict[str, Any]:
    """Precision, recall, F1 and support per name from ``{name: (true positives, predicted, gold)}``."""
    rows = []
    for key, (tp, predicted, gold) in counts.items():
        precision = tp / predicted if predicted else 0.0
        recall = tp / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append([key, precision, recall, f1, gold])
    return table(title, [name, "precision", "recall", "F1", "support"], rows, note)


def confusion_counts(labels: Sequence[str], predictions: Sequence[int], references: Sequence[int]) -> list[list[int]]:
    """The confusion matrix of label indices: ``[true][predicted]``."""
    values = [[0] * len(labels) for _ in labels]
    for p, r in zip(predictions, references, strict=True):
        values[r][p] += 1
    return values


def class_counts(labels: Sequence[str], values: Sequence[Sequence[int]]) -> dict[str, tuple[int, int, int]]:
    """``{label: (true positives, predicted, gold)}`` read off a confusion matrix (for :func:`prf_table`)."""
    return {name: (values[i][i], sum(row[i] for row in values), sum(values[i])) for i, name in enumerate(labels)}


def _problem(section: Any) -> str | None:
    """Why ``section`` cannot be rendered, or None."""
    if not isinstance(section, Mapping) or section.get("kind") not in KINDS:
        return "not a section of a known kind"
    if section["kind"] == "matrix":
        labels, values = section.get("labels"), section.get("values")
        if not isinstance(labels, list) or not isinstance(values, list) or len(values) != len(labels) or any(
                not isinstance(row, list) or len(row) != len(labels) for row in values):
            return "a matrix whose values are not square over its labels"
        return None
    columns, rows = section.get("columns"), section.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        return "a table without columns and rows"
    return None


def clean(sections: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The renderable sections and one line per section left out (a file edited by hand, a plugin's mistake)."""
    if not isinstance(sections, list):
        return [], ["the evaluation details are not a list of sections"]
    kept, skipped = [], []
    for i, section in enumerate(sections, start=1):
        problem = _problem(section)
        if problem:
            skipped.append(f"section {i} left out: {problem}")
        else:
            kept.append({"title": "", "note": None, "rows_are": "true", "columns_are": "predicted", **section})
    return kept, skipped
