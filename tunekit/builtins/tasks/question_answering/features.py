"""Question/context pairs -> windowed token features with answer positions (through offset mappings).

A context longer than ``max_length`` is split into windows that overlap by ``stride`` tokens. Each
window knows its example, the character span of every context token (``None`` elsewhere), and, for
training, the token positions of the answer; a window that does not hold the whole answer, and an
unanswerable question, point at the first token (the CLS position), the SQuAD 2.0 convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunekit.errors import DataError


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[str]
    starts: list[int]


@dataclass
class QAFeatures:
    """Windowed features plus the examples they came from (what postprocessing needs)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        return self.items[i]


def _answers(value: Any, row: int) -> tuple[list[str], list[int]]:
    if value is None:
        return [], []
    if isinstance(value, dict):
        texts = list(value.get("text") or [])
        starts = list(value.get("answer_start") or [])
    elif isinstance(value, list):
        texts = [a.get("text") for a in value if isinstance(a, dict)]
        starts = [a.get("answer_start") for a in value if isinstance(a, dict)]
    else:
        raise DataError(f"row {row}: answers must be {{text: [...], answer_start: [...]}} or a list of such objects.")
    if len(texts) != len(starts) or any(s is None for s in starts):
        raise DataError(f"row {row}: every answer needs both text and answer_start; fix that row.")
    return [str(t) for t in texts], [int(s) for s in starts]


def examples_from_rows(rows: Any, need_answers: bool = True) -> list[Example]:
    """Examples from raw rows with question/context(/answers) columns (SQuAD reader or json/jsonl)."""
    columns = [str(c) for c in rows.column_names]
    required = ["question", "context"] + (["answers"] if need_answers else [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"the data does not fit question-answering: no {', '.join(missing)} column (columns: {', '.join(columns)}); "
            "give a SQuAD JSON file or records with question, context and answers."
        )
    out = []
    for i, row in enumerate(rows):
        texts, starts = _answers(row.get("answers"), i + 1) if need_answers else ([], [])
        context = row["context"]
        for text, start in zip(texts, starts, strict=True):
            if context[start:start + len(text)] != text:
                found = context.find(text)
                if found < 0:
                    raise DataError(
                        f"row {i + 1}: the answer {text[:40]!r} is not in its context; fix its text or answer_start."
                    )
        out.append(Example(str(row.get("id") or i), str(row["question"]), str(context), texts, starts))
    return out


def _answer_span(ex: Example) -> tuple[int, int] | None:
    if not ex.answers:
        return None
    text, start = ex.answers[0], ex.starts[0]
    if ex.context[start:start + len(text)] != text:
        start = ex.context.find(text)
    return start, start + len(text)


def make_features(tokenizer: Any, examples: list[Example], max_length: int, stride: int,
                  with_positions: bool = True) -> QAFeatures:
    """Tokenize examples into overlapping windows (question first, context truncated)."""
    if not examples:
        return QAFeatures([], [])
    questions = [ex.question.lstrip() for ex in examples]
    contexts = [ex.context for ex in examples]
    enc = tokenizer(
        questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
    )
    sample_map = enc.pop("overflow_to_sample_mapping")
    keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    items: list[dict[str, Any]] = []
    for f, ex_index in enumerate(sample_map):
        seq_ids = enc.sequence_ids(f)
        offsets = [tuple(o) if seq_ids[t] == 1 else None for t, o in enumerate(enc["offset_mapping"][f])]
        item: dict[str, Any] = {k: enc[k][f] for k in keep}
        item["feature_index"] = len(items)
        item["example_index"] = int(ex_index)
        item["offsets"] = offsets
        if with_positions:
            item["start_positions"], item["end_positions"] = _positions(offsets, _answer_span(examples[ex_index]))
        items.append(item)
    return QAFeatures(items, examples)


def _positions(offsets: list[tuple[int, int] | None], span: tuple[int, int] | None) -> tuple[int, int]:
    if span is None:
        return 0, 0
    start_char, end_char = span
    context = [t for t, o in enumerate(offsets) if o is not None]
    if not context:
        return 0, 0
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0  # the answer is not (wholly) in this window
    start = first
    while start <= last and offsets[start] is not None and offsets[start][1] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end] is not None and offsets[end][0] >= end_char:
        end -= 1
    return start, end
