"""The run configuration: typed sections loaded from YAML and overridden from the command line.

Precedence, lowest first: the defaults below, the settings a named training dataset suggests (the
bundled ``demo`` does), the YAML file, the CLI flags, ``--set key.path=value``.
The ``method`` and ``task`` sections hold a ``name`` plus that plugin's own options, which are
validated against the plugin's options dataclass once the plugin is known.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tunekit import options as opts
from tunekit.errors import ConfigError
from tunekit.options import check, option

log = logging.getLogger("tunekit.config")


@dataclass
class ModelConfig:
    name: str = option("smollm2-135m", "Model alias (see `tunekit models`), local folder, or hub id.")
    quantize: str | None = option(None, "Load the frozen base quantized: `int8`, `nf4` or `fp4` (see `tunekit plugins`).")
    quantize_options: dict[str, Any] = option(
        {}, "Options of the quantizer, e.g. `{compute_dtype: bfloat16, double_quant: false}` for nf4/fp4; "
        "`--set model.quantize_options.KEY=VALUE` sets one.")
    revision: str | None = option(None, "Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = option(False, "Allow a hub model to run its own Python code. Off unless you trust it.")
    init_from: str | None = option(
        None, "Start from the trained weights of this finished run folder (adapter and head, or the whole model), "
        "with its base model, method and task and their options; see docs/deployment.md.")
    extend_labels: bool = option(
        False, "With `init_from`: accept training labels the parent run did not have; their head rows start fresh "
        "and known labels keep the parent's rows.")


@dataclass
class DataConfig:
    train: str | None = option(
        "demo", "Training data: a file (csv, tsv, json, jsonl, parquet, SQuAD, CoNLL), a dataset name, or `demo` "
        "(the bundled question/answer set of the main job).")
    validation: str | None = option(None, "Validation data; when absent `val_split` carves one out of `train`.")
    heldout: str | None = option(
        None, "Held-out prompts (jsonl with prompt, response, keywords): answered before and after training and "
        "scored by keyword; default: the training dataset's own held-out companion, if it has one.")
    format: str | None = option(None, "Dataset format name; by default chosen from the file extension.")
    text_column: str | None = option(None, "Column with the input text (default: the task's usual name).")
    text_pair_column: str | None = option(None, "Column with the second text of a pair, if any.")
    label_column: str | None = option(None, "Column with the label (default: `label`).")
    header: bool = option(True, "Whether csv/tsv files have a header row; without one, columns are named 0, 1, ...")
    val_split: float = option(0.1, "Fraction of `train` held out for validation when no validation file is given.")
    max_train_samples: int | None = option(None, "Use at most this many training rows (the first ones).")
    max_eval_samples: int | None = option(None, "Use at most this many validation rows.")
    split: str = option("train", "Split to read from a Hugging Face dataset name.")

    def validate(self) -> None:
        check(0.0 <= self.val_split < 1.0, f"data.val_split must be in [0, 1), not {self.val_split}.")
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            check(value is None or value > 0, f"data.{key} must be positive, not {value}.")


@dataclass
class TrainingConfig:
    epochs: float = option(3.0, "Passes over the training data.")
    max_steps: int | None = option(None, "Stop after this many optimiser steps (overrides epochs).")
    batch_size: int = option(16, "Examples per batch (per process).")
    grad_accum: int = option(1, "Batches accumulated per optimiser step.")
    lr: float | None = option(
        None, "Learning rate of the new parameters (head, adapters) and, unless `backbone_lr` is set, of all; "
        "default: the method's suggested rate (`tunekit methods -v`).")
    backbone_lr: float | None = option(None, "Learning rate of pretrained weights that train; default `lr`.")
    layer_decay: float | None = option(None, "Layer-wise learning-rate decay factor per block below the top (e.g. 0.9).")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    warmup_ratio: float = option(0.0, "Fraction of the steps spent warming the learning rate up.")
    scheduler: Literal["linear", "cosine", "constant"] = option("linear", "Learning-rate schedule after warm-up.")
    max_grad_norm: float | None = option(1.0, "Clip gradients to this norm (null to disable).")
    precision: Literal["fp32", "bf16"] = option("fp32", "Numeric precision; bf16 autocast works on CPU.")
    seed: int = option(42, "Random seed for initialisation, shuffling and dropout.")
    eval_steps: int | None = option(None, "Evaluate every N optimiser steps (besides the end of each epoch).")
    eval_each_epoch: bool = option(True, "Evaluate at the end of every epoch.")
    save_steps: int | None = option(None, "Write a checkpoint every N optimiser steps.")
    save_total_limit: int = option(2, "Keep at most this many step checkpoints (the best one is kept besides).")
    metric_for_best: str | None = option(None, "Metric that picks the best checkpoint (default: the task's).")
    early_stopping_patience: int | None = option(None, "Stop after this many evaluations without improvement.")
    load_best_at_end: bool = option(True, "Finish with the weights of the best evaluation (by metric_for_best) rather than the last step.")
    logging_steps: int = option(10, "Write a metrics line every N optimiser steps.")
    resume: bool = option(False, "Continue from the last complete checkpoint in the output folder.")
    report_to: list[str] = option(
        [], "Experiment trackers, through accelerate: `tensorboard`, `wandb`, `mlflow` or any other name accelerate "
        "knows, or `all` (every one installed); a comma list works (`--report-to wandb,mlflow`), see docs/training.md.")
    group_by_length: bool = option(True, "Batch examples of similar length together to save padding.")
    cache_frozen: bool = option(True, "Cache the outputs of frozen lower layers and reuse them in later epochs.")
    gradient_checkpointing: bool | None = option(
        None, "Recompute each block's activations during backward instead of keeping them (less memory, about a "
        "third slower); default: on when batch_size x the longest training example reaches 4096 tokens and the "
        "model supports it.")

    def validate(self) -> None:
        check(self.epochs > 0, f"training.epochs must be positive, not {self.epochs}.")
        check(self.max_steps is None or self.max_steps > 0, f"training.max_steps must be positive, not {self.max_steps}.")
        check(self.batch_size > 0, f"training.batch_size must be positive, not {self.batch_size}.")
        check(self.grad_accum > 0, f"training.grad_accum must be positive, not {self.grad_accum}.")
        check(self.lr is None or self.lr > 0, f"training.lr must be positive, not {self.lr}.")
        check(self.backbone_lr is None or self.backbone_lr >= 0, "training.backbone_lr must not be negative.")
        check(self.layer_decay is None or 0 < self.layer_decay <= 1, "training.layer_decay must be in (0, 1].")
        check(0 <= self.warmup_ratio < 1, f"training.warmup_ratio must be in [0, 1), not {self.warmup_ratio}.")
        for key in ("eval_steps", "save_steps", "early_stopping_patience"):
            value = getattr(self, key)
            check(value is None or value > 0, f"training.{key} must be positive, not {value}.")
        check(self.logging_steps > 0, "training.logging_steps must be positive.")
        check(self.save_total_limit >= 1, "training.save_total_limit must be at least 1.")
        if self.report_to:
            from tunekit.runs.trackers import check_names

            check_names(self.report_to)


@dataclass
class OutputConfig:
    dir: str | None = option(None, "Run folder; default ./runs/<method>-<task>-<time>.")
    overwrite: bool = option(False, "Start over in an output folder that already holds a run.")


@dataclass
class RunConfig:
    """A whole run. ``method`` and ``task`` are ``{"name": ..., <plugin options>}`` mappings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: dict[str, Any] = field(default_factory=lambda: {"name": "causal-lm"})
    data: DataConfig = field(default_factory=DataConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "lora"})
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def method_name(self) -> str:
        return str(self.method.get("name"))

    @property
    def method_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.method.items() if k != "name"}

    @property
    def task_name(self) -> str:
        return str(self.task.get("name"))

    @property
    def task_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.task.items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {f.name for f in dataclasses.fields(RunConfig)}
PLUGIN_NAME_HELP = {
    "method": "Parameter-efficient method (see `tunekit methods`).",
    "task": "Task (see `tunekit tasks`).",
}
"""Help of ``method.name`` and ``task.name``, the two keys without a dataclass field of their own."""


def key_field(dotted: str) -> tuple[Any, str]:
    """(annotated type, help) of the config key ``dotted`` (``SECTION.KEY``), as its dataclass field declares."""
    section, key = dotted.split(".", 1)
    if section in PLUGIN_NAME_HELP and key == "name":
        return str, PLUGIN_NAME_HELP[section]
    cls = next(f.default_factory for f in dataclasses.fields(RunConfig) if f.name == section)
    import typing

    return typing.get_type_hints(cls)[key], opts.field_help(cls, key)  # type: ignore[arg-type]


def parse_value(text: str) -> Any:
    """A ``--set`` value: parsed as YAML (numbers, booleans, lists), kept as text when that fails."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b] = value`` for ``dotted == "a.b"``; the first part must be a config section."""
    parts = [p for p in dotted.split(".") if p]
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(
            f"--set {dotted}: keys look like SECTION.KEY with a section among {', '.join(sorted(SECTIONS))}."
        )
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section.")
    node[parts[-1]] = value


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; check the path given to --config.")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as exc:  # e.g. !!python/object: safe_load builds plain data only
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"config file {str(p)!r} uses a YAML tag tunekit does not accept{where} ({exc.problem}); "
            "write plain values (strings, numbers, lists, mappings) there."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}; fix the syntax there.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text; save it as UTF-8 YAML.") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read ({exc.strerror}); check its permissions.") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (model:, task:, data:, ...).")
    return tree


def from_dict(tree: Mapping[str, Any]) -> RunConfig:
    """Build and validate a RunConfig; unknown sections or keys and bad values raise ConfigError."""
    if not isinstance(tree, Mapping):
        raise ConfigError("a run configuration must be a mapping of sections (model:, task:, data:, ...).")
    unknown = [k for k in tree if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; sections are {', '.join(sorted(SECTIONS))}.")
    tree = with_suggestions(tree)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name not in tree:
            continue
        value = tree[f.name]
        if f.name in ("method", "task"):
            if isinstance(value, str):
                value = {"name": value}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{f.name} must be a mapping with a name, e.g. `{f.name}: {{name: ...}}`.")
            default = f.default_factory()  # type: ignore[misc]
            value = {**default, **value} if "name" not in value else dict(value)
            if not isinstance(value.get("name"), str):
                raise ConfigError(f"{f.name}.name must be a string.")
            kwargs[f.name] = _typed_options(f.name, value)
        else:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {f.name!r} must be a mapping of keys.")
            kwargs[f.name] = opts.build(f.default_factory, value, where=f.name)  # type: ignore[arg-type]
    return RunConfig(**kwargs)


def _typed_options(section: str, value: dict[str, Any]) -> dict[str, Any]:
    """The ``method``/``task`` mapping with each option converted to its declared type, when the plugin is known.

    So ``--set method.target_modules=query,value`` is recorded in ``config.yaml`` as the list it means.
    A value that does not convert is left as given: building the options reports it with its context.
    """
    import typing

    from tunekit.plugins import registries

    registry = registries().methods if section == "method" else registries().tasks
    cls = getattr(registry.get(value["name"]), "options_class", None) if value["name"] in registry else None
    try:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    except Exception:  # a plugin's annotations that cannot be resolved: keep the values as given
        return value
    out = dict(value)
    for key, given in value.items():
        if key != "name" and key in hints:
            try:
                out[key] = opts.coerce(given, hints[key], f"{section}.{key}")
            except ConfigError:
                pass
    return out


def _chosen_name(tree: Mapping[str, Any], section: str) -> Any:
    """The method or task name ``tree`` selects (given as a name or as a mapping with one), or the default."""
    value = tree.get(section)
    if isinstance(value, Mapping):
        value = value.get("name")
    return value if value is not None else getattr(RunConfig(), f"{section}_name")


def with_suggestions(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``tree`` with the named training dataset's suggested settings filled in below the user's own.

    A suggested ``method`` or ``task`` section names the plugin its options are for, and is dropped
    when the run selects another one.
    """
    from tunekit.data import suggested_settings

    data = tree.get("data")
    train = data.get("train", DataConfig().train) if isinstance(data, Mapping) else DataConfig().train
    suggestion = suggested_settings(train, _chosen_name(tree, "method"))
    for section in ("method", "task"):
        offered = suggestion.get(section)
        if isinstance(offered, Mapping) and offered.get("name") != _chosen_name(tree, section):
            del suggestion[section]
    if not suggestion:
        return dict(tree)
    user = {k: ({"name": v} if k in ("method", "task") and isinstance(v, str) else v) for k, v in tree.items()}
    given = {key for key, _ in _flat(user)}
    used = [f"{key}={value}" for key, value in _flat(suggestion) if key not in given and not key.endswith(".name")]
    if used:
        log.info("data %r suggests %s (your own settings win)", train, ", ".join(used))
    return merge(suggestion, user)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.extend(_flat(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def load(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
         sets: list[str] | None = None) -> RunConfig:
    """YAML file < ``overrides`` (a nested dict from CLI flags) < ``sets`` (``key.path=value`` strings)."""
    tree = read_yaml(path) if path else {}
    tree = merge(tree, overrides or {})
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set {item}: write it as KEY=VALUE, e.g. --set method.r=16.")
        key, value = item.split("=", 1)
        set_path(tree, key.strip(), parse_value(value))
    from tunekit.runs.init_from import inherit

    return from_dict(inherit(tree))


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
