"""The plugin author's contract, checked: required members of each protocol and the optional ones' defaults.

Each protocol module (``tunekit.methods.protocol``, ``tunekit.tasks.protocol``, ``tunekit.data``, ``tunekit.models``) declares
its ``typing.Protocol`` classes (the required members) and one table of the optional attributes the core
reads, with their defaults and meaning. Code reads an optional attribute through :func:`optional`, and
docs/plugins.md is tested against the same tables, so the contract has one place of truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionalAttr:
    """One optional attribute of a plugin object: its default when absent, and what it means."""

    default: Any
    doc: str
    callable: bool = False
    """True when the attribute is a method (its default is then "absent": the core skips what it does)."""


def protocol_members(protocol: type) -> list[str]:
    """The required members of a ``typing.Protocol`` class: its annotated attributes, then its methods."""
    names = [n for n in getattr(protocol, "__annotations__", {}) if not n.startswith("_")]
    names += [n for n, v in vars(protocol).items() if not n.startswith("_") and callable(v) and n not in names]
    return names


def missing_members(obj: Any, protocol: type) -> list[str]:
    """Required members of ``protocol`` that ``obj`` lacks (a method member must also be callable)."""
    methods = {n for n, v in vars(protocol).items() if not n.startswith("_") and callable(v)}
    missing = []
    for name in protocol_members(protocol):
        value = getattr(obj, name, _ABSENT)
        if value is _ABSENT or (name in methods and not callable(value)):
            missing.append(name)
        elif name == "options_class" and not (isinstance(value, type) and dataclasses.is_dataclass(value)):
            missing.append("options_class (a dataclass)")
    return missing


def optional(obj: Any, name: str, table: dict[str, OptionalAttr]) -> Any:
    """``obj.name`` if the plugin object defines it, else the declared default from ``table``."""
    return getattr(obj, name, table[name].default)


_ABSENT = object()
