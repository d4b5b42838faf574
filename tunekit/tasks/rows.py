"""Helpers tasks use on the raw rows a dataset reader returned: columns, sample caps, validation split.

Part of the public API so third-party tasks get the same column rules and error messages.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Any, Sequence

from tunekit.errors import DataError

log = logging.getLogger("tunekit.tasks.rows")


def columns(rows: Any) -> list[str]:
    return [str(c) for c in rows.column_names]


def pick_column(
    rows: Any,
    wanted: Any,
    candidates: Sequence[str],
    what: str,
    setting: str,
    required: bool = True,
) -> str | None:
    """The column named ``wanted`` (int or str; matched as text), else the first of ``candidates`` present.

    Raises DataError listing the columns that exist when nothing fits (unless ``required`` is false).
    """
    present = columns(rows)
    if wanted is not None:
        name = str(wanted)
        if name in present:
            return name
        raise DataError(
            f"the data has no {what} column {name!r} (columns: {', '.join(present)}); "
            f"set --set {setting}=NAME to one of those."
        )
    lowered = {c.lower(): c for c in present}
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    if not required:
        return None
    raise DataError(
        f"could not tell which column holds the {what} (columns: {', '.join(present)}); "
        f"set --set {setting}=NAME."
    )


def limit(rows: Any, n: int | None) -> Any:
    """The first ``n`` rows (all when ``n`` is None)."""
    if rows is None or n is None or n >= len(rows):
        return rows
    return rows.select(range(n))


def split_validation(
    rows: Any, fraction: float, seed: int, stratify: Sequence[Any] | None = None
) -> tuple[Any, Any]:
    """Carve a seeded validation split out of ``rows``; stratified by ``stratify`` (one key per row) if given.

    Every stratum keeps at least one training row; a stratum of one row stays in training.
    """
    n = len(rows)
    if fraction <= 0:
        raise DataError("no validation data: give --val-data FILE or set data.val_split above 0.")
    if n < 2:
        raise DataError(f"the training data has {n} row(s), too few to hold some out; give --val-data FILE.")
    rng = random.Random(seed)
    if stratify is None:
        order = list(range(n))
        rng.shuffle(order)
        k = min(max(1, round(n * fraction)), n - 1)
        val_idx = sorted(order[:k])
    else:
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, key in enumerate(stratify):
            groups[key].append(i)
        val_idx = []
        for key in sorted(groups, key=str):
            members = groups[key]
            rng.shuffle(members)
            k = min(round(len(members) * fraction), len(members) - 1)
            val_idx.extend(members[:k])
        if not val_idx:  # tiny data: take one row from the largest class
            largest = max(groups.values(), key=len)
            val_idx = [largest[0]] if len(largest) > 1 else []
        if not val_idx:
            raise DataError("the training data is too small to hold a validation split out of it; give --val-data FILE.")
        val_idx.sort()
    chosen = set(val_idx)
    train_idx = [i for i in range(n) if i not in chosen]
    log.info("held out %d of %d training rows for validation (data.val_split=%s)", len(val_idx), n, fraction)
    return rows.select(train_idx), rows.select(val_idx)


def train_and_validation(ctx: Any, keys: Any = None) -> tuple[Any, Any]:
    """Training and validation rows for a task context: caps applied, a split carved when needed.

    ``keys`` (a callable from the training rows to one stratification key per row) selects a
    stratified split; otherwise the split is a seeded random one.
    """
    data = ctx.data
    train = ctx.train
    if train is None:
        raise DataError("no training data was given; pass --data FILE.")
    if len(train) == 0:
        raise DataError("the training data has no rows; give a file with at least one example.")
    validation = ctx.validation
    if validation is None:
        strat = keys(train) if keys is not None else None
        train, validation = split_validation(train, float(getattr(data, "val_split", 0.1)), ctx.seed, strat)
    train = limit(train, getattr(data, "max_train_samples", None))
    validation = limit(validation, getattr(data, "max_eval_samples", None))
    return train, validation
