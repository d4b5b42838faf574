"""Building blocks shared by task plugins: loading a model with a fresh head, padding, eval mode, state files.

Public API: third-party tasks can use these exactly like the built-in ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from tunekit.errors import CheckpointError, DataError
from tunekit.models import ResolvedModel

log = logging.getLogger("tunekit.tasks")

STATE_FILE = "task.json"


def ensure_pad_token(tokenizer: Any) -> None:
    """Give decoder tokenizers (GPT-2, Llama) a pad token: the EOS token when none is set."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise DataError("the tokenizer has neither a pad nor an end-of-sequence token; use a model whose tokenizer has one.")
        tokenizer.pad_token = tokenizer.eos_token


def require_fast(tokenizer: Any, task: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"the {task} task needs a fast (Rust) tokenizer for character offsets, and this model has a slow one; "
            "use a model folder with a tokenizer.json."
        )


def load_with_head(auto_class: Any, source: ResolvedModel, load_kwargs: dict[str, Any], *, announce: bool = True,
                   **config_kwargs: Any) -> tuple[nn.Module, list[str]]:
    """``auto_class.from_pretrained`` plus the names of the modules it had to create fresh (the head).

    transformers reports the parameters it could not find in the checkpoint; their owning modules
    are exactly the new head (``classifier``, ``score``, ``qa_outputs``, ...). A fresh head is expected, so
    it is said once at INFO in tunekit's log (``tunekit.tasks``) instead of transformers' load report. Pass
    ``announce=False`` (then it is logged at DEBUG) when the head's trained weights are loaded next from a run
    folder, or when the task reports a missing module itself.
    """
    kwargs = {**source.load_kwargs, **load_kwargs, **config_kwargs}
    model, info = auto_class.from_pretrained(source.path, output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys", []) or [])
    heads: list[str] = []
    for key in missing:
        module = key.rsplit(".", 1)[0] if "." in key else key
        if not any(module == h or module.startswith(h + ".") for h in heads):
            heads.append(module)
    if heads and not announce:
        log.debug("modules not in the base checkpoint, created fresh: %s", ", ".join(heads))
    elif heads:
        log.info("created a fresh task head (%s): the base checkpoint has none, this run trains it", ", ".join(heads))
    return model, heads


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (nested in dicts, lists and tuples too) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the block; the previous train/eval mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def predict_chunks(model: nn.Module, items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any], torch.device]]:
    """``(start, chunk, device)`` over ``items`` in chunks of ``size``, the model in eval mode without gradients."""
    with evaluating(model):
        device = model_device(model)
        for start in range(0, len(items), size):
            yield start, items[start:start + size], device


def pad_stack(rows: Sequence[Sequence[int]], value: int, side: str = "right") -> torch.Tensor:
    """Pad lists of ints to the longest one and stack them into a (batch, length) long tensor."""
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if not len(r):
            continue
        t = torch.as_tensor(list(r), dtype=torch.long)
        if side == "right":
            out[i, : len(r)] = t
        else:
            out[i, width - len(r):] = t
    return out


def write_state(folder: str | Path, task: str, state: dict[str, Any]) -> None:
    """Write ``task.json`` (task name + what ``restore`` needs) into ``folder``."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / STATE_FILE).write_text(json.dumps({"task": task, **state}, indent=2), encoding="utf-8")


def read_state(folder: str | Path, task: str) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"run folder {str(folder)!r} has no {STATE_FILE}; it was not written by a finished run.")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{str(path)!r} is not valid JSON; the run folder is damaged, train again.") from None
    if state.get("task") != task:
        raise CheckpointError(
            f"run folder {str(folder)!r} was trained for task {state.get('task')!r}, not {task!r}; use --task {state.get('task')}."
        )
    return state
