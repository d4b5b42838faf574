"""Batches: every example once per epoch, seeded, resumable, grouped by length, sharded across processes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tunekit.engine.batching import BatchPlan


def padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), bs=st.integers(1, 17), world=st.integers(1, 3), epoch=st.integers(0, 5),
       grouped=st.booleans())
def test_each_example_once_per_epoch_and_processes_split_the_global_batches(n, bs, world, epoch, grouped):
    lengths = np.random.default_rng(0).integers(1, 100, size=n).tolist() if grouped else None
    plans = [BatchPlan(n, bs, 3, world_size=world, rank=r, lengths=lengths) for r in range(world)]
    gbatches = plans[0].global_batches(epoch)
    assert len(gbatches) == plans[0].batches_per_epoch
    assert sorted(np.concatenate(gbatches).tolist()) == list(range(n))
    assert all(len(b) == bs * world for b in gbatches[:-1])
    per_rank = [p.epoch_batches(epoch) for p in plans]
    assert len({len(b) for b in per_rank}) == 1  # every process takes the same number of steps
    for j, gb in enumerate(gbatches):
        shares = [per_rank[r][j] for r in range(world)]
        if len(gb) >= world:
            assert sorted(sum(shares, [])) == sorted(gb.tolist())


def test_seeded_per_epoch_and_resumable_from_a_batch_index():
    plan = BatchPlan(100, 8, seed=1)
    again = BatchPlan(100, 8, seed=1)
    assert plan.epoch_batches(2) == again.epoch_batches(2)
    assert plan.epoch_batches(0) != plan.epoch_batches(1)
    assert BatchPlan(100, 8, seed=2).epoch_batches(0) != plan.epoch_batches(0)
    assert plan.epoch_batches(1, start=5) == plan.epoch_batches(1)[5:]


def test_length_grouping_cuts_padding_and_stays_random():
    lengths = np.random.default_rng(0).integers(5, 200, size=2000).tolist()
    plain = BatchPlan(2000, 16, 0).epoch_batches(0)
    grouped = BatchPlan(2000, 16, 0, lengths=lengths).epoch_batches(0)
    assert padding(grouped, lengths) < 0.2 * padding(plain, lengths)
    firsts = [max(lengths[i] for i in b) for b in grouped[:10]]
    assert firsts != sorted(firsts, reverse=True)  # batch order is shuffled, not sorted by length


def test_single_example_on_two_processes_is_repeated_rather_than_empty():
    plans = [BatchPlan(1, 4, 0, world_size=2, rank=r) for r in range(2)]
    assert plans[0].epoch_batches(0) == [[0]] and plans[1].epoch_batches(0) == [[0]]


def test_evaluation_is_batched_by_length_only_when_the_job_allows_it():
    from types import SimpleNamespace

    from tunekit.engine.evaluate import eval_batches

    lengths = [5, 1, 4, 2, 3]
    data = [{"input_ids": list(range(n))} for n in lengths]

    def batches(order_free: bool) -> list[list[int]]:
        job = SimpleNamespace(eval_dataset=data, collate=lambda feats: [len(f["input_ids"]) for f in feats],
                              eval_order_free=order_free)
        return list(eval_batches(job, 2, "cpu"))

    assert batches(False) == [[5, 1], [4, 2], [3]]  # question answering maps results back by position
    assert batches(True) == [[1, 2], [3, 4], [5]]
