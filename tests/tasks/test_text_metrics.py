"""Generation metrics (tunekit.tasks.text_metrics) against hand-computed values and sacrebleu itself."""

from __future__ import annotations

import sys

import pytest

from tunekit.errors import UsageError
from tunekit.tasks import text_metrics as tm


def test_exact_match_collapses_white_space_only():
    assert tm.exact_match(["a  b ", "c", "D"], ["a b", "d", "d"]) == pytest.approx(100 / 3)
    assert tm.exact_match([], []) == 0.0


def test_rouge_by_hand():
    # prediction "the cat on the mat" against "the cat sat on the mat":
    # ROUGE-1: 5 of 5 predicted unigrams match, 5 of 6 reference ones -> F = 2 * 1 * 5/6 / (1 + 5/6) = 10/11
    # ROUGE-2: 3 shared bigrams (the cat, on the, the mat) of 4 and 5 -> F = 2 * 3/4 * 3/5 / (3/4 + 3/5) = 2/3
    # ROUGE-L: the longest common subsequence is the whole prediction (5 tokens) -> 10/11
    scores = tm.rouge(["the cat on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 10 / 11)
    assert scores["rouge2"] == pytest.approx(100 * 2 / 3)
    assert scores["rougeL"] == pytest.approx(100 * 10 / 11)


def test_rouge_is_a_mean_over_examples():
    scores = tm.rouge(["a b", "x y"], ["a b", "c d"])  # one perfect, one disjoint
    assert scores == {"rouge1": pytest.approx(50.0), "rouge2": pytest.approx(50.0), "rougeL": pytest.approx(50.0)}


def test_chrf_and_bleu_match_sacrebleu():
    from sacrebleu.metrics import BLEU, CHRF

    preds = ["the cat is on the mat", "a quick brown fox jumps", "hello world"]
    refs = ["the cat sat on the mat", "the quick brown fox jumped", "hello there world"]
    assert tm.chrf(preds, refs) == pytest.approx(CHRF().corpus_score(preds, [refs]).score)
    assert tm.bleu(preds, refs) == pytest.approx(BLEU().corpus_score(preds, [refs]).score)
    assert 0 < tm.chrf(preds, refs) < 100
    assert tm.chrf(refs, refs) == pytest.approx(100.0)
    assert tm.bleu(refs, refs) == pytest.approx(100.0)
    assert tm.chrf(["xyz"], ["abc"]) == pytest.approx(0.0)


def test_generation_scores_keys_and_prefix():
    scores = tm.generation_scores(["a b c d"], ["a b c d"], prefix="eval_")
    assert sorted(scores) == sorted(f"eval_{k}" for k in tm.METRICS)
    assert all(v == pytest.approx(100.0) for v in scores.values())


def test_length_mismatch_is_refused():
    with pytest.raises(UsageError, match="2 predictions for 1 references"):
        tm.exact_match(["a", "b"], ["a"])


@pytest.mark.parametrize(("module", "call"), [
    ("rouge_score.rouge_scorer", lambda: tm.rouge(["a"], ["a"])),
    ("sacrebleu.metrics", lambda: tm.chrf(["a"], ["a"])),
])
def test_missing_package_names_the_extra(monkeypatch, module, call):
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'tunekit\[generation\]'") as info:
        call()
    assert "\n" not in str(info.value)
