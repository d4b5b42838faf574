"""Loading a finished run folder back: the base model, the task head and the trained method weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit import config as config_mod
from tunekit import options as opts
from tunekit.config import RunConfig
from tunekit.errors import CheckpointError, UsageError
from tunekit.methods.protocol import make_options
from tunekit.plugins import registries
from tunekit.runs import locking, provenance
from tunekit.runs.runner import ADAPTER_DIR, TOKENIZER_DIR, _build_model, _source
from tunekit.tasks.protocol import TaskContext


@dataclass
class LoadedRun:
    """A finished run loaded back: ready to predict, evaluate or generate."""

    model: Any
    tokenizer: Any
    job: Any
    config: RunConfig
    applied: Any
    folder: Path



def load_run(folder: str | os.PathLike, *, quantize: str | None = None, trust_remote_code: bool = False) -> LoadedRun:
    """Load a finished run folder: the base model with the task head and the trained method weights.

    A run folder may come from someone else, so its config.yaml cannot switch on ``trust_remote_code``:
    a run trained with it loads only when the caller passes ``trust_remote_code=True`` too.
    """
    out = Path(folder)
    locking.ensure_free(out)
    if not (out / "config.yaml").is_file():
        raise UsageError(f"{str(out)!r} is not a tunekit run folder (no config.yaml); pass the folder `tunekit run` wrote.")
    if not (out / ADAPTER_DIR).is_dir():
        raise CheckpointError(f"run folder {str(out)!r} has no trained weights ({ADAPTER_DIR}/); the run did not finish — resume it with --resume.")
    cfg = config_mod.from_dict(config_mod.read_yaml(out / "config.yaml"))
    if cfg.model.trust_remote_code and not trust_remote_code:
        raise UsageError(
            f"run folder {str(out)!r} was trained with model.trust_remote_code, so loading it runs the model's own "
            "Python code; pass trust_remote_code=True to tunekit.load_run only if you trust that code."
        )
    if quantize is not None and (quantize or None) != cfg.model.quantize:
        cfg.model.quantize = quantize or None
        cfg.model.quantize_options = {}  # the trained quantizer's options do not apply to another one
    regs = registries()
    task, method = provenance.lookup(regs, "task", cfg.task_name, out), provenance.lookup(regs, "method", cfg.method_name, out)
    from transformers import AutoTokenizer

    task_options = opts.build(task.options_class, cfg.task_options, where="task")
    if not (out / TOKENIZER_DIR / "tokenizer_config.json").is_file():
        raise CheckpointError(f"run folder {str(out)!r} has no {TOKENIZER_DIR}/ folder; the run folder is incomplete, "
                              "train the run again.")
    tokenizer = AutoTokenizer.from_pretrained(out / TOKENIZER_DIR)
    try:
        job = task.restore(TaskContext(tokenizer, task_options, cfg.data, None, None, cfg.training.seed), out)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a task.json edited or from elsewhere
        raise CheckpointError(
            f"run folder {str(out)!r} has a task state the {cfg.task_name} task cannot use "
            f"({type(exc).__name__}: {exc}); train the run again."
        ) from None
    model = _build_model(cfg, job, method, make_options(method, cfg.method_options), _source(cfg))
    applied = method.load(model, out / ADAPTER_DIR)
    model.eval()
    return LoadedRun(model, tokenizer, job, cfg, applied, out)
