"""The figures of the official SQuAD 2.0 evaluation, computed from the spans and their "no answer" margins.

Written here rather than taken from the ``evaluate`` library (which fetches its metric code from the hub
at run time, see ``tunekit.tasks.metrics``). The definitions follow the official script:

- ``exact_match``/``f1`` and their ``total``: every question's score, best over its gold answers, in percent;
  an unanswerable question scores 1 only for an empty prediction;
- ``HasAns_*`` and ``NoAns_*``: the same over the answerable and the unanswerable questions (a group with
  no question is left out);
- ``best_exact``/``best_f1`` and their ``_thresh``: the best score over every threshold ``t``, where a
  question is left unanswered when ``null_score - best_span_score > t``. The threshold reported is the
  margin of the last question still answered. Where leaving every question unanswered scores best, it is
  just below the smallest margin (the official script reports 0.0 there, which would not reproduce the
  score); questions of equal margin are answered or not together, and a threshold must beat the best so far by
  more than rounding error (summed F1 fractions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from tunekit.builtins.tasks.question_answering.answers import Answer
from tunekit.tasks.metrics import normalize_answer, squad_exact, squad_f1


@dataclass
class Scored:
    """One question: whether it has an answer, its prediction's scores, and its scores answered / unanswered."""

    has_answer: bool
    margin: float
    exact: float
    f1: float
    answered: tuple[float, float]  # (exact, f1) of the best span
    unanswered: tuple[float, float]  # (exact, f1) of the empty prediction


def _scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    return max(squad_exact(prediction, g) for g in golds), max(squad_f1(prediction, g) for g in golds)


def score_questions(answers: Sequence[Answer], golds: Sequence[list[str]]) -> list[Scored]:
    """Score each decided answer against its gold texts (an empty list: unanswerable)."""
    out = []
    for answer, texts in zip(answers, golds, strict=True):
        gold = [t for t in texts if normalize_answer(t)] or [""]
        out.append(Scored(bool(texts), answer.margin, *_scores(answer.text, gold),
                          answered=_scores(answer.span, gold), unanswered=_scores("", gold)))
    return out


def best_threshold(rows: Sequence[Scored], which: int) -> tuple[float, float]:
    """The best total (percent) of score ``which`` (0 exact, 1 F1) over no-answer thresholds, and its threshold."""
    if not rows:
        return 0.0, 0.0
    order = sorted(rows, key=lambda r: r.margin)
    total = sum(r.unanswered[which] for r in rows)  # threshold below every margin: nothing answered
    best = total
    best_thresh = math.nextafter(order[0].margin, -math.inf) if math.isfinite(order[0].margin) else 0.0
    i = 0
    while i < len(order) and math.isfinite(order[i].margin):
        margin = order[i].margin
        while i < len(order) and order[i].margin == margin:
            total += order[i].answered[which] - order[i].unanswered[which]
            i += 1
        if total > best + 1e-9:  # F1 fractions summed in another order may differ in the last bits
            best, best_thresh = total, margin
    return 100.0 * best / len(rows), best_thresh


def _group(rows: Sequence[Scored], prefix: str) -> dict[str, float]:
    if not rows:
        return {}
    return {f"{prefix}exact": 100.0 * sum(r.exact for r in rows) / len(rows),
            f"{prefix}f1": 100.0 * sum(r.f1 for r in rows) / len(rows),
            f"{prefix}total": float(len(rows))}


def squad_v2_report(answers: Sequence[Answer], golds: Sequence[list[str]]) -> dict[str, float]:
    """Overall, HasAns and NoAns exact/F1 with counts, and the best exact/F1 with their thresholds."""
    rows = score_questions(answers, golds)
    overall = _group(rows, "")
    out = {"exact_match": overall.get("exact", 0.0), "f1": overall.get("f1", 0.0), "total": float(len(rows))}
    out.update(_group([r for r in rows if r.has_answer], "HasAns_"))
    out.update(_group([r for r in rows if not r.has_answer], "NoAns_"))
    out["best_exact"], out["best_exact_thresh"] = best_threshold(rows, 0)
    out["best_f1"], out["best_f1_thresh"] = best_threshold(rows, 1)
    return out
