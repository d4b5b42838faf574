"""The search space of a sweep: a YAML file parsed and checked, and one run config sampled from an Optuna trial.

A space file::

    metric: eval_matthews_correlation   # optional; default: the task's own metric (training.metric_for_best)
    direction: maximize                 # optional; default: the task's sense of its metric
    pruner: {type: median, n_warmup_steps: 20}   # median, hyperband or none (the default)
    sampler: {type: tpe, seed: 0}                # tpe (default) or random; seed default: training.seed
    params:
      training.lr: {low: 1.0e-5, high: 1.0e-2, log: true}      # float (log-uniform with log: true)
      training.batch_size: {choices: [8, 16]}                  # categorical
      method.name: {choices: [lora, pfeiffer]}
      method.r: {low: 2, high: 16, when: {method.name: lora}}  # int; only sampled when the method is lora
      training.epochs:                                         # one range per condition
        - {choices: [2, 3], when: {method.name: full}}
        - {choices: [1, 2], when: {method.name: lora}}

Keys are dotted config keys (``SECTION.KEY``, as ``--set`` takes them). A parameter with ``when`` is sampled
only when every named key has one of the given values; the named keys must come earlier in ``params`` or be
fixed by the base config. A key may have several ranges, each with its own ``when``, so that methods which
want very different learning rates each get theirs; at most one of them may apply to a trial. Changing ``method.name`` (or ``task.name``) drops the base config's options of the
other method, so they cannot leak into one they do not belong to.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunekit import config as config_mod
from tunekit.errors import ConfigError, UsageError

PRUNERS = ("none", "median", "hyperband")
SAMPLERS = ("tpe", "random")
TOP_KEYS = ("metric", "direction", "pruner", "sampler", "params")
PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "when")
PLUGIN_SECTIONS = ("method", "task")


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    kind: str
    """``float``, ``int`` or ``categorical``."""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """(key, allowed values) pairs that must all hold for this parameter to be sampled."""
    name: str = ""
    """The parameter's name in the Optuna study: ``key``, or ``key`` and its condition when the key has several
    ranges (Optuna models each name on its own, so two methods' learning rates do not blur into one)."""

    @property
    def optuna_name(self) -> str:
        return self.name or self.key

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the conditions hold for the values chosen so far (``values``: dotted key -> value)."""
        return all(values.get(key) in allowed for key, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """Ask the Optuna trial for a value of this parameter."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.optuna_name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.optuna_name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.optuna_name, float(self.low), float(self.high), step=self.step, log=self.log)

    def corners(self) -> list[Any]:
        """The values that bound this parameter (the ends of a range, every choice): what validation tries."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


@dataclass
class Space:
    """A parsed space file."""

    params: list[Param]
    metric: str | None = None
    direction: str | None = None
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    source: str = ""

    def sample(self, trial: Any, base: Mapping[str, Any]) -> dict[str, Any]:
        """The config tree of one trial: ``base`` with each active parameter set to the value the trial suggests."""
        tree = copy_tree(base)
        values = _fixed_values(base)
        sampled: set[str] = set()
        for param in self.params:
            if param.active(values):
                if param.key in sampled:
                    raise ConfigError(f"space file {self.source!r}: two ranges of {param.key} apply to the same trial; "
                                      "make their `when` conditions exclusive.")
                sampled.add(param.key)
                values[param.key] = param.suggest(trial)
                put(tree, param.key, values[param.key])
        return tree

    def build_pruner(self) -> Any:
        """The Optuna pruner the space file names."""
        import optuna

        kind, options = self.pruner["type"], {k: v for k, v in self.pruner.items() if k != "type"}
        if kind == "median":
            return optuna.pruners.MedianPruner(**options)
        if kind == "hyperband":
            return optuna.pruners.HyperbandPruner(**options)
        return optuna.pruners.NopPruner()

    def build_sampler(self, seed: int, stream: tuple[int, ...] = ()) -> Any:
        """The Optuna sampler the space file names, seeded with its ``seed`` or ``seed`` (the run's training.seed).

        ``stream`` (worker number, trials already in the study) gives each worker, and each continuation of a
        stopped sweep, a seed of its own derived from that one: a sampler rebuilt with the same seed would propose
        the trials it proposed before. A fresh study with one worker (``stream`` all zeros) uses the seed as is.
        """
        import numpy as np
        import optuna

        options = {k: v for k, v in self.sampler.items() if k != "type"}
        base = int(options.get("seed", seed))
        if any(stream):
            base = int(np.random.SeedSequence([base, *stream]).generate_state(1)[0])
        options["seed"] = base
        if self.sampler["type"] == "random":
            return optuna.samplers.RandomSampler(**options)
        return optuna.samplers.TPESampler(**options)


def put(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a config tree; a new method or task name starts that section afresh."""
    section, _, rest = key.partition(".")
    if section in PLUGIN_SECTIONS and rest == "name":
        current = tree.get(section)
        current_name = current.get("name") if isinstance(current, Mapping) else current
        if current_name != value:
            tree[section] = {"name": value}
            return
    if isinstance(tree.get(section), str):  # `method: lora` shorthand
        tree[section] = {"name": tree[section]}
    config_mod.set_path(tree, key, value)


def copy_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a config tree (mappings and lists copied, leaves shared)."""
    return {k: copy_tree(v) if isinstance(v, Mapping) else (list(v) if isinstance(v, list) else v) for k, v in tree.items()}


def _fixed_values(base: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted key -> value of the base config (the resolved defaults included), for ``when`` conditions."""
    resolved = config_mod.from_dict(base).to_dict()
    out: dict[str, Any] = {}
    for section, content in resolved.items():
        for key, value in (content.items() if isinstance(content, Mapping) else ()):
            out[f"{section}.{key}"] = value
    return out


def load(path: str | Path, base: Mapping[str, Any]) -> Space:
    """Read and check the space file ``path`` against the base config tree ``base``; ConfigError on bad input."""
    where = str(path)
    tree = config_mod.read_yaml(path)
    unknown = [k for k in tree if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"space file {where!r}: unknown key {unknown[0]!r}; the keys are {', '.join(TOP_KEYS)}.")
    raw_params = tree.get("params")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise ConfigError(f"space file {where!r} has no params; add a `params:` mapping of config keys to ranges.")
    params = [param for key, spec in raw_params.items() for param in _params(where, str(key), spec)]
    space = Space(params, metric=_metric(where, tree.get("metric")), direction=_direction(where, tree.get("direction")),
                  pruner=_choice_section(where, "pruner", tree.get("pruner"), PRUNERS, "none"),
                  sampler=_choice_section(where, "sampler", tree.get("sampler"), SAMPLERS, "tpe"), source=where)
    _check_conditions(where, space.params)
    _check_options(where, space)
    check_against(space, base)
    return space


def _number(where: str, key: str, name: str, value: Any) -> float | int:
    """A bound as a number; YAML reads ``1e-5`` (no dot) as text, so numeric text is accepted too."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"space file {where!r}: {key}.{name} must be a number, not {value!r}.")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"space file {where!r}: {key}.{name} must be a number, not {value!r}.") from None


def _params(where: str, key: str, spec: Any) -> list[Param]:
    """The ranges of one ``params`` entry: one, or a list of conditional ones (``[{low: .., when: ..}, ...]``)."""
    if not (isinstance(spec, list) and spec and all(isinstance(s, Mapping) for s in spec)):
        return [_param(where, key, spec)]
    if len(spec) == 1:
        return [_param(where, key, spec[0])]
    params = [_param(where, key, s) for s in spec]
    if any(not p.when for p in params):
        raise ConfigError(f"space file {where!r}: {key} has several ranges, so each needs a `when` saying where it "
                          "applies, e.g. when: {method.name: full}.")
    conditions = [p.when for p in params]
    if len(set(conditions)) < len(conditions):
        raise ConfigError(f"space file {where!r}: two ranges of {key} have the same `when`; merge them or make the "
                          "conditions exclusive.")
    return [replace(p, name=f"{key} ({_condition_text(p.when)})") for p in params]


def _condition_text(when: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    return ", ".join(f"{k}={'|'.join(str(v) for v in values)}" for k, values in when)


def _param(where: str, key: str, spec: Any) -> Param:
    """One ``params`` entry: ``{choices: [...]}``, ``{low: .., high: .., log: .., step: ..}`` or a bare list."""
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"space file {where!r}: {key} must be a mapping such as {{low: 1, high: 8}} or "
                          "{choices: [a, b]}.")
    bad = [k for k in spec if k not in PARAM_KEYS]
    if bad:
        raise ConfigError(f"space file {where!r}: {key} has unknown field {bad[0]!r}; fields are {', '.join(PARAM_KEYS)}.")
    when = _when(where, key, spec.get("when"))
    kind = spec.get("type") or ("categorical" if "choices" in spec else None)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"space file {where!r}: {key} has no choices; list at least one value.")
        if any(isinstance(c, (list, dict)) for c in choices):  # Optuna stores plain values only
            raise ConfigError(f"space file {where!r}: {key} choices must be plain values; write a list option as "
                              "comma-separated text, e.g. \"query,value\".")
        return Param(key, "categorical", choices=tuple(choices), when=when)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"space file {where!r}: {key} needs low and high (a range) or choices (a list).")
    low, high = _number(where, key, "low", spec["low"]), _number(where, key, "high", spec["high"])
    step = _number(where, key, "step", spec["step"]) if spec.get("step") is not None else None
    if kind is None:
        kind = "int" if all(isinstance(v, int) for v in (spec["low"], spec["high"])) else "float"
    if kind not in ("int", "float"):
        raise ConfigError(f"space file {where!r}: {key} has type {kind!r}; use float, int or categorical.")
    log = bool(spec.get("log", False))
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"space file {where!r}: {key} has the empty range [{low}, {high}]; make low <= high.")
    if log and low <= 0:
        raise ConfigError(f"space file {where!r}: {key} is log-scaled, so low must be above 0, not {low}.")
    if log and step is not None:
        raise ConfigError(f"space file {where!r}: {key} cannot have both log and step; drop one.")
    if kind == "int":
        low, high = int(low), int(high)
    return Param(key, kind, low=low, high=high, log=log, step=step, when=when)


def _when(where: str, key: str, value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"space file {where!r}: {key}.when must map config keys to values, e.g. "
                          "{method.name: lora}.")
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in value.items())


def _metric(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"space file {where!r}: metric must be a metric name such as eval_accuracy.")
    return value


def _direction(where: str, value: Any) -> str | None:
    if value is not None and value not in ("maximize", "minimize"):
        raise ConfigError(f"space file {where!r}: direction must be maximize or minimize, not {value!r}.")
    return value


def _choice_section(where: str, name: str, value: Any, kinds: tuple[str, ...], default: str) -> dict[str, Any]:
    """``pruner`` / ``sampler``: a name or ``{type: name, <options>}``."""
    if value is None:
        return {"type": default}
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping) or value.get("type", default) not in kinds:
        shown = value.get("type") if isinstance(value, Mapping) else value
        raise ConfigError(f"space file {where!r}: unknown {name} {shown!r}; choose one of {', '.join(kinds)}.")
    return {"type": default, **value}


def _check_conditions(where: str, params: list[Param]) -> None:
    seen = set()
    for param in params:
        for key, _ in param.when:
            if key in seen or key not in {p.key for p in params}:
                continue
            raise ConfigError(f"space file {where!r}: {param.key} depends on {key}, which comes later in params; "
                              f"list {key} before {param.key}.")
        seen.add(param.key)


def _check_options(where: str, space: Space) -> None:
    """The pruner's and the sampler's options must be ones Optuna's class takes."""
    import optuna

    classes = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner, "tpe": optuna.samplers.TPESampler,
               "random": optuna.samplers.RandomSampler}
    for name, section in (("pruner", space.pruner), ("sampler", space.sampler)):
        accepted = inspect.signature(classes[section["type"]]).parameters
        bad = [k for k in section if k != "type" and k not in accepted]
        if bad:
            raise ConfigError(f"space file {where!r}: {name} {section['type']} has no option {bad[0]!r}; "
                              f"it takes {', '.join(accepted) or 'none'}.")


def check_against(space: Space, base: Mapping[str, Any]) -> None:
    """Build the config and the plugin options for every end of every range: unknown keys, wrong types and
    values out of range are reported against the space file before anything runs."""
    from tunekit.methods.protocol import make_options
    from tunekit.options import build
    from tunekit.plugins import registries

    fixed = _fixed_values(base)
    for param in space.params:
        if param.key.partition(".")[0] not in config_mod.SECTIONS or "." not in param.key:
            raise ConfigError(f"space file {space.source!r}: unknown key {param.key!r}; keys look like SECTION.KEY "
                              f"with a section among {', '.join(sorted(config_mod.SECTIONS))}.")
        for value in param.corners():
            tree = copy_tree(base)
            for key, allowed in param.when:  # the conditions hold wherever this parameter is sampled
                if fixed.get(key) not in allowed:
                    put(tree, key, allowed[0])
            put(tree, param.key, value)
            try:
                cfg = config_mod.from_dict(tree)
                make_options(registries().methods.get(cfg.method_name), cfg.method_options)
                build(registries().tasks.get(cfg.task_name).options_class, cfg.task_options, where="task")
            except UsageError as exc:
                raise ConfigError(f"space file {space.source!r}: {param.key}={value!r} does not make a valid "
                                  f"run config ({exc})") from None
