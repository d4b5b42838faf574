"""Metrics for generated text, shared by the tasks that generate (seq2seq, causal-lm ``task.generate_eval``).

Scores come from the well-kept reference implementations, never re-written here:

- ROUGE-1, ROUGE-2 and ROUGE-L F-measure from Google's ``rouge-score`` (``rouge_scorer.RougeScorer``, its default
  tokenizer: lower case, letters and digits only, no stemming), averaged over the examples;
- corpus BLEU and chrF from ``sacrebleu.metrics`` (sacrebleu's default settings: BLEU-4 with its ``13a`` tokenizer,
  chrF with character n-grams up to 6 and beta 2), one reference per example;
- exact match: the share of predictions equal to their reference after trimming and collapsing white space.

Every score is on a 0-100 scale (sacrebleu's, and the one ``eval_exact_match`` of question answering uses).
The two packages are the ``generation`` extra; without them the functions raise one ``UsageError`` naming it.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from tunekit.errors import UsageError

METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match")
"""The keys :func:`generation_scores` returns (each prefixed by the caller, e.g. ``eval_rougeL``)."""

EXTRA = "pip install 'tunekit[generation]'"


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"generation metrics need the {package} package, which is not installed; {EXTRA}.") from None


def check_available() -> None:
    """Raise the one-line ``UsageError`` naming the extra now, when a run will need the metrics (not at its first
    evaluation, after training for a while)."""
    _require("rouge_score.rouge_scorer", "rouge-score")
    _require("sacrebleu.metrics", "sacrebleu")


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise UsageError(
            f"got {len(predictions)} predictions for {len(references)} references; give exactly one prediction each."
        )


def _squash(text: str) -> str:
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Percentage of predictions equal to their reference, white space trimmed and collapsed (0.0 when empty)."""
    _check(predictions, references)
    if not references:
        return 0.0
    return 100.0 * sum(_squash(p) == _squash(r) for p, r in zip(predictions, references, strict=True)) / len(references)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (0-100) of each prediction against its reference: keys rouge1, rouge2, rougeL."""
    _check(predictions, references)
    rouge_scorer = _require("rouge_score.rouge_scorer", "rouge-score")
    keys = ("rouge1", "rouge2", "rougeL")
    if not references:
        return dict.fromkeys(keys, 0.0)
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=False)
    totals = dict.fromkeys(keys, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)  # rouge-score takes (target, prediction)
        for key in keys:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * total / len(references) for key, total in totals.items()}


def _corpus(metric: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus score of ``metric`` (``BLEU`` or ``CHRF``, default settings), one reference each."""
    _check(predictions, references)
    sacrebleu_metrics = _require("sacrebleu.metrics", "sacrebleu")
    if not references:
        return 0.0
    scorer = getattr(sacrebleu_metrics, metric)()
    return float(scorer.corpus_score(list(predictions), [list(references)]).score)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (0-100) of the predictions against one reference each."""
    return _corpus("BLEU", predictions, references)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus chrF (0-100) of the predictions against one reference each."""
    return _corpus("CHRF", predictions, references)


def generation_scores(predictions: Sequence[str], references: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Every metric in :data:`METRICS` for generated texts, keys prefixed with ``prefix`` (e.g. ``eval_``)."""
    scores = {**rouge(predictions, references), "bleu": bleu(predictions, references),
              "chrf": chrf(predictions, references), "exact_match": exact_match(predictions, references)}
    return {f"{prefix}{key}": scores[key] for key in METRICS}
