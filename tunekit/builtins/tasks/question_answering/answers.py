"""Start/end logits of every window -> one answer text per question (with SQuAD 2.0 no-answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tunekit.builtins.tasks.question_answering.features import QAFeatures


@dataclass
class Answer:
    text: str
    score: float
    start: int  # character offset in the context, -1 for no answer
    null_score: float


def best_answers(features: QAFeatures, logits: dict[int, tuple[Sequence[float], Sequence[float]]], *,
                 n_best: int, max_answer_length: int, allow_no_answer: bool, null_threshold: float) -> list[Answer]:
    """The best span per example over all its windows.

    A span is valid when both ends are context tokens, end >= start and it is at most
    ``max_answer_length`` tokens long; its score is start logit + end logit. The no-answer score is
    the lowest CLS start+end over the windows; with ``allow_no_answer`` the empty answer wins when it
    beats the best span by more than ``null_threshold``.
    """
    by_example: dict[int, list[dict[str, Any]]] = {}
    for item in features.items:
        if item["feature_index"] in logits:
            by_example.setdefault(item["example_index"], []).append(item)
    out: list[Answer] = []
    for ex_index, example in enumerate(features.examples):
        best = Answer("", -np.inf, -1, np.inf)
        for item in by_example.get(ex_index, []):
            start_logits, end_logits = (np.asarray(x, dtype=np.float64) for x in logits[item["feature_index"]])
            offsets = item["offsets"]
            best.null_score = min(best.null_score, float(start_logits[0] + end_logits[0]))
            starts = np.argsort(start_logits)[::-1][:n_best]
            ends = np.argsort(end_logits)[::-1][:n_best]
            for s in starts:
                if s >= len(offsets) or offsets[s] is None:
                    continue
                for e in ends:
                    if e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(start_logits[s] + end_logits[e])
                    if score > best.score:
                        char_start, char_end = offsets[s][0], offsets[e][1]
                        best.text = example.context[char_start:char_end]
                        best.score = score
                        best.start = char_start
        if best.start < 0 or (allow_no_answer and best.null_score - best.score > null_threshold):
            best = Answer("", best.null_score, -1, best.null_score)
        out.append(best)
    return out
