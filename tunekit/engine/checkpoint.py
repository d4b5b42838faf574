"""Checkpoints: atomic folders under ``<run>/checkpoints/step-N`` that let a run continue exactly.

A checkpoint holds the trainable weights (``trainable.safetensors``), the optimiser and scheduler
state (``optimizer.pt``, ``scheduler.pt``: our own state dicts, read back with ``weights_only=True``),
the random-number-generator states of every process (``rng.json``), and ``state.json``: global step,
position in the data (epoch, next batch, sampler seed), the config fingerprint and the best metric so
far. It is written into a temporary sibling folder, flushed to disk, marked complete (``COMPLETE``)
and renamed into place, so a run killed at any moment leaves either the old or the new checkpoint,
never a half-written one; a folder without the marker is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle  # only for its exception type: nothing here unpickles without weights_only
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tunekit import files
from tunekit.errors import CheckpointError
from tunekit.methods.surgery import load_into

CHECKPOINTS = "checkpoints"
BEST = "best"
MARKER = "COMPLETE"
WEIGHTS = "trainable.safetensors"
STATE = "state.json"
_STEP = re.compile(r"^step-(\d+)$")

# Settings that do not change the weights' trajectory: they may differ between a run and its resumption.
# (epochs/max_steps do change it, through the learning-rate schedule, so they stay in.)
FINGERPRINT_IGNORES = ("training.resume", "training.report_to", "training.logging_steps",
                       "training.save_steps", "training.save_total_limit", "training.eval_steps",
                       "training.eval_each_epoch", "training.early_stopping_patience", "training.metric_for_best",
                       "training.load_best_at_end", "output.dir", "output.overwrite")


def config_fingerprint(tree: Mapping[str, Any], ignore: tuple[str, ...] = FINGERPRINT_IGNORES) -> str:
    """A short hash of a run configuration (``RunConfig.to_dict()``) without the keys in ``ignore``."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif prefix not in ignore:
            flat[prefix] = node

    walk(tree, "")
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoints_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINTS


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints of a run folder, oldest first."""
    folder = checkpoints_dir(out_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP.match(child.name)
        if match and child.is_dir() and (child / MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_last_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``out_dir`` (folders without the completion marker are ignored)."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def checkpoint_to_resume(out_dir: str | Path, resume: bool, overwrite: bool = False) -> Path | None:
    """The checkpoint a run in ``out_dir`` starts from, or None to start afresh; nothing is deleted here.

    A folder holding checkpoints is only reused with ``resume`` (continue) or ``overwrite`` (the caller then
    deletes them with :func:`clear_training_files`); otherwise CheckpointError.
    """
    last = find_last_checkpoint(out_dir)
    if resume:
        return last
    if last is not None and not overwrite:
        raise CheckpointError(
            f"the output folder {str(out_dir)!r} already holds checkpoints of a run; pass --resume to continue it "
            "or --set output.overwrite=true to start over."
        )
    return None


def clear_training_files(out_dir: str | Path) -> None:
    """Delete what the engine wrote into ``out_dir`` (checkpoints, best weights, metrics) before a run starts over."""
    from tunekit.engine.metrics_log import LOSS_PLOT, METRICS_FILE

    for folder in (checkpoints_dir(out_dir), Path(out_dir) / BEST):
        shutil.rmtree(folder, ignore_errors=True)
    for name in (METRICS_FILE, LOSS_PLOT):
        (Path(out_dir) / name).unlink(missing_ok=True)


def step_dir(out_dir: str | Path, step: int) -> Path:
    return checkpoints_dir(out_dir) / f"step-{step}"


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success flush it, mark it complete and rename it to ``final``."""
    with files.staged_folder(final, replace=True, durable=True) as tmp:
        yield tmp
        (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies (on CPU) of the parameters that train."""
    return {n: p.detach().to("cpu").clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_weights(model: nn.Module, path: Path) -> None:
    save_file(trainable_state(model), str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Copy saved trainable weights back into ``model``; every trainable parameter must be in the file."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path.parent)!r} has no readable {path.name} ({' '.join(str(exc).split())}); "
            "delete that folder to resume from an earlier one."
        ) from None
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    load_into(trainable, tensors, path.parent, file_name=path.name,
              fix="it was written for a different model or method, so start a new run folder or use the "
                  "configuration it was made with")


def rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-able data (Python, NumPy legacy global, torch CPU and CUDA)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def write_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                     rng_states: list[dict[str, Any]], state: Mapping[str, Any]) -> Path:
    """Write one complete checkpoint atomically into ``folder`` (main process only)."""
    with atomic_folder(folder) as tmp:
        save_weights(model, tmp / WEIGHTS)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "rng.json").write_text(json.dumps(rng_states))
        (tmp / STATE).write_text(json.dumps(dict(state), indent=2, default=str))
    return folder


def read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE).read_text())
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        return state
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(folder)!r} has no readable {STATE} ({exc}); delete that folder to resume from an earlier one."
        ) from None


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int = 0) -> dict[str, Any]:
    """Restore weights, optimiser, scheduler and this process's RNG from ``folder``; return its state."""
    state = read_state(folder)
    load_weights(model, folder / WEIGHTS)
    try:
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True, map_location="cpu"))
        rngs = json.loads((folder / "rng.json").read_text())
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError, pickle.UnpicklingError) as exc:
        # UnpicklingError: a damaged .pt file, or one holding more than plain tensors (weights_only refuses it)
        raise CheckpointError(
            f"checkpoint {str(folder)!r} could not be restored ({' '.join(str(exc).split())[:300]}); "
            "delete that folder to resume from an earlier one."
        ) from None
    return state


def prune(out_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (and stale temporary folders)."""
    found = list_checkpoints(out_dir)
    for _, path in found[:-keep] if keep > 0 else found:
        shutil.rmtree(path, ignore_errors=True)
    folder = checkpoints_dir(out_dir)
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith((files.TMP_PREFIX, files.OLD_PREFIX)) or (_STEP.match(child.name) and not (child / MARKER).exists()):
                shutil.rmtree(child, ignore_errors=True)
