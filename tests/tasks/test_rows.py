"""Column picking, sample caps and the seeded (stratified) validation split."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from tunekit.errors import DataError
from tunekit.tasks import rows


def _data(n=100):
    return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(n)], "label": [i % 4 == 0 for i in range(n)]})


def test_pick_column_matches_ints_as_text_and_lists_columns():
    data = datasets.Dataset.from_dict({"0": ["a"], "1": ["b"]})
    assert rows.pick_column(data, 1, (), "label", "data.label_column") == "1"
    with pytest.raises(DataError, match=r"columns: 0, 1"):
        rows.pick_column(data, 5, (), "label", "data.label_column")
    with pytest.raises(DataError, match="could not tell which column holds the text"):
        rows.pick_column(data, None, ("sentence",), "text", "data.text_column")
    assert rows.pick_column(_data(2), None, ("sentence", "TEXT"), "text", "data.text_column") == "text"


def test_stratified_split_is_seeded_and_keeps_proportions():
    data = _data()
    keys = data["label"]
    train, val = rows.split_validation(data, 0.2, seed=3, stratify=keys)
    again_train, again_val = rows.split_validation(data, 0.2, seed=3, stratify=keys)
    assert val["text"] == again_val["text"]
    assert len(train) + len(val) == 100 and not set(train["text"]) & set(val["text"])
    assert Counter(val["label"]) == {True: 5, False: 15}
    other = rows.split_validation(data, 0.2, seed=4, stratify=keys)[1]
    assert other["text"] != val["text"]


def test_split_refuses_tiny_or_zero():
    with pytest.raises(DataError, match="val-data"):
        rows.split_validation(_data(10), 0.0, 0)
    with pytest.raises(DataError, match="too few"):
        rows.split_validation(_data(1), 0.1, 0)


def test_limit():
    assert len(rows.limit(_data(), 7)) == 7
    assert len(rows.limit(_data(5), 7)) == 5
    assert rows.limit(None, 3) is None
