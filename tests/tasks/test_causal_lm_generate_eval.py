"""causal-lm ``task.generate_eval``: validation answers generated and scored with the text metrics."""

from __future__ import annotations

import datasets
import torch

from tunekit import options as opts
from tunekit.config import DataConfig
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext

PAIRS = [{"prompt": "who lives in paris", "response": "john lives in paris"},
         {"prompt": "what is the capital", "response": "paris"},
         {"prompt": "tell me a city", "response": "london"}]


def _job(tok, rows, **task_options):
    task = registries().tasks.get("causal-lm")
    options = opts.build(task.options_class, {"max_length": 64, "max_new_tokens": 8, **task_options})
    data = datasets.Dataset.from_list(rows)
    return task.prepare(TaskContext(tok, options, DataConfig(), data, data, 0))


def test_generate_eval_scores_answers_and_reaches_full_marks(decoder_tokenizer, tiny_llama):
    job = _job(decoder_tokenizer, PAIRS, generate_eval=True)
    model = job.build_model(ResolvedModel(str(tiny_llama)), {})
    batch = job.collate(job.train_dataset)
    before = job.evaluate(model, [batch])
    for key in ("eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_bleu", "eval_chrf", "eval_exact_match"):
        assert key in before
    assert before["eval_exact_match"] < 100
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        job.loss(model, batch).backward()
        opt.step()
    after = job.evaluate(model, [batch])
    assert after["eval_exact_match"] == 100.0
    assert after["eval_chrf"] > before["eval_chrf"]
    assert after["eval_rougeL"] == 100.0


def test_generate_eval_is_off_by_default_and_bounded(decoder_tokenizer, tiny_llama, monkeypatch):
    plain = _job(decoder_tokenizer, PAIRS)
    model = plain.build_model(ResolvedModel(str(tiny_llama)), {})
    assert sorted(plain.evaluate(model, [plain.collate(plain.eval_dataset)])) == ["eval_loss", "eval_perplexity"]
    job = _job(decoder_tokenizer, PAIRS, generate_eval=True, generate_eval_samples=2)
    asked = []
    monkeypatch.setattr(job, "predict", lambda model, items: asked.extend(items) or ["paris"] * len(items))
    scores = job.evaluate(model, [job.collate(job.eval_dataset)])
    assert [conv[-1]["content"] for conv in asked] == ["who lives in paris", "what is the capital"]
    assert scores["eval_exact_match"] == 50.0  # "paris" is right for the second prompt only
