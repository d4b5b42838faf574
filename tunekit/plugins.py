"""The plugin manager: built-ins, installed entry points, isolation and the registries they fill.

Built-in plugins are the modules and packages inside the kind folders of ``tunekit.builtins``; they are found by
scanning that package, so this module names none of them. Third-party plugins are modules named by
entry points in the ``tunekit`` group. A plugin that fails to import, implements a hook no
specification declares (a misspelt name), registers an object lacking a required member of its
protocol, registers a name an earlier plugin already has (built-ins load first, so a built-in is kept)
or raises inside a hook is marked failed (logged once, with its traceback kept for ``--debug``) and
the others keep working.

Environment:
  TUNEKIT_DISABLE_PLUGINS  comma-separated plugin or distribution names to skip.
  TUNEKIT_LOAD_PLUGINS     comma-separated allowlist of third-party plugins; when set, no other
                           third-party plugin is loaded (built-ins always load unless disabled).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import logging
import os
import pkgutil
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from tunekit import hookspecs
from tunekit.errors import PluginError
from tunekit.protocols import missing_members, protocol_members
from tunekit.registry import Provider, Registry

log = logging.getLogger("tunekit.plugins")

GROUP = "tunekit"
BUILTIN_PACKAGE = "tunekit.builtins"

# hook name -> (registry attribute it fills, "module:Protocol" every registered object is checked against)
HOOKS = {
    "register_methods": ("methods", "tunekit.methods.protocol:Method"),
    "register_tasks": ("tasks", "tunekit.tasks.protocol:Task"),
    "register_dataset_formats": ("dataset_formats", "tunekit.data:DatasetFormat"),
    "register_model_sources": ("model_sources", "tunekit.models:ModelSource"),
    "register_quantizers": ("quantizers", "tunekit.models:Quantizer"),
}


@dataclass
class PluginStatus:
    """What happened to one plugin: loaded, failed (with the error and its traceback) or blocked."""

    name: str
    distribution: str
    version: str
    state: str  # "loaded" | "failed" | "blocked"
    error: str = ""
    builtin: bool = False
    traceback: str = ""
    """The formatted traceback of a failure (``tunekit --debug plugins`` prints it)."""


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

    def kinds(self) -> list[Registry]:
        """The registry of every kind (methods, tasks, dataset formats, model sources, quantizers)."""
        return [getattr(self, attr) for attr, _protocol in HOOKS.values()]


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
    """Every module or package directly inside a kind folder of ``tunekit.builtins`` (``methods/lora``, ...)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    found = []
    for kind in pkgutil.iter_modules(package.__path__):
        if not kind.ispkg:
            continue
        sub = importlib.import_module(f"{BUILTIN_PACKAGE}.{kind.name}")
        found += [f"{sub.__name__}.{m.name}" for m in pkgutil.iter_modules(sub.__path__)]
    return sorted(found)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def load(extra_plugins: list[Any] | None = None) -> Registries:
    """Load built-in and installed plugins (plus ``extra_plugins``) and fill fresh registries.

    Nothing a plugin does raises out of here: a plugin that fails to import, implements a hook that
    does not exist, registers a malformed object or a name another plugin already registered is
    marked failed (the earlier registration is kept) and everything else keeps working.
    """
    loader = _Loader(Registries(pm=new_plugin_manager()))
    disabled = _names("TUNEKIT_DISABLE_PLUGINS") or set()
    loader.load_builtins(disabled)
    loader.load_entry_points(disabled, _names("TUNEKIT_LOAD_PLUGINS"))
    for plugin in extra_plugins or []:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        loader.add(plugin, PluginStatus(name, name, "", "loaded"))
    loader.fill()
    return loader.out


class _Loader:
    """One pass of plugin loading into ``out``."""

    def __init__(self, out: Registries) -> None:
        self.out = out
        self.pm: pluggy.PluginManager = out.pm  # type: ignore[assignment]
        self.providers: dict[str, PluginStatus] = {}
        self.objects: dict[str, Any] = {}

    def add(self, plugin: Any, status: PluginStatus) -> None:
        """Record ``status``; register a loaded ``plugin`` with pluggy unless its hooks are malformed."""
        self.out.plugins.append(status)
        if status.state != "loaded":
            return
        try:
            self.pm.register(plugin, name=status.name)
        except Exception as exc:  # a malformed plugin (e.g. hookimpl with unknown arguments)
            _fail(status, exc)
            return
        unknown = _unknown_hooks(self.pm, plugin)
        if unknown:
            self.pm.unregister(plugin)
            _fail(status, PluginError(_unknown_hook_message(status, unknown)))
            return
        self.providers[status.name] = status
        self.objects[status.name] = plugin

    def load_builtins(self, disabled: set[str]) -> None:
        version = _tunekit_version()
        for modname in _builtin_modules():
            short = modname.rsplit(".", 1)[1]
            status = PluginStatus(modname, "tunekit", version, "loaded", builtin=True)
            if {modname, short} & disabled:
                status.state = "blocked"
                self.add(None, status)
                continue
            self.add(_import(modname, status), status)

    def load_entry_points(self, disabled: set[str], allowed: set[str] | None) -> None:
        for ep in md.entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist else ep.name
            status = PluginStatus(ep.name, dist, ep.dist.version if ep.dist else "", "loaded")
            if {ep.name, dist} & disabled or (allowed is not None and not {ep.name, dist} & allowed):
                status.state = "blocked"
                self.add(None, status)
                continue
            if ep.name in self.providers or self.pm.get_plugin(ep.name) is not None:
                # importlib.metadata already folds a distribution seen twice on sys.path into one, so this is
                # a second distribution using the same plugin name: keep the first, report the second.
                first = self.providers.get(ep.name)
                owner = first.distribution if first else "another plugin"
                _fail(status, PluginError(
                    f"the plugin name {ep.name!r} is already taken by {owner}; rename the entry point in {dist}."
                ))
                self.out.plugins.append(status)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                plugin = None
                _fail(status, exc)
            self.add(plugin, status)

    def fill(self) -> None:
        """Call every registration hook; then drop what failed plugins registered and unregister them."""
        for hook_name, (attr, protocol) in HOOKS.items():
            _call_hook(self.pm, hook_name, getattr(self.out, attr), self.providers, _protocol(protocol))
        try:
            self.pm.check_pending()  # already checked per plugin in add(); a guard against what slipped past
        except pluggy.PluginValidationError as exc:
            status = next((p for p in self.providers.values() if self.objects.get(p.name) is exc.plugin), None)
            if status is None:
                raise
            _fail(status, exc)
        failed = {p.name for p in self.out.plugins if p.state == "failed"}
        if not failed:
            return
        # A plugin that failed in a later hook keeps nothing it registered in earlier ones, nor its commands.
        for registry in self.out.kinds():
            registry.discard_plugins(failed)
        for name in failed & set(self.objects):
            self.pm.unregister(self.objects[name], name=name)


def _import(modname: str, status: PluginStatus) -> ModuleType | None:
    try:
        return importlib.import_module(modname)
    except Exception as exc:
        _fail(status, exc)
        return None


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of the hooks ``plugin`` implements that no specification declares (a misspelt hook)."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or []
                  if not caller.has_spec()
                  and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()))


def _unknown_hook_message(status: PluginStatus, unknown: list[str]) -> str:
    valid = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "tunekit_spec"))
    close = difflib.get_close_matches(unknown[0], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"plugin {status.name!r} from {status.distribution} implements the unknown hook "
        f"{', '.join(map(repr, unknown))}{hint}; rename it to one of the hooks: {', '.join(valid)}."
    )


def _protocol(path: str) -> type:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)


def _fail(status: PluginStatus, exc: BaseException) -> None:
    status.state = "failed"
    status.error = f"{type(exc).__name__}: {exc}"
    status.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.warning("plugin %r from %s failed to load and was skipped: %s", status.name, status.distribution, status.error)


def _checked(obj: Any, registry: Registry, protocol: type, provider: Provider) -> Any:
    """``obj`` if it has every required member of ``protocol``; else a PluginError saying what is missing."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        return obj  # the registry refuses it with its own message ("without a string 'name'")
    missing = missing_members(obj, protocol)
    if missing:
        raise PluginError(
            f"plugin {provider.plugin!r} from {provider.distribution} registered the {registry.kind} {name!r} "
            f"without {', '.join(missing)}; a {registry.kind} needs {', '.join(protocol_members(protocol))} "
            f"(see {protocol.__module__}.{protocol.__name__} in docs/plugins.md)."
        )
    return obj


def _call_hook(pm: pluggy.PluginManager, hook_name: str, registry: Registry, providers: dict[str, PluginStatus],
               protocol: type) -> None:
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        status = providers.get(impl.plugin_name)
        if status is None or status.state != "loaded":
            continue
        provider = Provider(status.name, status.distribution, status.version)
        try:
            impl.function(lambda obj, _p=provider: registry.add(_checked(obj, registry, protocol, _p), _p))
        except Exception as exc:  # this plugin alone is broken: a crash, a malformed object, a name taken already
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
