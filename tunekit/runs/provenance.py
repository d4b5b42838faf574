"""Which plugin distribution (and version) provided a run's method and task.

A run records it in ``<run>/providers.json`` when it starts (and in ``summary.json`` when it ends), so
that loading the run after its plugin was uninstalled, failed to load or was blocked says what to
install or unblock instead of only "unknown method".
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from tunekit.errors import UnknownNameError

log = logging.getLogger("tunekit.run")

PROVIDERS_FILE = "providers.json"


def _registry(regs: Any, kind: str) -> Any:
    return getattr(regs, f"{kind}s")


def describe(regs: Any, method: str, task: str) -> dict[str, dict[str, str]]:
    """``{"method": {name, plugin, distribution, version}, "task": {...}}`` from the loaded registries."""
    out: dict[str, dict[str, str]] = {}
    for kind, name in (("method", method), ("task", task)):
        provider = _registry(regs, kind).entry(name).provider
        out[kind] = {"name": name, "plugin": provider.plugin, "distribution": provider.distribution,
                     "version": provider.version}
    return out


def write(folder: Path, providers: Mapping[str, Any]) -> None:
    """Write ``providers.json`` into the run folder."""
    (folder / PROVIDERS_FILE).write_text(json.dumps(dict(providers), indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")


def read(folder: Path) -> dict[str, dict[str, str]]:
    """The providers a run recorded in ``providers.json`` (written before training starts); empty for older runs."""
    try:
        data = json.loads((folder / PROVIDERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _plugin_state(regs: Any, recorded: Mapping[str, str]) -> str:
    """What happened to the recorded plugin in this process: loaded, failed, blocked, or '' (not installed)."""
    for status in getattr(regs, "plugins", []) or []:
        if status.name == recorded.get("plugin") or (
                recorded.get("distribution") not in (None, "", "tunekit") and status.distribution == recorded["distribution"]):
            return str(status.state)
    return ""


def _unblock(plugin: str, dist: str) -> str:
    """How to unblock a plugin: the TUNEKIT_DISABLE_PLUGINS entries naming it, else the allowlist."""
    names = {plugin, plugin.rsplit(".", 1)[-1], dist}
    listed = [n.strip() for n in os.environ.get("TUNEKIT_DISABLE_PLUGINS", "").split(",") if n.strip() in names]
    if listed:
        return f"remove {', '.join(repr(n) for n in listed)} from TUNEKIT_DISABLE_PLUGINS"
    return f"add {plugin!r} to TUNEKIT_LOAD_PLUGINS"


def missing_message(folder: Path, kind: str, name: str, recorded: Mapping[str, str], state: str) -> str:
    """One sentence saying which distribution to install or unblock for a run's missing method or task."""
    dist = recorded.get("distribution") or "?"
    version = recorded.get("version") or ""
    made_by = f"{dist} {version}".strip()
    where = f"run folder {str(folder)!r} was trained with the {kind} {name!r} from {made_by}"
    plugin = recorded.get("plugin") or dist
    if state == "blocked":
        return f"{where}, whose plugin {plugin!r} is blocked here; {_unblock(plugin, dist)} to load this run."
    if state == "failed":
        return (f"{where}, whose plugin {plugin!r} failed to load; see `tunekit --debug plugins` and fix or "
                f"reinstall {dist} to load this run.")
    pin = f"{dist}=={version}" if version else dist
    return f"{where}, which is not installed here; install it (pip install '{pin}') to load this run."


def lookup(regs: Any, kind: str, name: str, folder: Path) -> Any:
    """The registered ``kind`` object ``name`` of a saved run; when missing, name what to install or unblock."""
    registry = _registry(regs, kind)
    recorded = read(folder).get(kind) or {}
    if name in registry:
        entry = registry.entry(name)
        version = recorded.get("version")
        if version and entry.provider.distribution == recorded.get("distribution") and entry.provider.version != version:
            log.warning("run %s was trained with %s %s; %s %s is installed", folder, recorded.get("distribution"),
                        version, entry.provider.distribution, entry.provider.version)
        return entry.obj
    if not recorded or recorded.get("name", name) != name:
        return registry.get(name)  # raises UnknownNameError with the did-you-mean hint
    raise UnknownNameError(missing_message(folder, kind, name, recorded, _plugin_state(regs, recorded)))
