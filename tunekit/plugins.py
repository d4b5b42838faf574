"""The plugin manager: built-ins, installed entry points, isolation and the registries they fill.

Built-in plugins are the modules and packages directly inside ``tunekit.builtins``; they are found by
scanning that package, so this module names none of them. Third-party plugins are modules named by
entry points in the ``tunekit`` group. A plugin that fails to import or raises inside a hook is
recorded (and logged once) and the others keep working.

Environment:
  TUNEKIT_DISABLE_PLUGINS  comma-separated plugin or distribution names to skip.
  TUNEKIT_LOAD_PLUGINS     comma-separated allowlist of third-party plugins; when set, no other
                           third-party plugin is loaded (built-ins always load unless disabled).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import os
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from tunekit import hookspecs
from tunekit.errors import PluginCollisionError, PluginError
from tunekit.registry import Provider, Registry

log = logging.getLogger("tunekit.plugins")

GROUP = "tunekit"
BUILTIN_PACKAGE = "tunekit.builtins"

# hook name -> (registry attribute, human name of the kind, CLI flag that selects one)
HOOKS = {
    "register_methods": ("methods", "method", "--method"),
    "register_tasks": ("tasks", "task", "--task"),
    "register_dataset_formats": ("dataset_formats", "dataset format", "--set data.format"),
    "register_model_sources": ("model_sources", "model source", "--model"),
    "register_quantizers": ("quantizers", "quantizer", "--quantize"),
}


@dataclass
class PluginStatus:
    """What happened to one plugin: loaded, failed (with the error) or blocked."""

    name: str
    distribution: str
    version: str
    state: str  # "loaded" | "failed" | "blocked"
    error: str = ""
    builtin: bool = False


@dataclass
class Registries:
    """Everything plugins registered, plus the status of each plugin."""

    methods: Registry = field(default_factory=lambda: Registry("method", "--method"))
    tasks: Registry = field(default_factory=lambda: Registry("task", "--task"))
    dataset_formats: Registry = field(default_factory=lambda: Registry("dataset format", "--set data.format"))
    model_sources: Registry = field(default_factory=lambda: Registry("model source", "--model"))
    quantizers: Registry = field(default_factory=lambda: Registry("quantizer", "--quantize"))
    plugins: list[PluginStatus] = field(default_factory=list)
    pm: pluggy.PluginManager | None = None

    @property
    def failures(self) -> list[PluginStatus]:
        return [p for p in self.plugins if p.state == "failed"]


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _tunekit_version() -> str:
    try:
        return md.version("tunekit")
    except md.PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def _builtin_modules() -> list[str]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(f"{BUILTIN_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def load(extra_plugins: list[Any] | None = None) -> Registries:
    """Load built-in and installed plugins (plus ``extra_plugins``) and fill fresh registries."""
    pm = new_plugin_manager()
    out = Registries(pm=pm)
    disabled = _names("TUNEKIT_DISABLE_PLUGINS") or set()
    allowed = _names("TUNEKIT_LOAD_PLUGINS")
    providers: dict[str, PluginStatus] = {}
    version = _tunekit_version()

    def add(plugin: Any, status: PluginStatus) -> None:
        out.plugins.append(status)
        if status.state != "loaded":
            return
        try:
            pm.register(plugin, name=status.name)
        except Exception as exc:  # a malformed plugin (e.g. hookimpl with unknown arguments)
            _fail(status, exc)
            return
        providers[status.name] = status

    for modname in _builtin_modules():
        short = modname.rsplit(".", 1)[1]
        status = PluginStatus(modname, "tunekit", version, "loaded", builtin=True)
        if {modname, short} & disabled:
            status.state = "blocked"
            add(None, status)
            continue
        try:
            module: ModuleType | None = importlib.import_module(modname)
        except Exception as exc:
            module = None
            _fail(status, exc)
        add(module, status)

    for ep in md.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else ep.name
        dist_version = ep.dist.version if ep.dist else ""
        status = PluginStatus(ep.name, dist, dist_version, "loaded")
        if {ep.name, dist} & disabled or (allowed is not None and not {ep.name, dist} & allowed):
            status.state = "blocked"
            add(None, status)
            continue
        if ep.name in providers or pm.get_plugin(ep.name) is not None:
            # importlib.metadata already folds a distribution seen twice on sys.path into one, so this is a
            # second distribution using the same plugin name: keep the first, report the second.
            first = providers.get(ep.name)
            owner = first.distribution if first else "another plugin"
            _fail(status, PluginError(
                f"the plugin name {ep.name!r} is already taken by {owner}; rename the entry point in {dist}."
            ))
            out.plugins.append(status)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            plugin = None
            _fail(status, exc)
        add(plugin, status)

    for plugin in extra_plugins or []:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        add(plugin, PluginStatus(name, name, "", "loaded"))

    for hook_name, (attr, _kind, _flag) in HOOKS.items():
        registry: Registry = getattr(out, attr)
        _call_hook(pm, hook_name, registry, providers)
    # A plugin that raised in a later hook keeps nothing it registered in earlier ones.
    failed = {p.name for p in out.plugins if p.state == "failed"}
    if failed:
        for attr, _kind, _flag in HOOKS.values():
            getattr(out, attr).discard_plugins(failed)
    return out


def _fail(status: PluginStatus, exc: BaseException) -> None:
    status.state = "failed"
    status.error = f"{type(exc).__name__}: {exc}"
    log.warning("plugin %r from %s failed to load and was skipped: %s", status.name, status.distribution, status.error)


def _call_hook(pm: pluggy.PluginManager, hook_name: str, registry: Registry, providers: dict[str, PluginStatus]) -> None:
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        status = providers.get(impl.plugin_name)
        if status is None or status.state != "loaded":
            continue
        provider = Provider(status.name, status.distribution, status.version)
        try:
            impl.function(lambda obj, _p=provider: registry.add(obj, _p))
        except PluginCollisionError:
            raise  # two plugins disagree: neither can be chosen silently
        except Exception as exc:  # this plugin alone is broken (a crash, a nameless registration, ...)
            _fail(status, exc)


_current: Registries | None = None


def registries() -> Registries:
    """The process-wide registries, loaded on first use."""
    global _current
    if _current is None:
        _current = load()
    return _current


def reset(extra_plugins: list[Any] | None = None) -> Registries:
    """Reload all plugins (tests use this to add a plugin for the duration of one test)."""
    global _current
    _current = load(extra_plugins)
    return _current
