"""docs/troubleshooting.md is generated from the catalogue, so every message it quotes is tested."""

from __future__ import annotations

from tests.errors.catalogue import CASES, DOC, render


def test_troubleshooting_page_is_up_to_date():
    assert DOC.is_file(), "docs/troubleshooting.md is missing; run `python -m tests.errors.catalogue`"
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/troubleshooting.md is out of date; run `python -m tests.errors.catalogue` and commit the result"
    )


def test_every_case_is_on_the_page():
    text = DOC.read_text(encoding="utf-8")
    for case in CASES:
        assert case.title in text and case.phrase.replace("|", "\\|") in text, case.id
