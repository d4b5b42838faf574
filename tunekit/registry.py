"""Named registries filled by plugins: lookup by name, provider tracking, did-you-mean."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tunekit.errors import PluginCollisionError, PluginError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Provider:
    """Who provided a registry entry: the pluggy plugin name and its distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}".strip()


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its name, one-line description and provider."""

    name: str
    obj: T
    description: str
    provider: Provider


class Registry(Generic[T]):
    """Objects of one kind (methods, tasks, ...) by name."""

    def __init__(self, kind: str, cli_flag: str | None = None) -> None:
        self.kind = kind
        self.cli_flag = cli_flag or f"--{kind.replace(' ', '-')}"
        self._entries: dict[str, Entry[T]] = {}

    def add(self, obj: Any, provider: Provider) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {provider.distribution!r} registered a {self.kind} without a string 'name'; "
                "give the object a name attribute."
            )
        if name in self._entries:
            other = self._entries[name].provider
            raise PluginCollisionError(
                f"{provider} (plugin {provider.plugin!r}) registers the {self.kind} {name!r} that {other} "
                f"(plugin {other.plugin!r}) already provides; the first is kept: rename it in {provider.distribution}, "
                "or uninstall one or block it with TUNEKIT_DISABLE_PLUGINS."
            )
        description = (getattr(obj, "description", "") or "").strip().splitlines()
        self._entries[name] = Entry(name, obj, description[0] if description else "", provider)

    def discard_plugins(self, plugins: set[str]) -> None:
        """Drop every entry provided by one of the named plugins (used when a plugin fails part-way)."""
        self._entries = {n: e for n, e in self._entries.items() if e.provider.plugin not in plugins}

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} {name!r}; {hint}known: {known}."

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)
