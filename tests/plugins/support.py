"""Shared pieces of the plugin-manager tests: a do-nothing method, an in-process plugin, status look-ups."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from tunekit import plugins
from tunekit.hookspecs import hookimpl


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


def status(regs: plugins.Registries, name: str) -> plugins.PluginStatus:
    matches = [p for p in regs.plugins if p.name == name]
    assert len(matches) == 1, [p.name for p in regs.plugins]
    return matches[0]


def plugin_warnings(caplog: pytest.LogCaptureFixture, about: str) -> list[str]:
    """Warnings of the plugin manager that mention ``about`` (other installed plugins may warn too)."""
    return [r.getMessage() for r in caplog.records
            if r.name == "tunekit.plugins" and r.levelno == logging.WARNING and about in r.getMessage()]
