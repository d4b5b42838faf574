"""Unit tests for tunekit.runs.heldout: keyword scoring and the packaged demo loader."""

from __future__ import annotations

import pytest

from tunekit.errors import DataError, UsageError
from tunekit.runs.heldout import accuracy, demo_file, load_demo, score


@pytest.mark.parametrize(
    ("answer", "keywords"),
    [
        ("The Lumo X3 holds 1.8 litres of water.", ["1.8"]),
        ("the lumo x3 holds 1.8 LITRES", ["1.8 litres"]),
        ("It holds   1.8\n litres.", ["1.8 litres"]),
        ("It holds 1.8.", ["1.8"]),
        ("It holds 1.8", ["1.8."]),
        ("Capacity: 1.8", ["1.8"]),
        ("(1.8)", ["1.8"]),
        ("It costs 2,849 euros.", ["2,849"]),
        ("It costs 2849 euros.", ["2,849"]),
        ("It costs 2,849 euros.", ["2849"]),
        ("Colours: Moss Slate, Ember Clay and Fjord Blue.", ["ember clay", "FJORD BLUE"]),
        ("Support opens at 7:30.", ["7:30"]),
        ("The top mode is called Gale!", ["Gale"]),
        ("Rated IP56.", ["IP56"]),
    ],
)
def test_score_accepts_correct_answers(answer: str, keywords: list[str]) -> None:
    assert score(answer, keywords) is True


@pytest.mark.parametrize(
    ("answer", "keywords"),
    [
        ("It holds 11.8 litres.", ["1.8"]),
        ("It holds 1.85 litres.", ["1.8"]),
        ("It holds 21.8 litres.", ["1.8"]),
        ("It holds 1.8 litres.", ["8"]),
        ("It holds 1.8 litres.", ["1"]),
        ("It costs 12,849 euros.", ["2,849"]),
        ("It is under warranty for 16 years.", ["6 years"]),
        ("The bird is a nightingale.", ["Gale"]),
        ("Colours: Moss Slate and Ember Clay.", ["Ember Clay", "Fjord Blue"]),
        ("Rated IP567.", ["IP56"]),
        ("Support opens at 17:30.", ["7:30"]),
        ("", ["612"]),
    ],
)
def test_score_rejects_wrong_answers(answer: str, keywords: list[str]) -> None:
    assert score(answer, keywords) is False


def test_score_takes_a_single_string_as_one_keyword() -> None:
    assert score("It weighs 21.7 kg.", "21.7 kg")
    assert not score("It weighs 21.7 kg.", "1.7")


@pytest.mark.parametrize("keywords", [[], [""], ["  "], ["612", ""]])
def test_score_refuses_empty_keywords(keywords: list[str]) -> None:
    with pytest.raises(DataError, match="keywords"):
        score("anything at all", keywords)


def test_accuracy_counts_matching_answers() -> None:
    records = [{"keywords": ["612"]}, {"keywords": ["Varrowby"]}, {"keywords": ["43.2"]}, {"keywords": ["IP56"]}]
    answers = ["It holds 612 Wh.", "Founded by Ines Varrowby.", "It runs at 43 volts.", "No idea."]
    assert accuracy(answers, records) == pytest.approx(0.5)


def test_accuracy_refuses_mismatched_lengths() -> None:
    with pytest.raises(UsageError, match="one answer per record"):
        accuracy(["a"], [{"keywords": ["a"]}, {"keywords": ["b"]}])


def test_load_demo_reads_both_splits() -> None:
    train = load_demo("train")
    heldout = load_demo("heldout")
    assert train and heldout
    assert all(set(r) == {"prompt", "response"} for r in train)
    assert all(set(r) == {"prompt", "response", "keywords"} for r in heldout)


def test_demo_file_is_located_through_the_package() -> None:
    assert demo_file("train").name == "train.jsonl"
    assert demo_file("heldout").is_file()


def test_load_demo_rejects_unknown_split() -> None:
    with pytest.raises(UsageError, match="unknown demo split 'test'"):
        load_demo("test")
