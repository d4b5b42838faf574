"""The training loop on a tiny BERT: learning, determinism, accumulation, evaluation, best/early stopping,
listeners, Ctrl-C, resume and the run-folder rules."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal

import pytest
import torch
from tinyjob import FullApplied, TinyJob, max_diff, tiny_bert, weights

from tunekit.config import TrainingConfig
from tunekit.engine import find_last_checkpoint, train
from tunekit.errors import CheckpointError, ConfigError, TrainingInterrupted


def cfg(**kw) -> TrainingConfig:
    base = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "logging_steps": 2, "max_grad_norm": 1.0}
    base.update(kw)
    tc = TrainingConfig(**base)
    tc.validate()
    return tc


def run(tmp_path, name="run", model=None, job=None, **kw):
    model = model or tiny_bert()
    job = job or TinyJob()
    listeners = kw.pop("listeners", ())
    fp = kw.pop("fingerprint", "fp")
    result = train(model, job, cfg(**kw), tmp_path / name, applied=FullApplied(model), listeners=listeners,
                   config_fingerprint=fp)
    return model, result


class Recorder:
    def __init__(self):
        self.events = []

    def on_train_begin(self, total_steps, start_step):
        self.events.append(("begin", total_steps, start_step))

    def on_log(self, step, metrics):
        self.events.append(("log", step, dict(metrics)))

    def on_evaluate(self, step, metrics):
        self.events.append(("eval", step, dict(metrics)))

    def on_train_end(self, result):
        self.events.append(("end", result.steps))


def test_training_lowers_the_loss_and_writes_the_run_files(tmp_path):
    model, result = run(tmp_path, epochs=6, eval_steps=8, lr=2e-3, load_best_at_end=False)
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    assert result.steps == 6 * math.ceil(64 / 8) == 48
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.05
    assert {"step", "epoch", "loss", "lr", "tokens_per_second"} <= set(logs[0])
    # eval every 8 steps: 8, 16, ..., 48 (the epoch ends coincide with them)
    assert [r["step"] for r in evals] == [8, 16, 24, 32, 40, 48]
    assert result.final_metrics == {k: v for k, v in evals[-1].items() if k.startswith("eval_")}
    assert result.best_metrics["eval_accuracy"] == max(r["eval_accuracy"] for r in evals)
    assert result.best_checkpoint == out / "best"
    assert (out / "best" / "trainable.safetensors").is_file()
    assert (out / "best" / "adapter" / "adapter_model.safetensors").is_file()
    assert result.tokens_per_second > 0 and result.train_seconds > 0 and result.peak_memory_mb > 10
    assert logs[0]["lr"] > logs[-1]["lr"]  # linear decay
    if importlib.util.find_spec("matplotlib"):
        assert (out / "loss.png").stat().st_size > 1000


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path):
    a, _ = run(tmp_path, "a", max_steps=6)
    b, _ = run(tmp_path, "b", max_steps=6)
    c, _ = run(tmp_path, "c", max_steps=6, seed=7)
    assert max_diff(weights(a), weights(b)) == 0.0
    assert max_diff(weights(a), weights(c)) > 0.0


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    job = TinyJob(n_train=48, n_eval=0)
    big, _ = run(tmp_path, "big", model=tiny_bert(dropout=0.0), job=job, batch_size=8, group_by_length=False)
    acc, _ = run(tmp_path, "acc", model=tiny_bert(dropout=0.0), job=job, batch_size=4, grad_accum=2,
                 group_by_length=False)
    assert max_diff(weights(big), weights(acc)) < 1e-5


def test_bf16_autocast_trains(tmp_path):
    model, result = run(tmp_path, precision="bf16", max_steps=4)
    assert math.isfinite(result.train_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, weights stay fp32


def test_listeners_see_every_event_in_order(tmp_path):
    rec = Recorder()
    run(tmp_path, listeners=[rec], max_steps=4, eval_steps=2, logging_steps=2)
    kinds = [(e[0], e[1]) for e in rec.events]
    assert kinds == [("begin", 4), ("log", 2), ("eval", 2), ("log", 4), ("eval", 4), ("end", 4)]
    assert rec.events[0][2] == 0


def test_early_stopping_after_patience_evaluations(tmp_path):
    # lr so small that accuracy cannot change: the first evaluation stays the best
    _, result = run(tmp_path, lr=1e-12, max_steps=40, eval_steps=2, early_stopping_patience=2)
    assert result.stopped_early
    assert result.steps == 6
    assert result.best_step == 2


def test_best_weights_are_restored_at_the_end(tmp_path):
    model, result = run(tmp_path, epochs=4, eval_steps=2, lr=5e-3, metric_for_best="eval_loss")
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}
    assert result.best_step == min(losses, key=losses.get)
    assert result.final_metrics["eval_loss"] == pytest.approx(min(losses.values()))
    # the weights on return are the ones in best/
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "best" / "trainable.safetensors"))
    assert max_diff(saved, {k: v for k, v in weights(model).items() if k in saved}) == 0.0


def test_unknown_metric_for_best_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="eval_accuracy"):
        run(tmp_path, metric_for_best="eval_f1", max_steps=2, eval_steps=1)


def test_ctrl_c_writes_a_checkpoint_and_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    reference, _ = run(tmp_path, "ref", max_steps=10, logging_steps=1, eval_steps=4, save_steps=4)

    class CtrlC:
        def on_log(self, step, metrics):
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="--resume") as info:
        run(tmp_path, "cut", max_steps=10, logging_steps=1, eval_steps=4, save_steps=4, listeners=[CtrlC()])
    assert info.value.exit_code == 130
    assert find_last_checkpoint(tmp_path / "cut").name == "step-3"

    rec = Recorder()
    resumed, result = run(tmp_path, "cut", max_steps=10, logging_steps=1, eval_steps=4, save_steps=4, resume=True,
                          listeners=[rec])
    assert rec.events[0] == ("begin", 10, 3)
    assert result.resumed_from.name == "step-3"
    assert max_diff(weights(reference), weights(resumed)) == 0.0
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == list(range(1, 11))  # no duplicated or missing log lines


def test_sigterm_also_stops_with_a_checkpoint(tmp_path):
    class Term:
        def on_log(self, step, metrics):
            if step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="step 2"):
        run(tmp_path, max_steps=6, logging_steps=1, listeners=[Term()])
    assert find_last_checkpoint(tmp_path / "run").name == "step-2"
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored


def test_rerun_into_a_folder_with_checkpoints_needs_resume_or_overwrite(tmp_path):
    run(tmp_path, max_steps=2, save_steps=2)
    with pytest.raises(CheckpointError, match="--resume") as info:
        run(tmp_path, max_steps=2, save_steps=2)
    assert "output.overwrite=true" in str(info.value)
    with pytest.raises(CheckpointError, match="different configuration"):
        run(tmp_path, max_steps=4, save_steps=2, resume=True, fingerprint="other")
    model = tiny_bert()
    result = train(model, TinyJob(), cfg(max_steps=2), tmp_path / "run", applied=FullApplied(model),
                   config_fingerprint="fp", overwrite=True)
    assert result.steps == 2 and find_last_checkpoint(tmp_path / "run") is None


def test_empty_training_set_is_a_data_error(tmp_path):
    from tunekit.errors import DataError

    job = TinyJob()
    job.train_dataset = []
    with pytest.raises(DataError, match="empty"):
        run(tmp_path, job=job)


def test_a_missing_learning_rate_is_a_config_error(tmp_path):
    model = tiny_bert()
    with pytest.raises(ConfigError, match="training.lr"):
        train(model, TinyJob(), TrainingConfig(max_steps=1), tmp_path / "run", applied=FullApplied(model))


class CausalJob(TinyJob):
    """Next-token prediction on the same random sequences (labels = inputs, padding ignored)."""

    head_modules: list[str] = []
    metric_for_best = "eval_loss"
    greater_is_better = False

    def collate(self, features):
        batch = super().collate(features)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch

    def evaluate(self, model, batches):
        losses = [float(model(**b).loss) for b in batches]
        return {"eval_loss": sum(losses) / len(losses)}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoders_train_too(tmp_path, family):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if family == "gpt2":  # Conv1D layers, tied embeddings
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=32))
    else:  # grouped-query attention
        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=50))
    before = weights(model)
    result = train(model, CausalJob(n_train=32, n_eval=8), cfg(max_steps=4, eval_steps=2, layer_decay=0.8,
                                                                 backbone_lr=5e-4),
                   tmp_path / family, applied=FullApplied(model))
    assert math.isfinite(result.train_loss) and "eval_loss" in result.final_metrics
    assert result.metric_for_best == "eval_loss"
    assert max_diff(before, weights(model)) > 0


class TokenMeanJob(TinyJob):
    """A loss averaged over real tokens (as causal-LM losses are), with ``loss_weight`` saying how many there are."""

    def loss(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # per-token loss: each real token is scored against the sequence label (a token-level mean)
        per_token = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
        mask = batch["attention_mask"].float()
        lengths = mask.sum(1)
        return (per_token * lengths).sum() / lengths.sum()

    def loss_weight(self, batch):
        return int(batch["attention_mask"].sum())


@pytest.mark.parametrize("job_class", [TinyJob, TokenMeanJob])
def test_accumulation_weights_uneven_micro_batches_like_one_batch(tmp_path, job_class):
    # 46 examples: the last batch of 8 is 6 examples, i.e. micro-batches of 4 and 2 (and of unequal token
    # counts): an unweighted mean of the two micro-batch losses would differ from the big batch's loss.
    job = job_class(n_train=46, n_eval=0)
    big, _ = run(tmp_path, "big", model=tiny_bert(dropout=0.0), job=job, batch_size=8, group_by_length=False)
    acc, _ = run(tmp_path, "acc", model=tiny_bert(dropout=0.0), job=job, batch_size=4, grad_accum=2,
                 group_by_length=False)
    assert max_diff(weights(big), weights(acc)) < 1e-5
