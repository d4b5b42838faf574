"""Continue from a finished run: ``tunekit run --init-from RUN`` (``model.init_from``).

The new run starts from the parent's trained weights (the method's adapter and the task head, or the whole
model for methods that save it) on new data. It keeps the parent's base model, method and task with their
options unless the user sets them; a different base model, method, task or method option is one clear
ConfigError. For tasks with a label set (the optional job attribute ``labels``, ``JOB_OPTIONAL``), the new training data must have the
parent's labels; ``model.extend_labels`` accepts new ones: known labels keep the parent's head rows and new
labels get fresh rows (normal with the model's ``initializer_range``, zero bias), the way transformers
initialises a new head. Labels in another order are mapped by name.

The weights go through the method's own ``load`` (and so through ``surgery.load_into``): when rows must be
mapped, a copy of the parent's weight folder with the mapped head tensors is written to a temporary folder
and loaded from there. With ``--resume`` the engine then restores the run's own checkpoint over these
weights: resuming wins over the parent.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from tunekit import config as config_mod
from tunekit import options as opts
from tunekit.errors import ConfigError, DataError, UsageError
from tunekit.methods.protocol import make_options
from tunekit.protocols import optional
from tunekit.runs import locking
from tunekit.runs.output_folder import ADAPTER_DIR, SUMMARY_FILE
from tunekit.tasks.protocol import JOB_OPTIONAL, TaskContext

INHERITED_DATA = ("text_column", "text_pair_column", "label_column")
"""Data settings a child run takes from its parent unless given: the columns usually keep their names."""


def check_parent(folder: Path) -> dict[str, Any]:
    """The parent's config.yaml as a tree; refuse a folder that is not a finished run or is being written."""
    if not (folder / "config.yaml").is_file():
        raise UsageError(f"--init-from {str(folder)!r} is not a tunekit run folder (no config.yaml); "
                         "pass the folder a finished `tunekit run` wrote.")
    locking.ensure_free(folder)
    if not (folder / ADAPTER_DIR).is_dir():
        raise UsageError(f"--init-from {str(folder)!r} has no trained weights ({ADAPTER_DIR}/): the run did not "
                         "finish; finish it with --resume first.")
    return config_mod.read_yaml(folder / "config.yaml")


def _name(section: Any) -> Any:
    return section.get("name") if isinstance(section, Mapping) else section


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def check_same(folder: Path, parent: Mapping[str, Any], model: Any, method: Any, task: Any) -> None:
    """One ConfigError for the first of base model, task and method (``None``: not given) that differs."""
    given = {"model": model, "task": task, "method": method}
    for key, value in given.items():
        recorded = _name(parent.get(key))
        if value is None or recorded is None:
            continue
        same = _same_model(str(value), str(recorded)) if key == "model" else str(value) == str(recorded)
        if not same:
            raise ConfigError(
                f"--init-from {str(folder)!r} continues a run trained with {key} {recorded!r}, not {value!r}; drop "
                f"--{key} (the parent's is used) or start a fresh run without --init-from."
            )


def inherit(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``tree`` with the parent run's model, method, task and data columns filled in below the user's own.

    A tree without ``model.init_from`` comes back unchanged.
    """
    model = tree.get("model")
    if not isinstance(model, Mapping) or not model.get("init_from"):
        return dict(tree)
    folder = Path(str(model["init_from"]))
    parent = check_parent(folder)
    check_same(folder, parent, model.get("name"), _name(tree.get("method")), _name(tree.get("task")))
    out_dir = (tree.get("output") or {}).get("dir") if isinstance(tree.get("output"), Mapping) else None
    if out_dir and _same_model(str(out_dir), str(folder)):
        raise ConfigError(f"--init-from {str(folder)!r} is also the output folder; write the new run to another "
                          "folder with --output.")
    pmodel, pdata = parent.get("model") or {}, parent.get("data") or {}
    base: dict[str, Any] = {
        "model": {k: pmodel[k] for k in ("name", "revision") if pmodel.get(k) is not None},
        "data": {k: pdata[k] for k in INHERITED_DATA if pdata.get(k) is not None},
    }
    for section in ("method", "task"):
        if isinstance(parent.get(section), Mapping):
            base[section] = dict(parent[section])
    user = {k: ({"name": v} if k in ("method", "task") and isinstance(v, str) else v) for k, v in tree.items()}
    return config_mod.merge(base, user)


def _check_options(cfg: Any, parent: Any, folder: Path, method: Any) -> None:
    check_same(folder, parent.to_dict(), cfg.model.name, cfg.method_name, cfg.task_name)
    mine = dataclasses.asdict(make_options(method, cfg.method_options))
    theirs = dataclasses.asdict(make_options(method, parent.method_options))
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            raise ConfigError(
                f"--init-from {str(folder)!r} was trained with method.{key}={theirs.get(key)!r}, not "
                f"{mine.get(key)!r}; its weights need the parent's method options, so drop that setting."
            )


def _label_rows(cfg: Any, parent: Any, task_job: tuple[Any, Any, Any], folder: Path) -> tuple[list[int | None], int]:
    """For each label of the new job, the parent's head row (None: a new label), and the parent's label count;
    no rows when nothing needs mapping (same labels, or a task without labels)."""
    task, job, tokenizer = task_job
    labels = optional(job, "labels", JOB_OPTIONAL)
    if labels is None:
        return [], 0
    options = opts.build(task.options_class, parent.task_options, where="task")
    parent_job = task.restore(TaskContext(tokenizer, options, parent.data, None, None, parent.training.seed), folder)
    known = list(optional(parent_job, "labels", JOB_OPTIONAL) or [])
    if list(labels) == known:
        return [], len(known)
    lost = [label for label in known if label not in labels]
    new = [label for label in labels if label not in known]
    if lost:
        raise DataError(
            f"the training data has no examples of the label(s) {', '.join(lost[:5])} that --init-from "
            f"{str(folder)!r} knows; the head holds the labels of the training data, so add examples of them."
        )
    if new and not cfg.model.extend_labels:
        raise DataError(
            f"the training data has the label(s) {', '.join(new[:5])} that --init-from {str(folder)!r} never saw "
            f"(it knows {', '.join(known)}); pass --set model.extend_labels=true to add them with fresh head rows."
        )
    index = {label: i for i, label in enumerate(known)}
    return [index.get(label) for label in labels], len(known)


def _label_heads(model: Any, job: Any, rows: int) -> list[str]:
    """The task's head modules with one output row per label (a classifier, not a pooler)."""
    out = []
    for name in job.head_modules:
        weight = getattr(model.get_submodule(name), "weight", None)
        if weight is not None and weight.dim() >= 1 and weight.shape[0] == rows:
            out.append(name)
    return out


def _mapped(tensor: torch.Tensor, rows: list[int | None], std: float, generator: torch.Generator) -> torch.Tensor:
    out = torch.zeros((len(rows), *tensor.shape[1:]), dtype=tensor.dtype)
    for i, source in enumerate(rows):
        if source is not None:
            out[i] = tensor[source]
        elif tensor.dim() > 1:
            out[i] = (torch.randn(tensor.shape[1:], generator=generator) * std).to(tensor.dtype)
    return out


def _mapped_copy(src: Path, dst: Path, rows: list[int | None], parent_rows: int, heads: list[str], cfg: Any,
                 std: float) -> None:
    """Copy the weight folder ``src`` to ``dst`` with the label rows of the head tensors mapped."""
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(cfg.training.seed)
    for path in sorted(src.iterdir()):
        if path.suffix != ".safetensors":
            if path.is_file():
                shutil.copy2(path, dst / path.name)
            continue
        tensors = load_file(str(path))
        for key, tensor in tensors.items():
            under_head = any(f".{head}." in f".{key}" for head in heads)
            if under_head and tensor.dim() >= 1 and tensor.shape[0] == parent_rows:
                tensors[key] = _mapped(tensor, rows, std, generator)
        save_file(tensors, str(dst / path.name), metadata={"format": "pt"})


def apply_parent(cfg: Any, task_job: tuple[Any, Any, Any], model: Any, method: Any) -> Any:
    """Apply the method to ``model`` with the parent run's weights (the runner's replacement for ``apply``).

    ``task_job`` is (task, job, tokenizer) of the new run. Returns the method's ``Applied`` handle.
    """
    folder = Path(cfg.model.init_from)
    parent = config_mod.from_dict(check_parent(folder))
    _check_options(cfg, parent, folder, method)
    rows, parent_rows = _label_rows(cfg, parent, task_job, folder)
    weights = folder / ADAPTER_DIR
    if not rows:
        return method.load(model, weights)
    heads = _label_heads(model, task_job[1], len(rows))
    std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02) or 0.02)
    with tempfile.TemporaryDirectory(prefix="tunekit-init-from-") as tmp:
        _mapped_copy(weights, Path(tmp), rows, parent_rows, heads, cfg, std)
        return method.load(model, tmp)


def parent_record(folder: Path) -> dict[str, Any]:
    """What the child's summary.json records about its parent: folder, method, task, model, final metrics."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    summary = summary if isinstance(summary, dict) else {}
    return {"run": str(folder.resolve()), **{k: summary.get(k) for k in ("method", "task", "model", "steps")},
            "final_metrics": summary.get("final_metrics") or {}}
