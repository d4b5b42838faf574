"""docs/cli.md and docs/configuration.md stay in sync with the click commands and config dataclasses."""

from __future__ import annotations

import pytest

from tunekit.cli import reference


@pytest.mark.parametrize("page", sorted(reference.PAGES))
def test_reference_page_is_up_to_date(page):
    path = reference.DOCS / page
    assert path.is_file(), f"docs/{page} is missing; run `python -m tunekit.cli.reference`"
    assert path.read_text(encoding="utf-8") == reference.PAGES[page](), (
        f"docs/{page} is out of date; run `python -m tunekit.cli.reference` and commit the result"
    )


def test_every_command_and_option_is_documented():
    text = (reference.DOCS / "cli.md").read_text(encoding="utf-8")
    group = reference._commands()
    for name, command in group.commands.items():
        assert f"## tunekit {name}" in text
        for param in command.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--"):
                    assert flag in text, f"{flag} of `tunekit {name}` is not in docs/cli.md"
