"""The official SQuAD 2.0 figures: HasAns/NoAns scores and counts, best exact/F1 over no-answer thresholds."""

from __future__ import annotations

import math
import random

import pytest

from tunekit.builtins.tasks.question_answering.answers import Answer, decide
from tunekit.builtins.tasks.question_answering.squad_v2 import Scored, best_threshold, score_questions, squad_v2_report


def _answer(span: str, score: float, null: float) -> Answer:
    return Answer(span, score, 0 if span else -1, null)


def _four():
    """Hand-computed case: margins -2, 1, 4, 0.5 (null score - span score)."""
    answers = [
        _answer("paris", 5.0, 3.0),  # answerable, span right: F1 1 answered, 0 unanswered
        _answer("john", 4.0, 5.0),  # answerable "john smith": F1 2/3 (P 1, R 1/2), exact 0
        _answer("london", 2.0, 6.0),  # unanswerable: 1 only unanswered
        _answer("france", 3.0, 3.5),  # unanswerable
    ]
    golds = [["paris", "Paris"], ["john smith"], [], []]
    return answers, golds


def test_report_at_threshold_zero_matches_hand_computation():
    answers, golds = _four()
    decide(answers, True, 0.0)  # margins -2 | 1, 4, 0.5 > 0: only the first is answered
    assert [a.text for a in answers] == ["paris", "", "", ""]
    r = squad_v2_report(answers, golds)
    assert r["exact_match"] == pytest.approx(75.0) and r["f1"] == pytest.approx(75.0) and r["total"] == 4
    assert (r["HasAns_exact"], r["HasAns_f1"], r["HasAns_total"]) == (50.0, 50.0, 2)
    assert (r["NoAns_exact"], r["NoAns_f1"], r["NoAns_total"]) == (100.0, 100.0, 2)
    # thresholds: nothing answered 2/4; + q1 (-2) 3/4; + q4 (0.5) 2; + q2 (1) 2 2/3 (F1) or 2 (exact); + q3 1 2/3
    assert r["best_f1"] == pytest.approx(75.0) and r["best_f1_thresh"] == -2.0
    assert r["best_exact"] == pytest.approx(75.0) and r["best_exact_thresh"] == -2.0


def test_best_threshold_above_zero_and_reproducible():
    answers, golds = _four()
    golds[1] = ["john"]  # now q2's span is right
    answers[3].null_score = 5.0  # q4's margin 2: order q1 (-2), q2 (1), q4 (2), q3 (4)
    rows = score_questions(decide(answers, True, 0.0), golds)
    assert best_threshold(rows, 1) == (pytest.approx(100.0), 1.0)  # 2 -> 3 -> 4 -> 3 -> 2
    assert best_threshold(rows, 0) == (pytest.approx(100.0), 1.0)
    decide(answers, True, 1.0)
    assert squad_v2_report(answers, golds)["f1"] == pytest.approx(100.0)


def test_leaving_everything_unanswered_reports_a_threshold_that_does():
    answers = [_answer("a cat", 1.0, 1.5), _answer("a dog", 1.0, 3.0)]  # margins 0.5, 2
    golds = [[], []]
    f1, thresh = best_threshold(score_questions(answers, golds), 1)
    assert f1 == 100.0 and thresh < 0.5 and thresh == math.nextafter(0.5, -math.inf)
    assert all(a.abstain for a in decide(answers, True, thresh))


def test_equal_margins_are_answered_together():
    # one right span and one unanswerable question share margin 1: answering only one of them is impossible
    answers = [_answer("paris", 2.0, 3.0), _answer("rome", 2.0, 3.0)]
    golds = [["paris"], []]
    f1, thresh = best_threshold(score_questions(answers, golds), 1)
    assert f1 == 50.0 and thresh < 1.0  # not 100 at threshold 1, which would answer both (also 50)


def test_question_without_a_span_counts_as_unanswered():
    answers = [Answer("", -math.inf, -1, 2.0), _answer("x", 1.0, 0.0)]
    decide(answers, True, 0.0)
    assert answers[0].text == "" and answers[0].margin == math.inf and not answers[1].abstain
    r = squad_v2_report(answers, [["something"], []])
    assert r["HasAns_f1"] == 0.0 and r["NoAns_f1"] == 0.0 and r["best_f1"] == 50.0  # best: answer nothing


def test_best_is_the_maximum_over_every_threshold_and_is_reached():
    rng = random.Random(3)
    words = ["paris", "rome", "the big city", "london", "john smith", "france"]
    for _ in range(30):
        n = rng.randint(1, 12)
        answers = [_answer(rng.choice(words), rng.uniform(-3, 3), round(rng.uniform(-3, 3), 1)) for _ in range(n)]
        golds = [[] if rng.random() < 0.4 else [rng.choice(words)] for _ in range(n)]
        rows = score_questions(answers, golds)
        best_f1, thresh = best_threshold(rows, 1)
        candidates = [a.margin for a in answers] + [-1e9, 1e9]
        f1s = [squad_v2_report(decide(answers, True, t), golds)["f1"] for t in candidates]
        assert best_f1 == pytest.approx(max(f1s))
        assert squad_v2_report(decide(answers, True, thresh), golds)["f1"] == pytest.approx(best_f1)


def test_groups_without_questions_are_left_out():
    answers = [_answer("paris", 1.0, 0.0)]
    r = squad_v2_report(decide(answers, True, 0.0), [["paris"]])
    assert "NoAns_total" not in r and r["HasAns_total"] == 1 and r["f1"] == 100.0


def test_rounding_error_does_not_make_a_better_threshold():
    rows = [Scored(False, 1.0, 0, 0, answered=(0, 0.0), unanswered=(0, 0.3)),
            Scored(True, 2.0, 0, 0, answered=(0, 0.1), unanswered=(0, 0.0)),
            Scored(True, 3.0, 0, 0, answered=(0, 0.2), unanswered=(0, 0.0))]
    # answering all three sums 0.3 - 0.3 + 0.1 + 0.2 = 0.30000000000000004 in floats: no better than none
    f1, thresh = best_threshold(rows, 1)
    assert f1 == pytest.approx(10.0) and thresh < 1.0
