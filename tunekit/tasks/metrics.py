"""Evaluation metrics for the built-in tasks.

Written here rather than taken from the ``evaluate`` library because ``evaluate`` downloads each
metric's code from the Hugging Face hub at run time, which tunekit cannot rely on (offline
machines, reproducible runs). Each function is small and follows the published definition:

- accuracy, macro-averaged F1 and Matthews correlation (multi-class form, Gorodkin 2004);
- SQuAD exact match and token F1 with the official answer normalisation (lower case, drop
  punctuation, drop the articles a/an/the, collapse white space), best over the gold answers;
- entity-level precision/recall/F1 over IOB1, IOB2 (and IOBES) tag sequences, counted the way
  CoNLL's evaluation script counts chunks (an entity is right only if type and both ends match).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Sequence

# --- classification -------------------------------------------------------------------------


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Fraction of positions where prediction and reference agree (0.0 for empty input)."""
    if not references:
        return 0.0
    return sum(int(p == r) for p, r in zip(predictions, references, strict=True)) / len(references)


def _confusion(predictions: Sequence[int], references: Sequence[int]) -> tuple[list[int], dict[tuple[int, int], int]]:
    classes = sorted(set(predictions) | set(references))
    return classes, Counter(zip(references, predictions, strict=True))


def f1_macro(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over every class seen in predictions or references."""
    classes, counts = _confusion(predictions, references)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = counts.get((c, c), 0)
        predicted = sum(n for (_, p), n in counts.items() if p == c)
        actual = sum(n for (r, _), n in counts.items() if r == c)
        scores.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
    return sum(scores) / len(scores)


def matthews_correlation(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation coefficient, multi-class generalisation; 0.0 when undefined."""
    n = len(references)
    if n == 0:
        return 0.0
    classes, counts = _confusion(predictions, references)
    correct = sum(counts.get((c, c), 0) for c in classes)
    pred_totals = {c: sum(v for (_, p), v in counts.items() if p == c) for c in classes}
    true_totals = {c: sum(v for (r, _), v in counts.items() if r == c) for c in classes}
    cov_pt = correct * n - sum(pred_totals[c] * true_totals[c] for c in classes)
    cov_pp = n * n - sum(v * v for v in pred_totals.values())
    cov_tt = n * n - sum(v * v for v in true_totals.values())
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return cov_pt / math.sqrt(cov_pp * cov_tt)


# --- SQuAD ----------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # no-answer: right only if both are empty
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, best over each question's gold answers.

    ``golds`` maps question id to its answer texts (an empty list means unanswerable, whose only
    right prediction is the empty string). When both kinds occur, ``HasAns_*`` and ``NoAns_*``
    breakdowns are added as in the SQuAD 2.0 script.
    """
    rows: dict[str, tuple[float, float, bool]] = {}
    for qid, answers in golds.items():
        pred = predictions.get(qid, "")
        gold = [a for a in answers if normalize_answer(a)] or [""]
        rows[qid] = (
            max(squad_exact(pred, g) for g in gold),
            max(squad_f1(pred, g) for g in gold),
            bool(answers and gold != [""]),
        )
    out = _mean_scores(list(rows.values()), "")
    has = [r for r in rows.values() if r[2]]
    no = [r for r in rows.values() if not r[2]]
    if has and no:
        out.update(_mean_scores(has, "HasAns_"))
        out.update(_mean_scores(no, "NoAns_"))
    return out


def _mean_scores(rows: list[tuple[float, float, bool]], prefix: str) -> dict[str, float]:
    n = max(len(rows), 1)
    return {
        f"{prefix}exact_match": 100.0 * sum(r[0] for r in rows) / n,
        f"{prefix}f1": 100.0 * sum(r[1] for r in rows) / n,
    }


# --- entity-level (CoNLL) -------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    if tag in ("O", "") or tag is None:
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIESLU":
        prefix, kind = tag[0], tag[2:]
        return {"L": "E", "U": "S"}.get(prefix, prefix), kind
    return "I", tag  # a bare type name counts as inside that type


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, start, end-exclusive) chunks in one tag sequence, IOB1/IOB2/IOBES alike.

    A chunk starts at B-/S-, or at I-/E- after O, after another type, or after a chunk that ended
    (E-/S-); so IOB1 (B- only between two same-type chunks) and IOB2 (B- on every first token) read
    the same, and a stray I- after O starts a chunk as CoNLL's script does.
    """
    found: set[tuple[str, int, int]] = set()
    start, kind = -1, ""
    prev_prefix = "O"
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, typ = _split_tag(tag)
        begins = prefix in ("B", "S") or (
            prefix in ("I", "E") and (prev_prefix in ("O", "E", "S") or typ != kind)
        )
        if start >= 0 and (prefix == "O" or begins):
            found.add((kind, start, i))
            start, kind = -1, ""
        if begins:
            start, kind = i, typ
        if prefix in ("E", "S") and start >= 0:
            found.add((kind, start, i + 1))
            start, kind = -1, ""
        prev_prefix = prefix
    return found


def entity_scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 plus token accuracy over sentences of tags."""
    tp = n_pred = n_gold = 0
    correct_tokens = total_tokens = 0
    for pred, gold in zip(predictions, references, strict=True):
        if len(pred) != len(gold):
            raise ValueError(f"a predicted tag sequence has {len(pred)} tags but its reference has {len(gold)}")
        p, g = entities(pred), entities(gold)
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
        correct_tokens += sum(int(a == b) for a, b in zip(pred, gold, strict=True))
        total_tokens += len(gold)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
    }
