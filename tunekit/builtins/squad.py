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
        for a, article in enumerate(tree["data"]):
            title = article.get("title", "")
            for p, para in enumerate(article.get("paragraphs") or []):
                context = para.get("context")
                if not isinstance(context, str):
                    raise DataError(
                        f"data file {path!r}: article {a + 1}, paragraph {p + 1} has no context text; fix that paragraph."
                    )
                for q, qa in enumerate(para.get("qas") or []):
                    where = f"article {a + 1}, paragraph {p + 1}, question {q + 1}"
                    question = qa.get("question")
                    if not isinstance(question, str):
                        raise DataError(f"data file {path!r}: {where} has no question text; fix it.")
                    impossible = bool(qa.get("is_impossible", False))
                    answers = [] if impossible else list(qa.get("answers") or [])
                    texts, starts = [], []
                    for ans in answers:
                        if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
                            raise DataError(f"data file {path!r}: {where} has an answer without text and answer_start.")
                        texts.append(str(ans["text"]))
                        starts.append(int(ans["answer_start"]))
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
        return datasets.Dataset.from_list(out, features=features)


@hookimpl
def register_dataset_formats(register: Any) -> None:
    register(SquadFormat())
