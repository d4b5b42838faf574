"""Fixtures of the plugin-manager tests: a clean plugin environment, in-process plugins, installed distributions."""

from __future__ import annotations

import importlib
import itertools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_distribution
from tunekit import plugins

_counter = itertools.count()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TUNEKIT_LOAD_PLUGINS", raising=False)
    # the CLI stops tunekit's log records at the "tunekit" logger; let them reach caplog here
    monkeypatch.setattr(logging.getLogger("tunekit"), "propagate", True)
    return monkeypatch


@pytest.fixture
def use_plugins(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """Register plugin objects for the duration of one test; the previous registries come back after."""
    clean_env.setattr(plugins, "_current", plugins._current)

    def use(*extra: Any) -> plugins.Registries:
        return plugins.reset(extra_plugins=list(extra))

    yield use


@pytest.fixture
def site(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Install tiny plugin distributions into a temporary folder on sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    clean_env.syspath_prepend(str(root))
    modules: list[str] = []

    def install(dist: str, version: str, body: str, ep_name: str | None = None) -> str:
        module = f"tk_test_plugin_{next(_counter)}"
        write_distribution(root, dist, version, module, body, ep_name)
        modules.append(module)
        importlib.invalidate_caches()
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()




@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch) -> Any:
    from click.testing import CliRunner

    from tunekit import cli as cli_module

    cli_module._load_commands()
    monkeypatch.setattr(cli_module.console, "width", 400)  # no wrapping inside table cells

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run
