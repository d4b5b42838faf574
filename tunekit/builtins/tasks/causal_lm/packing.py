"""Packing: several training examples per row, each attending only to itself.

A packed row concatenates examples and carries ``position_ids`` that restart at 0 for each of them. The
collated batch then has position ids and *no* attention mask, which is the form transformers
(``masking_utils.find_packed_sequence_indices``) reads as packed sequences: SDPA and eager attention get a
block-causal mask, flash attention runs variable-length. Row padding is one more "example" (its positions
restart at 0 too, its labels are -100), so it neither sees nor is seen by real tokens. Each example's first
label is set to -100 so that the previous example's last token never learns to predict it (in an unpacked
row that label is never a target either, so the loss is the same).

Algorithm: best-fit decreasing on lengths (longest example first, into the fullest row it still fits).
It fills rows as well as first-fit decreasing (the same 11/9 bound) and, with the rows kept in a list sorted
by free space, places each example with one binary search instead of a scan over all rows. Ties break on
the example's index and on the row's creation order, so the result depends only on the lengths.
datasets/transformers offer no bin packing for variable-length examples, hence this short routine.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import torch

from tunekit.tasks import pieces


def plan_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of the examples in each row: every index once, no row longer than ``capacity`` tokens."""
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(f"example {too_long[0]} has {lengths[too_long[0]]} tokens, more than a row's {capacity}")
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row number), sorted
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        spot = bisect.bisect_left(free, (lengths[i], -1))
        if spot == len(free):
            rows.append([i])
            bisect.insort(free, (capacity - lengths[i], len(rows) - 1))
            continue
        room, row = free.pop(spot)
        rows[row].append(i)
        bisect.insort(free, (room - lengths[i], row))
    return rows


def pack(features: Sequence[dict[str, list[int]]], capacity: int) -> list[dict[str, list[int]]]:
    """Packed rows (``input_ids``, ``labels``, ``position_ids``) of at most ``capacity`` tokens."""
    packed = []
    for row in plan_rows([len(f["input_ids"]) for f in features], capacity):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in row:
            f = features[i]
            ids.extend(f["input_ids"])
            labels.extend([-100, *f["labels"][1:]])
            positions.extend(range(len(f["input_ids"])))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return packed


def collate_packed(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of packed rows: padded ids and labels, position ids (the padding restarting at 0), no attention mask."""
    width = max(len(f["input_ids"]) for f in features)
    positions = [list(f["position_ids"]) + list(range(width - len(f["position_ids"]))) for f in features]
    return {
        "input_ids": pieces.pad_stack([f["input_ids"] for f in features], pad_id),
        "labels": pieces.pad_stack([f["labels"] for f in features], -100),
        "position_ids": torch.tensor(positions, dtype=torch.long),
    }
