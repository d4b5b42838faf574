"""The named registries: lookup, providers, collisions and did-you-mean."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tunekit.errors import PluginError, UnknownNameError, UsageError
from tunekit.registry import Provider, Registry

ALPHA = Provider("alpha_plugin", "tunekit-alpha", "1.0.0")
BETA = Provider("beta_plugin", "tunekit-beta", "2.1.0")


@dataclass
class Thing:
    name: str
    description: str = ""


def test_add_get_and_entry_keep_the_provider_and_first_description_line() -> None:
    reg: Registry[Thing] = Registry("method", "--method")
    thing = Thing("scale", "  Learned scale vectors.\nSecond line is detail.  ")
    reg.add(thing, ALPHA)

    assert reg.get("scale") is thing
    entry = reg.entry("scale")
    assert entry.provider == ALPHA
    assert entry.description == "Learned scale vectors."
    assert str(entry.provider) == "tunekit-alpha 1.0.0"


def test_iteration_is_sorted_and_container_protocol_works() -> None:
    reg: Registry[Thing] = Registry("task")
    for name in ("zeta", "alpha", "mid"):
        reg.add(Thing(name), ALPHA)
    assert [e.name for e in reg] == ["alpha", "mid", "zeta"]
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert len(reg) == 3
    assert "mid" in reg and "nope" not in reg


def test_missing_description_is_empty() -> None:
    reg: Registry[object] = Registry("task")

    class Bare:
        name = "bare"

    reg.add(Bare(), ALPHA)
    assert reg.entry("bare").description == ""


@pytest.mark.parametrize("bad", [None, "", 3])
def test_object_without_a_string_name_is_a_plugin_error_naming_the_distribution(bad: object) -> None:
    reg: Registry[object] = Registry("method")

    class Nameless:
        name = bad

    with pytest.raises(PluginError, match="tunekit-alpha") as info:
        reg.add(Nameless(), ALPHA)
    assert "name" in str(info.value)


def test_collision_names_both_providers_and_the_fix() -> None:
    reg: Registry[Thing] = Registry("method", "--method")
    reg.add(Thing("ia3"), ALPHA)
    with pytest.raises(PluginError) as info:
        reg.add(Thing("ia3"), BETA)
    message = str(info.value)
    assert "tunekit-alpha 1.0.0" in message and "tunekit-beta 2.1.0" in message
    assert "alpha_plugin" in message and "beta_plugin" in message
    assert "TUNEKIT_DISABLE_PLUGINS" in message
    # the first registration stays in place
    assert reg.entry("ia3").provider == ALPHA


def test_unknown_name_suggests_the_closest_and_lists_known() -> None:
    reg: Registry[Thing] = Registry("method", "--method")
    for name in ("lora", "ia3", "prefix"):
        reg.add(Thing(name), ALPHA)
    with pytest.raises(UnknownNameError) as info:
        reg.get("lorra")
    message = str(info.value)
    assert "did you mean 'lora'?" in message
    assert "known: ia3, lora, prefix" in message
    assert message.count(".") >= 1 and "\n" not in message


def test_unknown_name_without_close_match_has_no_hint() -> None:
    reg: Registry[Thing] = Registry("quantizer")
    reg.add(Thing("int8"), ALPHA)
    with pytest.raises(UnknownNameError) as info:
        reg.get("completely-different")
    assert "did you mean" not in str(info.value)
    assert "unknown quantizer 'completely-different'" in str(info.value)


def test_unknown_name_in_empty_registry_says_none_known() -> None:
    reg: Registry[Thing] = Registry("dataset format")
    assert reg.unknown_message("csv").endswith("known: none.")


def test_unknown_name_error_is_a_usage_error_with_exit_code_2() -> None:
    reg: Registry[Thing] = Registry("task")
    with pytest.raises(UsageError) as info:
        reg.entry("x")
    assert info.value.exit_code == 2


def test_cli_flag_defaults_from_kind() -> None:
    assert Registry("dataset format").cli_flag == "--dataset-format"
    assert Registry("method", "--method").cli_flag == "--method"


def test_discard_plugins_drops_only_their_entries() -> None:
    reg: Registry[Thing] = Registry("method")
    reg.add(Thing("a"), ALPHA)
    reg.add(Thing("b"), BETA)
    reg.discard_plugins({"alpha_plugin"})
    assert reg.names() == ["b"]


def test_a_registration_without_a_name_fails_only_that_plugin(caplog):
    from tunekit import plugins
    from tunekit.hookspecs import hookimpl

    class Nameless:
        @hookimpl
        def register_methods(self, register):
            register(object())

    previous = plugins._current
    try:
        with caplog.at_level("WARNING", logger="tunekit.plugins"):
            regs = plugins.reset(extra_plugins=[Nameless()])
        status = next(p for p in regs.plugins if p.name == "Nameless")
        assert status.state == "failed" and "without a string 'name'" in status.error
        assert "lora" in regs.methods  # every other plugin still works
    finally:
        plugins._current = previous
