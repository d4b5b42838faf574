"""Which examples go into which batch: seeded, resumable, optionally grouped by length, sharded by rank.

The order of one epoch is a pure function of ``(seed, epoch)``, so resuming needs only the epoch
and the index of the next batch. Every process computes the same *global* batches (``batch_size *
world_size`` examples) and takes its own slice, so data-parallel training sees the same examples
per optimiser step as one process with the global batch.

Length grouping: the shuffled indices are cut into mega-batches of ``MEGA`` global batches; each
mega-batch is sorted by length (longest first) and cut into batches, and the batches are shuffled.
Examples of similar length then share a batch (less padding) while the epoch stays random.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

MEGA = 50


def example_length(feature: Any) -> int:
    """Tokens in one feature dict (``input_ids``), or 1 when it has none."""
    ids = feature.get("input_ids") if isinstance(feature, dict) else None
    if ids is None:
        return 1
    return int(ids.numel()) if hasattr(ids, "numel") else len(ids)


def lengths_of(dataset: Sequence[Any]) -> list[int]:
    return [example_length(dataset[i]) for i in range(len(dataset))]


class BatchPlan:
    """The global batches of each epoch, and this process's share of each."""

    def __init__(self, n_examples: int, batch_size: int, seed: int, *, world_size: int = 1, rank: int = 0,
                 lengths: Sequence[int] | None = None, shuffle: bool = True) -> None:
        if n_examples <= 0:
            raise ValueError("BatchPlan needs at least one example")
        self.n = n_examples
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.lengths = np.asarray(lengths) if lengths is not None else None
        self.shuffle = shuffle

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.n / self.global_batch)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All global batches of ``epoch`` (the same on every process)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        gb = self.global_batch
        if self.lengths is None:
            return [order[i:i + gb] for i in range(0, self.n, gb)]
        batches: list[np.ndarray] = []
        mega = gb * MEGA
        for start in range(0, self.n, mega):
            chunk = order[start:start + mega]
            # stable sort keeps the shuffled order among equal lengths
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + gb] for i in range(0, len(chunk), gb))
        # The last (possibly short) batch stays last so that every other batch is full.
        full, last = batches[:-1], batches[-1]
        perm = rng.permutation(len(full)) if self.shuffle else np.arange(len(full))
        return [full[i] for i in perm] + [last]

    def local(self, batch: np.ndarray) -> list[int]:
        """This process's slice of a global batch (short final batches are split as evenly as possible;
        a process left with nothing repeats the batch's first example so that all processes step together)."""
        if self.world_size == 1:
            return batch.tolist()
        parts = np.array_split(batch, self.world_size)
        mine = parts[self.rank]
        return mine.tolist() if len(mine) else [int(batch[0])]

    def epoch_batches(self, epoch: int, start: int = 0) -> list[list[int]]:
        """This process's batches of ``epoch`` from batch index ``start`` on."""
        return [self.local(b) for b in self.global_batches(epoch)[start:]]
