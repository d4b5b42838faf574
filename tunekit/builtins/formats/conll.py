"""Dataset format for CoNLL-style token files: one token per line, its label in the last column.

Sentences are separated by blank lines; ``-DOCSTART-`` lines are skipped. Each sentence becomes
one row ``{"tokens": [...], "tags": [...]}``. Other columns (part of speech, chunks) are ignored.
Picked for .conll/.iob/.bio/.ner files, and for CoNLL-2003's eng.train/.testa/.testb when their
content looks like CoNLL (``detect``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.errors import DataError
from tunekit.hookspecs import hookimpl


def _sentences(path: str) -> list[dict[str, list[str]]]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {path!r} does not exist; check the path given to --data / --val-data.")
    out: list[dict[str, list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            out.append({"tokens": list(tokens), "tags": list(tags)})
            tokens.clear()
            tags.clear()

    try:
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    flush()
                    continue
                if parts[0] == "-DOCSTART-":
                    flush()
                    continue
                if len(parts) < 2:
                    raise DataError(
                        f"data file {path!r} line {lineno} has a token but no label column; "
                        "write 'TOKEN ... LABEL' on every line (blank lines between sentences)."
                    )
                tokens.append(parts[0])
                tags.append(parts[-1])
    except UnicodeDecodeError:
        raise DataError(f"data file {path!r} is not UTF-8 text; save it as UTF-8.") from None
    flush()
    return out


OWN_EXTENSIONS = {".conll", ".iob", ".iob1", ".iob2", ".bio", ".ner"}


class ConllFormat:
    """CoNLL token-per-line files (CoNLL-2003 NER and the like)."""

    name = "conll"
    description = "CoNLL token-per-line files (label in the last column, blank line between sentences)"
    extensions = (".conll", ".iob", ".iob1", ".iob2", ".bio", ".ner", ".train", ".testa", ".testb", ".dev", ".test")

    def detect(self, path: str) -> bool:
        if Path(path).suffix.lower() in OWN_EXTENSIONS:
            return True  # only CoNLL uses these; read() reports what is wrong with the content
        try:
            with Path(path).open(encoding="utf-8") as f:
                lines = [line.split() for _, line in zip(range(50), f, strict=False)]
        except (OSError, UnicodeDecodeError):
            return False
        filled = [parts for parts in lines if parts and parts[0] != "-DOCSTART-"]
        if not filled:
            return False
        widths = {len(parts) for parts in filled}
        return len(widths) == 1 and widths.pop() >= 2

    def read(self, path: str, data: Any) -> Any:
        import datasets

        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise DataError(f"data file {path!r} is empty; give a file with at least one sentence.")
        rows = _sentences(path)
        if not rows:
            raise DataError(f"data file {path!r} holds no sentences; give tokens one per line with their labels.")
        return datasets.Dataset.from_list(rows)


@hookimpl
def register_dataset_formats(register: Any) -> None:
    register(ConllFormat())
