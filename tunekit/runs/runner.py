"""One run, start to finish: config -> model source -> task -> quantizer -> method -> engine -> run folder.

This is the only place that connects the registries to each other; it names no built-in plugin.

Run folder layout::

    config.yaml      the resolved configuration
    task.json        what the task needs to rebuild itself (labels, ...)
    tokenizer/       the tokenizer
    adapter/         the method's weights and the task head (adapter_config.json + adapter_model.safetensors)
    checkpoints/     step checkpoints written by the engine (for --resume)
    metrics.jsonl    one line per logging step and per evaluation
    summary.json     parameter counts, final and best metrics, timings, providers
    heldout.jsonl    base and tuned answers to the held-out prompts, when the run has them (tunekit.runs.heldout)
    providers.json   the distribution and version that provided the method and the task (tunekit.runs.provenance)
    eval_details.json  what the task's kept evaluation saw, when its job has eval_details (tunekit.report.details)
    report.html      the run report, one self-contained page (tunekit.report)
    .tunekit.lock    held by the process writing the folder (tunekit.runs.locking)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from tunekit import config as config_mod
from tunekit import files
from tunekit import options as opts
from tunekit.config import RunConfig
from tunekit.errors import ConfigError, UsageError
from tunekit.methods.protocol import METHOD_OPTIONAL, MethodReport, count_parameters, make_options
from tunekit.models import ResolvedModel, resolve_model
from tunekit.plugins import registries
from tunekit.protocols import optional
from tunekit.report.details import DetailsRecorder
from tunekit.runs import locking, provenance
from tunekit.runs.heldout import HeldoutScorer, heldout_rows
from tunekit.runs.output_folder import ADAPTER_DIR, SUMMARY_FILE, check_output_dir, clear_previous_run
from tunekit.runs.quantization import build_model as quantized_build
from tunekit.runs.quantization import check_quantize
from tunekit.tasks.protocol import TaskContext

log = logging.getLogger("tunekit.run")

TOKENIZER_DIR = "tokenizer"


@dataclass
class RunResult:
    """What ``tunekit.run`` returns."""

    output_dir: Path
    summary: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / ADAPTER_DIR


@dataclass
class Prepared:
    """What :func:`prepare` returns: everything up to a model with the method applied."""

    job: Any
    """The task's job (datasets, collate, loss, evaluate)."""
    model: Any
    applied: Any
    """The method's handle on the model (save, injected modules, ...)."""
    report: MethodReport
    tokenizer: Any
    source: ResolvedModel


def as_config(config: RunConfig | Mapping[str, Any] | str | os.PathLike) -> RunConfig:
    """Accept a RunConfig, a nested dict, or the path of a YAML file."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        from tunekit.runs.init_from import inherit

        return config_mod.from_dict(inherit(config))
    return config_mod.load(config)


def fingerprint(cfg: RunConfig) -> str:
    """A hash of the settings that decide what is trained (resuming a folder made by others is refused)."""
    from tunekit.engine import config_fingerprint

    return config_fingerprint(cfg.to_dict())


def is_main_process() -> bool:
    """False in the non-zero ranks of a torchrun / accelerate launch: only rank 0 writes run files.

    Read from ``RANK`` (both launchers set it) rather than accelerate's ``PartialState``, which on a machine
    without a GPU only joins the process group when built with ``cpu=True``, and otherwise calls every rank main.
    """
    return int(os.environ.get("RANK", "0") or 0) == 0


def default_output_dir(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.method_name}-{cfg.task_name}-{stamp}"


def _plugin(cfg: RunConfig, kind: str) -> Any:
    """The run's method or task; resuming a folder whose plugin is gone names the distribution to install."""
    name = cfg.method_name if kind == "method" else cfg.task_name
    if cfg.training.resume and cfg.output.dir:
        return provenance.lookup(registries(), kind, name, Path(cfg.output.dir))
    return getattr(registries(), f"{kind}s").get(name)


def resolve_defaults(cfg: RunConfig) -> None:
    """Fill settings whose default depends on the chosen plugins (``training.lr`` from the method)."""
    if cfg.training.lr is None:
        method = _plugin(cfg, "method")
        cfg.training.lr = float(optional(method, "default_lr", METHOD_OPTIONAL))


@contextlib.contextmanager
def _model_files(cfg: RunConfig, what: str) -> Iterator[None]:
    """Turn transformers' OSError / ValueError for a model that cannot be opened into one UsageError (a folder
    without weights or tokenizer files, a config.json that is not JSON, an unknown model type, an unreachable hub id)."""
    try:
        yield
    except (OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 240 else detail[:237] + "..."
        raise UsageError(
            f"cannot load the {what} of model {cfg.model.name!r} ({detail}); point --model at a complete "
            "Hugging Face model folder (config.json, weights, tokenizer files) or an alias from `tunekit models`."
        ) from None


def _check_token_ids(cfg: RunConfig, job: Any, model: Any) -> None:
    """Refuse a tokenizer whose ids the model has no embedding for (it would fail deep inside the first step)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    size = getattr(embeddings, "num_embeddings", None)
    if not size:
        return
    top = -1
    for features in (job.train_dataset, job.eval_dataset):
        for i in range(len(features) if features is not None else 0):  # a sized sequence of feature dicts
            feature = features[i]
            ids = feature.get("input_ids") if isinstance(feature, dict) else None
            if ids:
                top = max(top, max(ids))
    if top >= size:
        raise UsageError(
            f"the tokenizer of model {cfg.model.name!r} produces token id {top} but the model has only {size} "
            "token embeddings; the tokenizer does not belong to these weights, use the one saved with the model."
        )


def _load_tokenizer(source: ResolvedModel, cfg: RunConfig) -> Any:
    from transformers import AutoTokenizer

    kwargs = dict(source.tokenizer_kwargs)
    if cfg.model.revision:
        kwargs["revision"] = cfg.model.revision
    return AutoTokenizer.from_pretrained(source.path, trust_remote_code=cfg.model.trust_remote_code, **kwargs)


def _build_model(cfg: RunConfig, job: Any, method: Any, method_options: Any, source: ResolvedModel) -> Any:
    """The pretrained model with the task's head, quantized when asked (head and trained modules kept float)."""
    with _model_files(cfg, "weights"):
        return quantized_build(cfg, job, method, method_options, source)


def _source(cfg: RunConfig) -> ResolvedModel:
    source = resolve_model(cfg.model.name)
    if cfg.model.revision:
        source.load_kwargs.setdefault("revision", cfg.model.revision)
    if cfg.model.trust_remote_code:
        source.load_kwargs["trust_remote_code"] = True
    return source


def prepare(cfg: RunConfig, before_method: Callable[[Any, Any], None] | None = None) -> Prepared:
    """Everything up to a model with the method applied; cheap checks come first.

    ``before_method(job, model)`` runs on the base model with its head, before the method changes it.
    """
    task, method = _plugin(cfg, "task"), _plugin(cfg, "method")
    method_options = make_options(method, cfg.method_options)
    resolve_defaults(cfg)
    task_options = opts.build(task.options_class, cfg.task_options, where="task")
    check_quantize(cfg, method)  # before any data or weights are read
    if not cfg.data.train:
        raise ConfigError("no training data; pass --data FILE (or set data.train in the config).")

    from tunekit.data import read_dataset

    train_rows = read_dataset(cfg.data.train, cfg.data)
    val_rows = read_dataset(cfg.data.validation, cfg.data) if cfg.data.validation else None
    source = _source(cfg)
    with _model_files(cfg, "tokenizer"):
        tokenizer = _load_tokenizer(source, cfg)
    from tunekit.engine.seeding import seed_everything

    seed_everything(cfg.training.seed)  # the validation split, the head's and the method's initial weights
    job = task.prepare(TaskContext(tokenizer, task_options, cfg.data, train_rows, val_rows, cfg.training.seed))
    model = _build_model(cfg, job, method, method_options, source)
    _check_token_ids(cfg, job, model)
    if before_method is not None:
        before_method(job, model)
    if cfg.model.init_from:
        from tunekit.runs.init_from import apply_parent

        applied = apply_parent(cfg, (task, job, tokenizer), model, method)
    else:
        applied = method.apply(model, method_options, list(job.head_modules))
    trainable, total = count_parameters(model)
    report = MethodReport(cfg.method_name, trainable, total, list(applied.injected), applied)
    if trainable == 0:
        raise UsageError(f"method {cfg.method_name!r} left nothing to train; check its options.")
    return Prepared(job, model, applied, report, tokenizer, source)


def _emit(listeners: Sequence[Any], event: str, *args: Any) -> None:
    for listener in listeners:
        fn = getattr(listener, event, None)
        if fn is not None:
            fn(*args)


def run(config: RunConfig | Mapping[str, Any] | str | os.PathLike, listeners: Sequence[Any] = ()) -> RunResult:
    """Train as ``config`` says and write the run folder. ``listeners`` receive progress events.

    The run folder is locked for the whole run (``tunekit.runs.locking``): a folder another process is
    writing is refused before anything is loaded or written.
    """
    cfg = as_config(config)
    out = Path(cfg.output.dir) if cfg.output.dir else default_output_dir(cfg)
    cfg.output.dir = str(out)
    main = is_main_process()
    if main:
        locking.ensure_free(out, locking.WRITE_FIX)
    resolve_defaults(cfg)
    check_output_dir(out, cfg)
    created = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
    with locking.hold(out) if main else contextlib.nullcontext():
        try:
            if main:
                check_output_dir(out, cfg)  # again, now that no other process can write there
            return _run_held(cfg, out, listeners, main)
        except BaseException:
            if main and created is not None and not (out / "checkpoints").is_dir():
                shutil.rmtree(created, ignore_errors=True)  # nothing worth keeping: leave no half-written folder
            raise


def _run_held(cfg: RunConfig, out: Path, listeners: Sequence[Any], main: bool) -> RunResult:
    """The body of :func:`run`, with the run folder created and held."""
    if main:  # experiment trackers (training.report_to); a tracker whose package is missing stops the run here
        from tunekit.runs.trackers import listeners as tracker_listeners

        listeners = [*listeners, *tracker_listeners(cfg, out)]
    rows = heldout_rows(cfg.data)
    scorer = HeldoutScorer(rows, out) if rows else None
    prepared = prepare(cfg, scorer.before_method if scorer else None)
    job, model, applied, report = prepared.job, prepared.model, prepared.applied, prepared.report
    from tunekit.engine import train
    log.debug("%s", report.line())
    _emit(listeners, "on_method_applied", report)
    providers = provenance.describe(registries(), cfg.method_name, cfg.task_name)
    if main:
        if cfg.output.overwrite and not cfg.training.resume:
            clear_previous_run(out)
        (out / "config.yaml").write_text(config_mod.to_yaml(cfg), encoding="utf-8")
        provenance.write(out, providers)
        job.save(out)
        prepared.tokenizer.save_pretrained(out / TOKENIZER_DIR)
    recorder = DetailsRecorder(job, out, cfg.training.metric_for_best)  # eval_details.json, for report.html
    sizes = {"train": len(job.train_dataset or ()), "eval": len(job.eval_dataset or ())}
    result = train(model, job, cfg.training, out, applied=applied,
                   listeners=[*listeners, recorder, *([scorer] if scorer else [])],
                   config_fingerprint=fingerprint(cfg), overwrite=cfg.output.overwrite)
    if not main:
        return RunResult(out, {}, dict(getattr(result, "final_metrics", {}) or {}))
    job.save(out)  # again: what the job learned while training (e.g. a tuned threshold) goes with the weights
    with files.staged_folder(out / ADAPTER_DIR, replace=True) as tmp:
        applied.save(tmp)
    summary = {
        "method": cfg.method_name,
        "task": cfg.task_name,
        "model": cfg.model.name,
        "quantize": cfg.model.quantize,
        "providers": providers,
        "trainable_params": report.trainable_params,
        "total_params": report.total_params,
        "trainable_percent": round(report.trainable_percent, 4),
        **_result_fields(result),
        "data_sizes": sizes,
        "output_dir": str(out),
    }
    if cfg.model.init_from:
        from tunekit.runs.init_from import parent_record

        summary["init_from"] = parent_record(Path(cfg.model.init_from))
    if scorer is not None:
        summary.update(scorer.scores)
        _emit(listeners, "on_heldout", scorer.records, summary)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    _write_report(out)
    _emit(listeners, "on_run_end", summary)
    return RunResult(out, summary, dict(getattr(result, "final_metrics", {}) or {}))


def _write_report(out: Path) -> None:
    """``report.html`` of the finished run; a report that cannot be drawn never fails the run."""
    try:
        from tunekit.report import REPORT_FILE, write_report

        write_report([out], out / REPORT_FILE)
    except Exception as exc:  # the run's results are written; the report is a view of them
        log.warning("the run finished but its report.html was not written (%s: %s); run `tunekit report %s` to "
                    "try again.", type(exc).__name__, exc, out)


def _result_fields(result: Any) -> dict[str, Any]:
    final = dict(getattr(result, "final_metrics", {}) or {})
    best = dict(getattr(result, "best_metrics", {}) or {})
    fields: dict[str, Any] = dict(final)
    fields["final_metrics"] = final
    fields["best_metrics"] = best
    for name in ("best_checkpoint", "best_step", "metric_for_best", "steps", "epochs", "train_seconds", "tokens_per_second",
                 "peak_memory_mb", "stopped_early"):
        if hasattr(result, name):
            value = getattr(result, name)
            fields[name] = str(value) if isinstance(value, Path) else value
    return fields


def __getattr__(name: str) -> Any:
    """``load_run`` and ``LoadedRun`` lived here before tunekit.runs.loading; the old import path keeps working."""
    if name in ("load_run", "LoadedRun"):
        from tunekit.runs import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
