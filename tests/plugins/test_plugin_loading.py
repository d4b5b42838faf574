"""The plugin manager: entry-point discovery, isolation of broken plugins, collisions, allow/deny lists.

Third-party plugins are installed for real into a temporary folder on ``sys.path``: a module plus a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, which is all ``importlib.metadata``
needs, so the provider's distribution name and version go through the same code as a pip install.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import method_plugin_source
from tests.plugins.support import FakeMethod, MethodPlugin, plugin_warnings, status
from tunekit import plugins
from tunekit.errors import UnknownNameError
from tunekit.hookspecs import hookimpl

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
