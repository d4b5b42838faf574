"""The plugin manager: entry-point discovery, isolation of broken plugins, collisions, allow/deny lists.

Third-party plugins are installed for real into a temporary folder on ``sys.path``: a module plus a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, which is all ``importlib.metadata``
needs, so the provider's distribution name and version go through the same code as a pip install.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import method_plugin_source, write_distribution
from tunekit import plugins
from tunekit.errors import UnknownNameError
from tunekit.hookspecs import hookimpl

_counter = itertools.count()


@dataclass
class NoOptions:
    """No options."""


class FakeMethod:
    """Every required member of ``tunekit.methods.protocol.Method``, doing nothing (the loader checks they exist)."""

    options_class = NoOptions

    def __init__(self, name: str, description: str = "A test method.") -> None:
        self.name = name
        self.description = description

    def apply(self, model: Any, options: Any, keep_trainable: Any = ()) -> Any:
        raise NotImplementedError

    def expected_trainable(self, arch: Any, options: Any) -> int:
        return 0

    def load(self, model: Any, folder: Any) -> Any:
        raise NotImplementedError


class MethodPlugin:
    """An in-process plugin object registering the named methods."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def register_methods(self, register: Any) -> None:
        for name in self.names:
            register(FakeMethod(name))


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




def status(regs: plugins.Registries, name: str) -> plugins.PluginStatus:
    matches = [p for p in regs.plugins if p.name == name]
    assert len(matches) == 1, [p.name for p in regs.plugins]
    return matches[0]


def plugin_warnings(caplog: pytest.LogCaptureFixture, about: str) -> list[str]:
    """Warnings of the plugin manager that mention ``about`` (other installed plugins may warn too)."""
    return [r.getMessage() for r in caplog.records
            if r.name == "tunekit.plugins" and r.levelno == logging.WARNING and about in r.getMessage()]


# --- in-process registration (what tests and notebooks use) ------------------------------------------------


def test_extra_plugin_is_registered_for_one_test_and_restored(use_plugins: Any) -> None:
    before = plugins.registries()
    regs = use_plugins(MethodPlugin("only-in-this-test"))
    assert plugins.registries() is regs
    assert "only-in-this-test" in regs.methods
    assert "only-in-this-test" not in before.methods


def test_registries_are_loaded_once_and_reset_reloads(use_plugins: Any) -> None:
    first = plugins.reset()
    assert plugins.registries() is first
    assert plugins.registries() is first
    assert plugins.reset() is not first


def test_builtins_load_as_ordinary_plugins(use_plugins: Any) -> None:
    regs = use_plugins()
    builtins = [p for p in regs.plugins if p.builtin]
    assert {p.name for p in builtins} == set(plugins._builtin_modules())
    for p in builtins:
        assert p.distribution == "tunekit"
        assert p.state == "loaded", p.error


def test_unknown_method_suggests_a_close_name(use_plugins: Any) -> None:
    regs = use_plugins(MethodPlugin("scale-vectors"))
    with pytest.raises(UnknownNameError, match="did you mean 'scale-vectors'"):
        regs.methods.get("scale-vector")


def test_plugin_raising_in_a_hook_is_isolated(use_plugins: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Exploding:
        @hookimpl
        def register_methods(self, register: Any) -> None:
            register(FakeMethod("half-registered"))
            raise RuntimeError("hook went wrong")

    regs = use_plugins(Exploding(), MethodPlugin("survivor"))
    st = status(regs, "Exploding")
    assert st.state == "failed"
    assert st.error == "RuntimeError: hook went wrong"
    assert "survivor" in regs.methods
    # nothing from a failed plugin stays registered
    assert "half-registered" not in regs.methods
    assert len(plugin_warnings(caplog, "Exploding")) == 1


def test_plugin_failing_in_a_later_hook_loses_earlier_registrations(use_plugins: Any) -> None:
    class LateFailure:
        @hookimpl
        def register_methods(self, register: Any) -> None:
            register(FakeMethod("early"))

        @hookimpl
        def register_tasks(self, register: Any) -> None:
            raise ValueError("task hook broke")

    regs = use_plugins(LateFailure())
    assert status(regs, "LateFailure").state == "failed"
    assert "early" not in regs.methods


def test_malformed_hookimpl_is_a_failure_not_a_crash(use_plugins: Any) -> None:
    class WrongArguments:
        @hookimpl
        def register_methods(self, register: Any, surprise: Any) -> None:  # not in the spec
            register(FakeMethod("never"))

    regs = use_plugins(WrongArguments(), MethodPlugin("fine"))
    st = status(regs, "WrongArguments")
    assert st.state == "failed"
    assert "surprise" in st.error
    assert "fine" in regs.methods and "never" not in regs.methods


def test_collision_between_in_process_plugins_fails_the_second_and_names_both(use_plugins: Any) -> None:
    class First(MethodPlugin):
        pass

    class Second(MethodPlugin):
        pass

    regs = use_plugins(First("twin"), Second("twin", "second-only"))
    st = status(regs, "Second")
    assert st.state == "failed"
    assert "'First'" in st.error and "'Second'" in st.error and "PluginCollisionError" in st.error
    assert status(regs, "First").state == "loaded"
    assert regs.methods.entry("twin").provider.plugin == "First"
    assert "second-only" not in regs.methods  # nothing of the failed plugin stays


# --- installed distributions found through entry points ------------------------------------------------


def test_entry_point_plugin_carries_distribution_name_and_version(site: Any, use_plugins: Any) -> None:
    site("tunekit-demo", "1.2.3", method_plugin_source("demo-method"), ep_name="demo")
    regs = use_plugins()
    entry = regs.methods.entry("demo-method")
    assert entry.provider.distribution == "tunekit-demo"
    assert entry.provider.version == "1.2.3"
    assert entry.provider.plugin == "demo"
    assert entry.description == "Method from a test distribution."
    st = status(regs, "demo")
    assert (st.state, st.distribution, st.version, st.builtin) == ("loaded", "tunekit-demo", "1.2.3", False)


def test_plugin_failing_on_import_is_isolated_with_one_warning(
    site: Any, use_plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    site("tunekit-broken", "0.1.0", "raise RuntimeError('cannot import me')\n")
    site("tunekit-good", "0.2.0", method_plugin_source("good-method"))
    with caplog.at_level(logging.WARNING, logger="tunekit.plugins"):
        regs = use_plugins()
    st = status(regs, "tunekit-broken")
    assert st.state == "failed"
    assert st.error == "RuntimeError: cannot import me"
    assert "good-method" in regs.methods
    assert all(p.state == "loaded" for p in regs.plugins if p.builtin)
    warnings = plugin_warnings(caplog, "tunekit-broken")
    assert len(warnings) == 1
    assert "cannot import me" in warnings[0]


def test_entry_point_to_a_missing_module_fails_cleanly(site: Any, use_plugins: Any, tmp_path: Path) -> None:
    module = site("tunekit-ghost", "1.0", method_plugin_source("ghost-method"))
    (tmp_path / "site" / f"{module}.py").unlink()
    importlib.invalidate_caches()
    regs = use_plugins()
    st = status(regs, "tunekit-ghost")
    assert st.state == "failed"
    assert st.error.startswith("ModuleNotFoundError")


def test_entry_point_plugin_raising_in_its_hook_names_its_distribution(
    site: Any, use_plugins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    site("tunekit-hookfail", "3.0", """
        from tunekit.hookspecs import hookimpl

        @hookimpl
        def register_methods(register):
            raise KeyError("missing piece")
    """)
    with caplog.at_level(logging.WARNING, logger="tunekit.plugins"):
        regs = use_plugins(MethodPlugin("still-here"))
    assert status(regs, "tunekit-hookfail").state == "failed"
    assert "still-here" in regs.methods
    warnings = plugin_warnings(caplog, "tunekit-hookfail")
    assert len(warnings) == 1 and "missing piece" in warnings[0]


def test_collision_between_distributions_names_both_with_versions(site: Any, use_plugins: Any) -> None:
    site("tunekit-one", "1.0", method_plugin_source("same-name"))
    site("tunekit-two", "2.0", method_plugin_source("same-name"))
    regs = use_plugins()
    failed = [p for p in regs.plugins if p.state == "failed"]
    assert len(failed) == 1, [(p.name, p.error) for p in failed]
    message = failed[0].error
    assert "tunekit-one 1.0" in message and "tunekit-two 2.0" in message
    assert "method 'same-name'" in message
    kept = regs.methods.entry("same-name").provider.distribution
    assert kept != failed[0].distribution and {kept, failed[0].distribution} == {"tunekit-one", "tunekit-two"}


def test_two_distributions_with_the_same_plugin_name_report_the_second(site: Any, use_plugins: Any) -> None:
    site("tunekit-first", "1.0", method_plugin_source("from-first"), ep_name="shared")
    site("tunekit-second", "1.0", method_plugin_source("from-second"), ep_name="shared")
    regs = use_plugins()
    states = {p.distribution: p for p in regs.plugins if p.name == "shared"}
    loaded = [d for d, p in states.items() if p.state == "loaded"]
    failed = [p for p in states.values() if p.state == "failed"]
    assert len(loaded) == 1 and len(failed) == 1
    assert loaded[0] in failed[0].error and "already taken" in failed[0].error


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


# --- the `tunekit plugins` and `tunekit methods` listings ---------------------------------------------


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


