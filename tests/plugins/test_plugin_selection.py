"""Which plugins load: TUNEKIT_DISABLE_PLUGINS / TUNEKIT_LOAD_PLUGINS, and what `tunekit plugins` / `tunekit methods` list."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.helpers import method_plugin_source
from tests.plugins.support import status
from tunekit import plugins

# --- environment variables ------------------------------------------------------------------------------


def test_disable_by_entry_point_or_distribution_name(site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch) -> None:
    site("tunekit-red", "1.0", method_plugin_source("red-method"), ep_name="red")
    site("tunekit-blue", "1.0", method_plugin_source("blue-method"), ep_name="blue")
    clean_env.setenv("TUNEKIT_DISABLE_PLUGINS", "red, tunekit-blue")
    regs = use_plugins()
    assert status(regs, "red").state == "blocked"
    assert status(regs, "blue").state == "blocked"
    assert "red-method" not in regs.methods and "blue-method" not in regs.methods


def test_disable_a_builtin_by_short_or_full_name(use_plugins: Any, clean_env: pytest.MonkeyPatch) -> None:
    builtin = plugins._builtin_modules()
    if not builtin:
        pytest.skip("no built-in plugin exists yet")
    full = builtin[0]
    short = full.rsplit(".", 1)[1]
    for value in (short, full):
        clean_env.setenv("TUNEKIT_DISABLE_PLUGINS", value)
        regs = use_plugins()
        assert status(regs, full).state == "blocked"
        for registry in regs.kinds():
            assert all(e.provider.plugin != full for e in registry)


def test_allowlist_loads_only_named_third_party_plugins(
    site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch
) -> None:
    site("tunekit-wanted", "1.0", method_plugin_source("wanted-method"), ep_name="wanted")
    site("tunekit-unwanted", "1.0", method_plugin_source("unwanted-method"), ep_name="unwanted")
    clean_env.setenv("TUNEKIT_LOAD_PLUGINS", "wanted")
    regs = use_plugins()
    assert "wanted-method" in regs.methods
    assert "unwanted-method" not in regs.methods
    assert status(regs, "unwanted").state == "blocked"
    # built-ins are not third-party plugins: the allowlist never blocks them
    assert all(p.state == "loaded" for p in regs.plugins if p.builtin)


def test_allowlist_accepts_distribution_names_and_empty_means_none(
    site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch
) -> None:
    site("tunekit-green", "1.0", method_plugin_source("green-method"), ep_name="green")
    clean_env.setenv("TUNEKIT_LOAD_PLUGINS", "tunekit-green")
    assert "green-method" in use_plugins().methods
    clean_env.setenv("TUNEKIT_LOAD_PLUGINS", "")
    regs = use_plugins()
    assert "green-method" not in regs.methods
    assert all(p.state == "blocked" for p in regs.plugins if not p.builtin)


def test_disable_wins_over_allowlist(site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch) -> None:
    site("tunekit-both", "1.0", method_plugin_source("both-method"), ep_name="both")
    clean_env.setenv("TUNEKIT_LOAD_PLUGINS", "both")
    clean_env.setenv("TUNEKIT_DISABLE_PLUGINS", "both")
    regs = use_plugins()
    assert status(regs, "both").state == "blocked"
    assert "both-method" not in regs.methods


def test_blocked_broken_plugin_is_never_imported(site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch) -> None:
    module = site("tunekit-bomb", "1.0", "raise SystemExit('imported although blocked')\n")
    clean_env.setenv("TUNEKIT_DISABLE_PLUGINS", "tunekit-bomb")
    regs = use_plugins()
    assert status(regs, "tunekit-bomb").state == "blocked"
    assert module not in sys.modules


def test_plugins_command_shows_loaded_failed_and_blocked(
    site: Any, use_plugins: Any, clean_env: pytest.MonkeyPatch, cli_run: Any
) -> None:
    site("tunekit-shown", "4.5.6", method_plugin_source("shown-method"), ep_name="shown")
    site("tunekit-crashy", "0.0.1", "raise ImportError('no such dependency: frobnicate')\n", ep_name="crashy")
    site("tunekit-quiet", "1.0", method_plugin_source("quiet-method"), ep_name="quiet")
    clean_env.setenv("TUNEKIT_DISABLE_PLUGINS", "quiet")
    use_plugins()
    lines = cli_run("plugins").splitlines()

    def row(name: str) -> str:
        found = [line for line in lines if f" {name} " in line]
        assert len(found) == 1, lines
        return found[0]

    assert "tunekit-shown" in row("shown") and "4.5.6" in row("shown") and "loaded" in row("shown")
    assert "failed" in row("crashy") and "ImportError: no such dependency: frobnicate" in row("crashy")
    assert "blocked" in row("quiet") and "tunekit-quiet" in row("quiet")
    for name in plugins._builtin_modules():
        assert "built-in" in row(name)


def test_methods_command_lists_a_plugin_method_with_provider_and_version(
    site: Any, use_plugins: Any, cli_run: Any
) -> None:
    site("tunekit-listed", "7.8.9", method_plugin_source("listed-method"), ep_name="listed")
    use_plugins()
    line = next(line for line in cli_run("methods").splitlines() if "listed-method" in line)
    assert "tunekit-listed 7.8.9" in line
    assert "Method from a test distribution." in line
