"""Start/end logits of every window -> the best span per question, and the SQuAD 2.0 no-answer decision."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tunekit.builtins.tasks.question_answering.features import QAFeatures


@dataclass
class Answer:
    """The best span of one question, its "no answer" score and whether the question was left unanswered."""

    span: str  # the best span's text ("" when no window has a valid span)
    score: float  # its start + end logit (-inf without a span)
    span_start: int  # its character offset in the context (-1 without a span)
    null_score: float  # the lowest first-token (CLS) start + end logit over the question's windows
    abstain: bool = False

    @property
    def has_span(self) -> bool:
        return self.span_start >= 0

    @property
    def margin(self) -> float:
        """How far "no answer" beats the best span (null score - span score); +inf without a span."""
        return self.null_score - self.score if self.has_span else math.inf

    @property
    def text(self) -> str:
        """The prediction: the span, or "" when the question is left unanswered."""
        return "" if self.abstain or not self.has_span else self.span

    @property
    def start(self) -> int:
        return -1 if self.abstain or not self.has_span else self.span_start


def best_spans(features: QAFeatures, logits: dict[int, tuple[Sequence[float], Sequence[float]]], *,
               n_best: int, max_answer_length: int) -> list[Answer]:
    """The best span per example over all its windows (nothing decided about "no answer" yet).

    A span is valid when both ends are context tokens, end >= start and it is at most
    ``max_answer_length`` tokens long; its score is start logit + end logit. The no-answer score is
    the lowest CLS start+end over the windows.
    """
    by_example: dict[int, list[dict[str, Any]]] = {}
    for item in features.items:
        if item["feature_index"] in logits:
            by_example.setdefault(item["example_index"], []).append(item)
    out: list[Answer] = []
    for ex_index, example in enumerate(features.examples):
        best = Answer("", -math.inf, -1, math.inf)
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
                        best.span, best.score, best.span_start = example.context[char_start:char_end], score, char_start
        out.append(best)
    return out


def decide(answers: list[Answer], allow_no_answer: bool, null_threshold: float) -> list[Answer]:
    """Mark each answer unanswered when "no answer" is allowed and ``margin > null_threshold`` (SQuAD 2.0)."""
    for a in answers:
        a.abstain = allow_no_answer and a.margin > null_threshold
    return answers


def best_answers(features: QAFeatures, logits: dict[int, tuple[Sequence[float], Sequence[float]]], *,
                 n_best: int, max_answer_length: int, allow_no_answer: bool, null_threshold: float) -> list[Answer]:
    """:func:`best_spans` then :func:`decide`: one prediction per example."""
    spans = best_spans(features, logits, n_best=n_best, max_answer_length=max_answer_length)
    return decide(spans, allow_no_answer, null_threshold)
