"""Held-out answer scoring (a run's base vs tuned answers, ``heldout.jsonl``) and the bundled demo data.

A held-out record is ``{"prompt": ..., "response": ..., "keywords": [...]}``. A generated answer counts
as correct when it contains every keyword (:func:`score`). The demo data (``tunekit/resources/demo``)
is a small set of questions about a fictional e-bike, used by ``tunekit run --method lora`` with no
other argument; :func:`load_demo` reads one of its splits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from tunekit.errors import DataError, UsageError

DEMO_SPLITS = ("train", "heldout")
HELDOUT_FILE = "heldout.jsonl"

_SPACES = re.compile(r"\s+")
# A comma between digit groups ("2,849") is a thousands separator: drop it so "2849" and "2,849" agree.
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _normalise(text: str) -> str:
    """Case-fold, collapse whitespace, drop thousands separators and a trailing period."""
    text = _SPACES.sub(" ", text.casefold()).strip()
    text = _THOUSANDS.sub("", text)
    return text.rstrip(".").rstrip()


def _contains(answer: str, keyword: str) -> bool:
    """Whether ``keyword`` occurs in ``answer`` as a whole token (both already normalised).

    A keyword that starts (ends) with a letter or digit must not continue a word on that side, and a
    keyword that starts (ends) with a digit must not continue a number: "1.8" is not found in "11.8",
    "1.85" or "21.8", "8" is not found in "1.8", and "gale" is not found in "nightingale".
    """
    before = r"(?<![\w])" if keyword[:1].isalnum() else ""
    if keyword[:1].isdigit():
        before += r"(?<!\d[.,])"
    after = r"(?![\w])" if keyword[-1:].isalnum() else ""
    if keyword[-1:].isdigit():
        after += r"(?![.,]\d)"
    return re.search(before + re.escape(keyword) + after, answer) is not None


def score(answer: str, keywords: Sequence[str]) -> bool:
    """Return True when ``answer`` contains every keyword.

    Matching ignores case, runs of whitespace, thousands separators and a trailing period, and treats
    numbers as whole tokens ("1.8" does not match "11.8").

    Raises:
        DataError: ``keywords`` is empty or holds an empty string (every answer would count as correct).
    """
    if isinstance(keywords, str):
        keywords = [keywords]
    wanted = [_normalise(str(k)) for k in keywords]
    if not wanted or not all(wanted):
        raise DataError(
            f"held-out keywords {list(keywords)!r} are empty; give every held-out record 1-2 non-empty keywords "
            "that a correct answer must contain."
        )
    text = _normalise(answer)
    return all(_contains(text, k) for k in wanted)


def accuracy(answers: Sequence[str], records: Sequence[dict[str, Any]]) -> float:
    """Fraction of ``answers`` that :func:`score` as correct against the keywords of the matching ``records``."""
    if len(answers) != len(records):
        raise UsageError(
            f"got {len(answers)} answers for {len(records)} held-out records; generate exactly one answer per record."
        )
    if not records:
        raise DataError("there are no held-out records to score; give at least one record with keywords.")
    return sum(score(a, r["keywords"]) for a, r in zip(answers, records, strict=True)) / len(records)


def demo_file(split: str) -> Traversable:
    """The packaged demo file for ``split`` ("train" or "heldout"), located through ``importlib.resources``."""
    if split not in DEMO_SPLITS:
        raise UsageError(f"unknown demo split {split!r}; use one of {', '.join(DEMO_SPLITS)}.")
    return resources.files("tunekit") / "resources" / "demo" / f"{split}.jsonl"


def load_demo(split: str) -> list[dict[str, Any]]:
    """Read the packaged demo split ("train" or "heldout") as a list of records.

    Train records have ``prompt`` and ``response``; held-out records also have ``keywords``.
    """
    path = demo_file(split)
    if not path.is_file():
        raise DataError(
            f"the demo data file {split}.jsonl is missing from the installed tunekit package; reinstall tunekit."
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"line {number} of the demo file {split}.jsonl is not valid JSON ({exc.msg}); reinstall tunekit."
                ) from exc
    return records


def heldout_rows(data: Any) -> list[dict[str, Any]] | None:
    """The held-out prompts of this run (``data.heldout`` or the training set's companion), validated."""
    from tunekit.data import heldout_companion, read_dataset

    name = data.heldout or heldout_companion(data.train)
    if not name:
        return None
    rows = [dict(r) for r in read_dataset(name, data)]
    for i, row in enumerate(rows, start=1):
        if not isinstance(row.get("prompt"), str) or not row.get("keywords"):
            raise DataError(
                f"held-out record {i} of {name!r} needs a `prompt` string and a non-empty `keywords` list; "
                "fix the file given to data.heldout."
            )
    return rows


def answers(job: Any, model: Any, rows: Sequence[dict[str, Any]]) -> list[str]:
    was_training = model.training
    model.eval()
    try:
        predictions = job.predict(model, [row["prompt"] for row in rows])
    finally:
        model.train(was_training)
    return [p if isinstance(p, str) else str(p.get("text") or p.get("label") or p) if isinstance(p, dict) else str(p)
            for p in predictions]


class HeldoutScorer:
    """Held-out scoring as a run listener: the base model answers before the method is applied, the tuned
    model when training ends; both sets are scored by keyword and written to ``heldout.jsonl`` in ``out``.

    The runner passes :meth:`before_method` to ``prepare`` and the scorer itself to the engine as a listener
    (``on_train_end`` fires on the main process once the best weights are restored). ``records`` and
    ``scores`` (for summary.json) are filled then.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], out: Path) -> None:
        self.rows = list(rows)
        self.out = out
        self.job: Any = None
        self.model: Any = None
        self.base: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.scores: dict[str, Any] = {}

    def before_method(self, job: Any, model: Any) -> None:
        """Answer with the base model (methods change this same model in place; it is scored again at the end)."""
        self.job, self.model = job, model
        self.base = answers(job, model, self.rows)

    def on_train_end(self, result: Any) -> None:
        tuned = answers(self.job, self.model, self.rows)
        for row, before, after in zip(self.rows, self.base, tuned, strict=True):
            self.records.append({
                "prompt": row["prompt"], "expected": row.get("response", ""), "keywords": list(row["keywords"]),
                "base_answer": before, "tuned_answer": after,
                "base_correct": score(before, row["keywords"]), "tuned_correct": score(after, row["keywords"]),
            })
        with open(self.out / HELDOUT_FILE, "w", encoding="utf-8") as fh:
            for record in self.records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        n = len(self.records)
        self.scores = {
            "heldout_examples": n,
            "base_heldout_accuracy": sum(r["base_correct"] for r in self.records) / n,
            "heldout_accuracy": sum(r["tuned_correct"] for r in self.records) / n,
        }
