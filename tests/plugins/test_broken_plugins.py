"""Broken third-party plugins fail alone: a name clash with a built-in, a misspelt hook, a malformed object.

Each is installed for real into a temporary folder on ``sys.path`` (a module plus a ``*.dist-info`` with
``entry_points.txt``), which is what ``importlib.metadata`` reads after a pip install. Every command keeps
working, in process (click's runner) and in a real ``python -m tunekit`` subprocess.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.helpers import method_plugin_source, write_distribution
from tests.plugins.support import FakeMethod
from tunekit import plugins
from tunekit.hookspecs import hookimpl

BROKEN = {
    "tunekit-clash": method_plugin_source("lora"),  # a third-party method called like a built-in one
    "tunekit-typo": method_plugin_source("typo-method", hook="register_method"),  # register_methods misspelt
    "tunekit-malformed": method_plugin_source("no-apply").replace("def apply", "def not_apply"),  # no apply
}
MODULES = {dist: f"tk_broken_{dist.split('-')[1]}" for dist in BROKEN}


def install(root: Path) -> None:
    """Write the three broken distributions into ``root`` (a folder that goes on sys.path)."""
    root.mkdir(exist_ok=True)
    for dist, body in BROKEN.items():
        module = MODULES[dist]
        write_distribution(root, dist, "1.0", module, body)


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The three broken plugins installed, and fresh registries loaded with them (restored after)."""
    root = tmp_path / "site"
    install(root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TUNEKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.setattr(plugins, "_current", plugins._current)
    importlib.invalidate_caches()
    plugins.reset()
    yield root
    for module in MODULES.values():
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def states() -> dict[str, plugins.PluginStatus]:
    return {p.distribution: p for p in plugins.registries().plugins if p.distribution in BROKEN}


def invoke(*args: str, catch: bool = False) -> Any:
    from tunekit import cli as cli_module

    cli_module._load_commands()
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=catch, terminal_width=400,
                              env={"COLUMNS": "400"})


def test_each_broken_plugin_is_failed_with_what_is_wrong(broken: Path) -> None:
    found = states()
    assert {d: p.state for d, p in found.items()} == dict.fromkeys(BROKEN, "failed")
    clash = found["tunekit-clash"].error
    assert "PluginCollisionError" in clash and "'lora'" in clash
    assert "tunekit-clash 1.0" in clash and "tunekit " in clash and "tunekit.builtins.methods.lora" in clash  # both providers
    typo = found["tunekit-typo"].error
    assert "unknown hook 'register_method'" in typo and "did you mean 'register_methods'" in typo
    assert "register_tasks" in typo  # the valid names are listed
    malformed = found["tunekit-malformed"].error
    assert "'no-apply' without apply;" in malformed and "expected_trainable" in malformed
    regs = plugins.registries()
    assert regs.methods.entry("lora").provider.distribution == "tunekit"  # the built-in is kept
    assert "no-apply" not in regs.methods and "typo-method" not in regs.methods
    for p in found.values():
        assert p.traceback.strip().splitlines()[-1].startswith(("tunekit.errors.Plugin", "PluginError"))


def test_every_command_still_works(broken: Path) -> None:
    for args in (["--help"], ["plugins"], ["methods"], ["tasks"], ["run", "--help"], ["export", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    # `tunekit run` gets as far as its own checks: the registry of methods is intact
    from tunekit.errors import UnknownNameError

    refused = invoke("run", "--method", "lorra", "--data", "demo", catch=True)
    assert isinstance(refused.exception, UnknownNameError) and "did you mean 'lora'" in str(refused.exception)
    listing = invoke("plugins").output
    for dist in BROKEN:
        row = next(line for line in listing.splitlines() if dist in line)
        assert "failed" in row


def test_debug_plugins_prints_the_tracebacks(broken: Path) -> None:
    plain = invoke("plugins").output
    assert "Traceback" not in plain
    debug = invoke("--debug", "plugins").output
    assert "Traceback (most recent call last)" in debug
    assert f"{MODULES['tunekit-clash']}.py" in debug  # the plugin's own frame is shown
    for dist in BROKEN:
        assert f"({dist}) failed:" in debug


def test_a_failed_plugin_adds_no_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class CommandAndTypo:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            raise AssertionError("a failed plugin's commands must not be added")

        @hookimpl
        def register_method(self, register: Any) -> None:  # misspelt
            pass

    monkeypatch.setattr(plugins, "_current", plugins._current)
    regs = plugins.reset(extra_plugins=[CommandAndTypo()])
    assert next(p for p in regs.plugins if p.name == "CommandAndTypo").state == "failed"
    assert not [i for i in regs.pm.hook.register_commands.get_hookimpls() if i.plugin_name == "CommandAndTypo"]


def test_new_plugin_refuses_a_taken_name(tmp_path: Path) -> None:
    from tunekit.errors import UsageError

    for taken in ("lora", "freeze"):
        result = invoke("new-plugin", taken, "--dir", str(tmp_path), catch=True)
        assert isinstance(result.exception, UsageError) and result.exception.exit_code == 2
        message = str(result.exception)
        assert "already registered as a method" in message and f"'{taken}'" in message
    assert not any(tmp_path.iterdir())  # nothing written


def test_new_plugin_refusal_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunekit import cli as cli_module

    with pytest.raises(SystemExit) as info:
        cli_module.main(["new-plugin", "lora", "--dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "choose another name" in err
    assert not any(tmp_path.iterdir())


def test_methods_verbose_shows_option_help_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from tunekit.options import option

    @dataclass
    class BracketOptions:
        targets: list[str] = option(["query"], "Modules to train, e.g. [query, intermediate] or [bold]x[/bold].")

    class Bracket(FakeMethod):
        options_class = BracketOptions

    class Plugin:
        @hookimpl
        def register_methods(self, register: Any) -> None:
            register(Bracket("bracket-help", "Help text with [square brackets]."))

    from tunekit import cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 400)  # no wrapping inside table cells
    monkeypatch.setattr(plugins, "_current", plugins._current)
    plugins.reset(extra_plugins=[Plugin()])
    result = invoke("methods", "-v")
    assert result.exit_code == 0, result.output
    assert "e.g. [query, intermediate] or [bold]x[/bold]." in result.output
    assert "Help text with [square brackets]." in result.output


def test_a_real_process_with_the_broken_plugins_installed(tmp_path: Path) -> None:
    root = tmp_path / "site"
    install(root)
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEKIT_DISABLE_PLUGINS", "TUNEKIT_LOAD_PLUGINS")}
    env.update(PYTHONPATH=os.pathsep.join([str(root), env.get("PYTHONPATH", "")]), COLUMNS="400")

    def tunekit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunekit", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    listing = tunekit("--debug", "plugins")
    assert listing.returncode == 0, listing.stderr
    for dist in BROKEN:
        assert f"({dist}) failed:" in listing.stdout
    assert "Traceback (most recent call last)" in listing.stdout
    helped = tunekit("--help")
    assert helped.returncode == 0, helped.stderr
    assert "plugins" in helped.stdout
    # one warning line per broken plugin, no traceback without --debug
    assert "Traceback" not in helped.stderr
    assert all(dist in helped.stderr for dist in BROKEN)
