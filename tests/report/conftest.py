"""Run folders of the four task families, trained once per session for the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.runs import make_runs


@pytest.fixture(scope="session")
def task_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"classification" | "ner" | "qa" | "causal-lm": run folder}`` of tiny random-model runs."""
    return make_runs(tmp_path_factory.mktemp("report-runs"))
