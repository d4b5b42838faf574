"""Which columns of the raw rows hold the source and the target text, and reading them.

A column is named by ``task.source_column`` / ``task.target_column``, else by ``data.text_column`` /
``data.label_column``, else found among the usual names below. A dotted name picks a key of a mapping
column, as hub translation sets store pairs (``translation.en`` -> ``row["translation"]["en"]``).
"""

from __future__ import annotations

from typing import Any

from tunekit.errors import DataError, UsageError
from tunekit.tasks import rows

SOURCE_COLUMNS = ("source", "src", "input", "document", "article", "dialogue", "text", "sentence", "prompt")
TARGET_COLUMNS = ("target", "tgt", "summary", "highlights", "output", "response", "label")


def resolve(data: Any, wanted: Any, candidates: tuple[str, ...], what: str, setting: str) -> str:
    """The column (or dotted ``column.key``) holding the ``what`` text; DataError listing the columns if none."""
    present = rows.columns(data)
    if wanted is not None and str(wanted) not in present and "." in str(wanted):
        outer, key = str(wanted).split(".", 1)
        if outer in present:
            first = data[0][outer] if len(data) else {}
            if not isinstance(first, dict) or key not in first:
                keys = ", ".join(map(str, first)) if isinstance(first, dict) else "none, it is not a mapping"
                raise DataError(f"the column {outer!r} has no key {key!r} (keys: {keys}); set {setting} to one of those.")
            return str(wanted)
    column = rows.pick_column(data, wanted, candidates, what, setting)
    assert column is not None  # required=True
    return column


def value(record: dict[str, Any], column: str, where: str, setting: str) -> str:
    """The text in ``column`` (or dotted ``column.key``) of one record; DataError when missing or not text."""
    if column in record:
        found = record[column]
    elif "." in column and isinstance(record.get(column.split(".", 1)[0]), dict):
        outer, key = column.split(".", 1)
        found = record[outer].get(key)
    else:
        raise UsageError(f"{where} has no field {column!r} (fields: {', '.join(map(str, record))}); set {setting}.")
    if found is None:
        raise DataError(f"{where} has no text in {column!r}; fill it in or drop it.")
    return found if isinstance(found, str) else str(found)


def texts(data: Any, column: str, what: str, setting: str) -> list[str]:
    """Every row's ``what`` text from ``column`` (checked to exist in ``data``, which may be another split)."""
    resolve(data, column, (), what, setting)
    if column in rows.columns(data):
        return [value({column: v}, column, f"row {i + 1}", setting) for i, v in enumerate(data[column])]
    outer = column.split(".", 1)[0]
    return [value({outer: v}, column, f"row {i + 1}", setting) for i, v in enumerate(data[outer])]
