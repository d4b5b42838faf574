"""Dataset format for SQuAD v1.1 / v2.0 JSON files (``{"version", "data": [{"title", "paragraphs": ...}]}``).

Each question becomes one row: ``id``, ``title``, ``context``, ``question``, ``answers``
(``{"text": [...], "answer_start": [...]}``, empty for unanswerable v2 questions) and ``is_impossible``.
The format is chosen for a .json file whose top level has the SQuAD structure (``detect``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunekit.errors import DataError
from tunekit.hookspecs import hookimpl


def _load(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {path!r} does not exist; check the path given to --data / --val-data.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"data file {path!r} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it there.") from None
    except UnicodeDecodeError:
        raise DataError(f"data file {path!r} is not UTF-8 text; save it as UTF-8.") from None


def _looks_like_squad(tree: Any) -> bool:
    return (
        isinstance(tree, dict)
        and isinstance(tree.get("data"), list)
        and bool(tree["data"])
        and isinstance(tree["data"][0], dict)
        and "paragraphs" in tree["data"][0]
    )


def _objects(value: Any, path: str, what: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects (absent means empty), or DataError naming ``what``."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DataError(f"data file {path!r}: {what} must be a list of JSON objects; fix that part of the file.")
    return value


class SquadFormat:
    """SQuAD-style JSON for extractive question answering."""

    name = "squad"
    description = "SQuAD v1.1/v2.0 JSON (articles -> paragraphs -> questions) for question answering"
    extensions = (".json",)

    def detect(self, path: str) -> bool:
        p = Path(path)
        try:
            with p.open(encoding="utf-8") as f:
                head = f.read(4096)
        except (OSError, UnicodeDecodeError):
            return False
        if '"paragraphs"' not in head and '"data"' not in head:
            return False
        try:
            return _looks_like_squad(_load(path))
        except DataError:
            return False

    def read(self, path: str, data: Any) -> Any:
        import datasets

        tree = _load(path)
        if not _looks_like_squad(tree):
            raise DataError(
                f"data file {path!r} is not SQuAD JSON (a top-level \"data\" list of articles with \"paragraphs\"); "
                "convert it, or give question/context/answers records as json/jsonl."
            )
        out = []
        for a, article in enumerate(_objects(tree["data"], path, "the \"data\" list")):
            title = article.get("title", "")
            for p, para in enumerate(_objects(article.get("paragraphs"), path, f"article {a + 1}'s paragraphs")):
                context = para.get("context")
                if not isinstance(context, str):
                    raise DataError(
                        f"data file {path!r}: article {a + 1}, paragraph {p + 1} has no context text; fix that paragraph."
                    )
                for q, qa in enumerate(_objects(para.get("qas"), path, f"article {a + 1}, paragraph {p + 1}'s qas")):
                    where = f"article {a + 1}, paragraph {p + 1}, question {q + 1}"
                    question = qa.get("question")
                    if not isinstance(question, str):
                        raise DataError(f"data file {path!r}: {where} has no question text; fix it.")
                    impossible = bool(qa.get("is_impossible", False))
                    answers = [] if impossible else _objects(qa.get("answers"), path, f"{where}'s answers")
                    texts, starts = [], []
                    for ans in answers:
                        start = ans.get("answer_start")
                        if not isinstance(ans.get("text"), str) or not isinstance(start, int) or isinstance(start, bool):
                            raise DataError(f"data file {path!r}: {where} has an answer without a text string and a "
                                            "whole-number answer_start; fix that answer.")
                        texts.append(ans["text"])
                        starts.append(start)
                    out.append({
                        "id": str(qa.get("id", f"{a}-{p}-{q}")),
                        "title": str(title),
                        "context": context,
                        "question": question,
                        "answers": {"text": texts, "answer_start": starts},
                        "is_impossible": impossible or not texts,
                    })
        if not out:
            raise DataError(f"data file {path!r} holds no questions; give a SQuAD file with at least one.")
        features = datasets.Features({
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {"text": datasets.Sequence(datasets.Value("string")),
                        "answer_start": datasets.Sequence(datasets.Value("int64"))},
            "is_impossible": datasets.Value("bool"),
        })
        try:
            return datasets.Dataset.from_list(out, features=features)
        except OverflowError:
            raise DataError(f"data file {path!r} has an answer_start too large for a 64-bit number; fix it.") from None


@hookimpl
def register_dataset_formats(register: Any) -> None:
    register(SquadFormat())
