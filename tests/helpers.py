"""Helpers shared by the tests: where ../shared is, and the real model packages (skip when absent)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEKIT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the integration tests need ../shared beside the repository")
    return path


def model_package(package: str) -> Path:
    """The folder of an installed model package, or skip when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"model package {package!r} is not installed (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])
