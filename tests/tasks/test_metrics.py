"""Metrics against hand-worked values: classification, SQuAD normalisation, IOB1/IOB2 entities."""

from __future__ import annotations

import math

import pytest

from tunekit.tasks import metrics


def test_accuracy_f1_mcc():
    preds, refs = [0, 1, 1, 0, 1], [0, 1, 0, 0, 1]
    assert metrics.accuracy(preds, refs) == 0.8
    # class 0: tp 2, predicted 2, actual 3 -> 0.8; class 1: tp 2, predicted 3, actual 2 -> 0.8
    assert metrics.f1_macro(preds, refs) == pytest.approx(0.8)
    tp, tn, fp, fn = 2, 2, 1, 0
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.matthews_correlation(preds, refs) == pytest.approx(expected)
    assert metrics.matthews_correlation([1, 1, 1], [0, 1, 0]) == 0.0  # constant prediction
    assert metrics.matthews_correlation([2, 0, 1], [2, 0, 1]) == pytest.approx(1.0)


def test_squad_normalisation_and_scores():
    assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert metrics.normalize_answer("an apple a day") == "apple day"
    assert metrics.squad_exact("the Paris", "paris.") == 1.0
    assert metrics.squad_f1("in Paris France", "Paris") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    scores = metrics.squad_scores({"a": "paris", "b": "", "c": "london"}, {"a": ["Paris", "x"], "b": [], "c": []})
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["HasAns_exact_match"] == 100.0 and scores["NoAns_exact_match"] == 50.0


def test_entities_read_iob1_and_iob2_alike():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]
    expected = {("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 6)}
    assert metrics.entities(iob1) == expected
    assert metrics.entities(iob2) == expected
    assert metrics.entities(["B-X", "E-X", "S-Y"]) == {("X", 0, 2), ("Y", 2, 3)}


def test_entity_scores():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]
    s = metrics.entity_scores(pred, gold)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert s["accuracy"] == 0.75
