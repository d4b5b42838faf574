"""Structure checks for the demo question/answer data shipped in tunekit/resources/demo."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import pytest

from tunekit.runs.heldout import score

DEMO = resources.files("tunekit") / "resources" / "demo"


def _read(name: str) -> list[dict]:
    lines = (DEMO / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return _read("train.jsonl")


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return _read("heldout.jsonl")


def test_files_and_readme_ship_inside_the_package() -> None:
    for name in ("train.jsonl", "heldout.jsonl", "README.md"):
        assert (DEMO / name).is_file(), name
    assert "Apache-2.0" in (DEMO / "README.md").read_text(encoding="utf-8")


def test_counts_are_within_range(train: list[dict], heldout: list[dict]) -> None:
    assert 200 <= len(train) <= 280
    assert 40 <= len(heldout) <= 60
    facts = Counter(r["response"] for r in train)
    assert 50 <= len(facts) <= 70
    # every fact is asked in 3-4 phrasings, always with the same answer
    assert all(3 <= n <= 4 for n in facts.values()), facts


def test_every_record_has_the_keys_with_nonempty_strings(train: list[dict], heldout: list[dict]) -> None:
    for r in train:
        assert set(r) == {"prompt", "response"}, r
        assert isinstance(r["prompt"], str) and r["prompt"].strip(), r
        assert isinstance(r["response"], str) and r["response"].strip(), r
    for r in heldout:
        assert set(r) == {"prompt", "response", "keywords"}, r
        assert isinstance(r["prompt"], str) and r["prompt"].strip(), r
        assert isinstance(r["response"], str) and r["response"].strip(), r
        assert isinstance(r["keywords"], list) and 1 <= len(r["keywords"]) <= 2, r
        assert all(isinstance(k, str) and k.strip() for k in r["keywords"]), r


def test_prompts_and_answers_are_short(train: list[dict], heldout: list[dict]) -> None:
    for r in train + heldout:
        assert len(r["prompt"].split()) <= 20, r["prompt"]
        assert len(r["response"].split()) <= 25, r["response"]


def test_prompts_are_distinct(train: list[dict], heldout: list[dict]) -> None:
    train_prompts = [r["prompt"] for r in train]
    assert len(set(train_prompts)) == len(train_prompts)
    held_prompts = [r["prompt"] for r in heldout]
    assert len(set(held_prompts)) == len(held_prompts)
    normalised = {p.casefold().strip() for p in train_prompts}
    leaked = [p for p in held_prompts if p.casefold().strip() in normalised]
    assert not leaked, f"held-out prompts also in train: {leaked}"


def test_heldout_keywords_are_taught_in_training(train: list[dict], heldout: list[dict]) -> None:
    train_responses = {r["response"] for r in train}
    for r in heldout:
        # the held-out answer is the one the model was trained on for that fact
        assert r["response"] in train_responses, r
        for k in r["keywords"]:
            assert any(k.casefold() in t.casefold() for t in train_responses), (k, r)
        assert score(r["response"], r["keywords"]), r


def test_keywords_are_not_given_away_by_the_prompt(heldout: list[dict]) -> None:
    for r in heldout:
        assert not any(score(r["prompt"], [k]) for k in r["keywords"]), r


def test_keywords_pick_out_one_fact(train: list[dict], heldout: list[dict]) -> None:
    # an answer about a different fact must not score as correct by chance
    facts = {r["response"] for r in train}
    for r in heldout:
        others = [f for f in facts if f != r["response"] and score(f, r["keywords"])]
        assert not others, (r["keywords"], others)
