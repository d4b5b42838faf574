"""What a checkpoint saves and resuming restores: one :class:`TrainState`, and the two functions that write and
read it together with the weights, optimiser, scheduler and RNG states (``checkpoint`` does the file work).

``state.json`` keeps the keys it always had, so checkpoints written before :class:`TrainState` existed still load.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from tunekit.engine import checkpoint as ckpt
from tunekit.errors import CheckpointError

log = logging.getLogger("tunekit.engine")


@dataclass
class TrainState:
    """Where a run is and what it has seen so far; everything here survives a checkpoint and a resume."""

    global_step: int = 0
    epoch: int = 0
    batch_index: int = 0
    """Position inside the current epoch's batches (the next micro-batch to take)."""
    best_value: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)
    last_eval_step: int | None = None
    bad_evals: int = 0
    """Evaluations in a row without improvement (early stopping)."""
    tokens: int = 0
    compute_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    """Training time before this process started (the resumed checkpoint's); the running clock adds the rest."""

    def to_json(self, identity: Mapping[str, Any], elapsed_seconds: float) -> dict[str, Any]:
        """The ``state.json`` object: this state, the run's ``identity`` (checked on resume) and the time so far."""
        return {**asdict(self), **identity, "elapsed_seconds": elapsed_seconds}

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> TrainState:
        """The state a ``state.json`` holds; keys a checkpoint from an older tunekit lacks take their defaults."""
        values = {f.name: state[f.name] for f in fields(cls) if state.get(f.name) is not None}
        return cls(**{**values, **{name: int(state[name]) for name in _POSITION}})


_POSITION = ("global_step", "epoch", "batch_index")  # every checkpoint has these


def run_identity(seed: int, fingerprint: str, world_size: int, global_batch: int, grad_accum: int) -> dict[str, Any]:
    """What a checkpoint records about the run that wrote it (a resume must match it)."""
    return {"seed": seed, "fingerprint": fingerprint, "world_size": world_size, "global_batch": global_batch,
            "grad_accum": grad_accum}


def save(acc: Accelerator, out: Path, model: nn.Module, optimizer: Any, scheduler: Any, state_json: dict[str, Any],
         keep: int) -> Path:
    """Write the checkpoint of step ``state_json['global_step']`` (every process calls this; the main one writes)."""
    rngs = [ckpt.rng_state()]
    if acc.num_processes > 1:
        rngs = gather_object(rngs)
    folder = ckpt.step_dir(out, state_json["global_step"])
    if acc.is_main_process:
        ckpt.write_checkpoint(folder, model, optimizer, scheduler, rngs, state_json)
        ckpt.prune(out, keep)
        log.info("checkpoint written: %s", folder)
    acc.wait_for_everyone()
    return folder


def _check_resumable(folder: Path, saved: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    fingerprint = identity["fingerprint"]
    if fingerprint and saved.get("fingerprint") and saved["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {str(folder)!r} was made by a different configuration; resume with the settings it was "
            "made with, or start over with --set output.overwrite=true."
        )
    if saved.get("world_size", 1) != identity["world_size"] or saved.get("global_batch") != identity["global_batch"]:
        raise CheckpointError(
            f"checkpoint {str(folder)!r} was written by {saved.get('world_size')} process(es) with a global batch of "
            f"{saved.get('global_batch')}; resume with the same number of processes and batch size."
        )


def restore(folder: Path, model: nn.Module, optimizer: Any, scheduler: Any, identity: Mapping[str, Any],
            rank: int) -> TrainState:
    """Load the checkpoint in ``folder`` into the model, optimiser, scheduler and RNG; return its TrainState."""
    _check_resumable(folder, ckpt.read_state(folder), identity)
    state = TrainState.from_json(ckpt.load_checkpoint(folder, model, optimizer, scheduler, rank=rank))
    log.info("resumed from %s (step %d, epoch %d, batch %d)", folder, state.global_step, state.epoch,
             state.batch_index)
    return state
