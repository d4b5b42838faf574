"""Dataset formats for table-shaped files: csv, tsv, json, jsonl and parquet.

csv/tsv go through pandas (every cell read as text, so "007" stays "007" and empty cells stay
empty; tasks convert labels themselves); json/jsonl through the standard ``json`` module so a
broken record can be reported with its line; parquet through pyarrow. All return a
``datasets.Dataset`` with the file's columns, named "0", "1", ... when ``data.header`` is false.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tunekit.errors import DataError
from tunekit.hookspecs import hookimpl


def _check_file(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {path!r} does not exist; check the path given to --data / --val-data.")
    if not p.is_file():
        raise DataError(f"data path {path!r} is a folder, not a file; point --data at a file.")
    if p.stat().st_size == 0:
        raise DataError(f"data file {path!r} is empty; give a file with at least one row.")
    return p


def _to_dataset(records: list[dict[str, Any]] | None, path: str, columns: dict[str, list[Any]] | None = None) -> Any:
    import datasets
    import pyarrow as pa

    names = set(columns) if columns is not None else {k for r in records or [] for k in r}
    bad = sorted(n for n in names if not str(n).strip() or any(ord(ch) < 32 for ch in str(n)))
    if bad:  # Arrow mishandles such names (an empty one, or one holding a NUL byte)
        raise DataError(f"data file {path!r} has a field named {bad[0]!r}; give every field a visible name.")
    try:
        if columns is not None:
            table = datasets.Dataset.from_dict(columns)
        else:
            table = datasets.Dataset.from_list(records or [])
    except OverflowError:
        raise DataError(f"data file {path!r} holds a whole number too large for a 64-bit column; "
                        "write it as a string or a smaller number.") from None
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(
            f"data file {path!r} has records whose fields change type from row to row ({_short(exc)}); "
            "make each column hold one kind of value."
        ) from None
    if not table.column_names or len(table) == 0:
        raise DataError(f"data file {path!r} has records without any field; give every record its fields "
                        "(e.g. text and label).")
    return table


def _header_flag(data: Any) -> bool:
    return bool(getattr(data, "header", True))


class DelimitedFormat:
    """Comma- or tab-separated text with an optional header row."""

    def __init__(self, name: str, extensions: tuple[str, ...], sep: str, quoting: int) -> None:
        self.name = name
        self.extensions = extensions
        self.sep = sep
        self.quoting = quoting
        kind = "comma" if sep == "," else "tab"
        self.description = f"{kind}-separated values ({', '.join(extensions)}); `data.header=false` for files without a header"

    def read(self, path: str, data: Any) -> Any:
        import pandas as pd

        p = _check_file(path)
        header = _header_flag(data)
        try:
            frame = pd.read_csv(
                p, sep=self.sep, header=0 if header else None, dtype=str, keep_default_na=False,
                quoting=self.quoting, encoding="utf-8", skip_blank_lines=True,
            )
        except pd.errors.EmptyDataError:
            raise DataError(f"data file {path!r} has no rows; give a file with at least one row.") from None
        except pd.errors.ParserError as exc:
            raise DataError(
                f"data file {path!r} could not be parsed ({_short(exc)}); fix that row, or check the "
                f"separator and quoting ({self.name} expects {self.sep!r}-separated fields)."
            ) from None
        except UnicodeDecodeError as exc:
            raise DataError(f"data file {path!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
        if len(frame) == 0:
            raise DataError(f"data file {path!r} has a header but no rows; add data rows.")
        frame.columns = [str(c) for c in frame.columns]
        if header and len(frame.columns) == 1:
            other = next((sep for sep in (",", "\t", ";", "|") if sep != self.sep and sep in frame.columns[0]), None)
            if other is not None:
                raise DataError(
                    f"data file {path!r} has a single column {frame.columns[0]!r}: its fields look separated by "
                    f"{other!r}, but {self.name} files are read with {self.sep!r}; save it with {self.sep!r} "
                    "separators (or as .csv for commas, .tsv for tabs)."
                )
        if header:
            unnamed = [c for c in frame.columns if c.startswith("Unnamed: ")]
            if unnamed:
                raise DataError(
                    f"data file {path!r} has a header with an empty column name; name every column, "
                    "or read it without a header (--set data.header=false)."
                )
        return _to_dataset(None, path, {c: frame[c].tolist() for c in frame.columns})


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())


class JsonFormat:
    """A JSON file holding a list of records (or {"data": [...]}), one record per row."""

    name = "json"
    description = "JSON list of records, e.g. alpaca or chat (messages) files"
    extensions = (".json",)

    def read(self, path: str, data: Any) -> Any:
        p = _check_file(path)
        try:
            tree = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            if exc.pos > 0 and _looks_like_jsonl(p):
                return JsonLinesFormat().read(path, data)
            raise DataError(
                f"data file {path!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix it there."
            ) from None
        except UnicodeDecodeError as exc:
            raise DataError(f"data file {path!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
        if isinstance(tree, dict):
            lists = [k for k, v in tree.items() if isinstance(v, list)]
            if len(lists) == 1 and all(isinstance(r, dict) for r in tree[lists[0]]):
                tree = tree[lists[0]]
        if not isinstance(tree, list) or not all(isinstance(r, dict) for r in tree):
            raise DataError(
                f"data file {path!r} is not a JSON list of records; write it as [{{...}}, {{...}}] "
                "(one object per example), or name its format with --set data.format=NAME."
            )
        if not tree:
            raise DataError(f"data file {path!r} holds an empty list; give at least one record.")
        return _to_dataset(tree, path)


def _looks_like_jsonl(p: Path) -> bool:
    with p.open(encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


class JsonLinesFormat:
    """One JSON object per line."""

    name = "jsonl"
    description = "JSON lines: one record per line"
    extensions = (".jsonl", ".ndjson")

    def read(self, path: str, data: Any) -> Any:
        p = _check_file(path)
        records = []
        with p.open(encoding="utf-8") as f:
            try:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"data file {path!r} line {lineno} is not valid JSON ({exc.msg}); fix or remove that line."
                        ) from None
                    if not isinstance(record, dict):
                        raise DataError(
                            f"data file {path!r} line {lineno} is not a JSON object; write one {{...}} record per line."
                        )
                    records.append(record)
            except UnicodeDecodeError as exc:
                raise DataError(f"data file {path!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
        if not records:
            raise DataError(f"data file {path!r} has no records; give at least one JSON object per line.")
        return _to_dataset(records, path)


class ParquetFormat:
    """Apache Parquet table."""

    name = "parquet"
    description = "Apache Parquet table"
    extensions = (".parquet", ".pq")

    def read(self, path: str, data: Any) -> Any:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = _check_file(path)
        try:
            table = pq.read_table(p)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"data file {path!r} is not a readable Parquet file ({_short(exc)}); check the file.") from None
        if table.num_rows == 0:
            raise DataError(f"data file {path!r} has no rows; give a table with at least one row.")
        table = table.rename_columns([str(c) for c in table.column_names])
        return datasets.Dataset(table)


FORMATS = [
    DelimitedFormat("csv", (".csv",), ",", csv.QUOTE_MINIMAL),
    # GLUE-style tsv files quote nothing: a sentence may start with a quote mark.
    DelimitedFormat("tsv", (".tsv", ".tab"), "\t", csv.QUOTE_NONE),
    JsonFormat(),
    JsonLinesFormat(),
    ParquetFormat(),
]


@hookimpl
def register_dataset_formats(register: Any) -> None:
    for fmt in FORMATS:
        register(fmt)
