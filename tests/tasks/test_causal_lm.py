"""causal-lm: record shapes, templates, response-only labels, end markers, loss/perplexity, generation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tunekit import options as opts
from tunekit.builtins.tasks.causal_lm import records
from tunekit.config import DataConfig
from tunekit.errors import DataError
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [MASK] {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def _rows(recs):
    import datasets

    return datasets.Dataset.from_list(recs)


def _task():
    return registries().tasks.get("causal-lm")


def _ctx(tok, train, validation=None, task_options=None, **data):
    task = _task()
    options = opts.build(task.options_class, {"max_length": 64, "max_new_tokens": 8, **(task_options or {})})
    return TaskContext(tok, options, DataConfig(**data), train, validation, 0)


@pytest.fixture
def chat_tokenizer(decoder_tokenizer):
    tok = copy.deepcopy(decoder_tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    return tok


ALPACA = [
    {"instruction": "who lives in paris", "input": "", "output": "john lives in paris ."},
    {"instruction": "what is the capital", "input": "of france", "output": "paris ."},
    {"instruction": "tell me a city", "input": "", "output": "london ."},
]


@pytest.mark.parametrize(("record", "kind"), [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "chat"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, "chat"),
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
    ({"instruction": "a", "instances": [{"input": "", "output": "b"}]}, "seed"),
    ({"prompt": "a", "response": "b"}, "pair"),
    ({"question": "a", "answer": "b"}, "pair"),
    ({"text": "a b"}, "text"),
])
def test_record_shapes(record, kind):
    shape = records.detect_shape(list(record))
    assert shape.kind == kind
    conv = records.conversations(record, shape, 1)[0]
    if kind == "text":
        assert conv == "a b"
    else:
        assert conv == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_unknown_shape_and_bad_role():
    with pytest.raises(DataError, match="cannot tell the record shape"):
        records.detect_shape(["foo", "bar"])
    shape = records.detect_shape(["messages"])
    with pytest.raises(DataError, match="role 'robot'"):
        records.conversations({"messages": [{"role": "robot", "content": "x"}]}, shape, 3)


def test_plain_template_learns_only_response_and_eos(decoder_tokenizer):
    tok = decoder_tokenizer
    job = _task().prepare(_ctx(tok, _rows(ALPACA), _rows(ALPACA)))
    assert job.template == "plain" and job.metric_for_best == "eval_loss" and not job.greater_is_better
    f = job.train_dataset[0]
    learned = [i for i, lab in zip(f["input_ids"], f["labels"], strict=True) if lab != -100]
    assert tok.decode(learned) == "john lives in paris. [SEP]"
    assert learned[-1] == tok.eos_token_id
    assert f["input_ids"][-1] == tok.eos_token_id
    everything = _task().prepare(_ctx(tok, _rows(ALPACA), _rows(ALPACA), {"train_on_prompt": True}))
    assert everything.train_dataset[0]["labels"] == everything.train_dataset[0]["input_ids"]


def test_chat_template_learns_end_of_turn_marker(chat_tokenizer):
    convs = [{"messages": [{"role": "user", "content": "good"}, {"role": "assistant", "content": "bad"},
                           {"role": "user", "content": "nice"}, {"role": "assistant", "content": "fine"}]}]
    job = _task().prepare(_ctx(chat_tokenizer, _rows(convs), _rows(convs)))
    assert job.template == "chat"
    mask_id = chat_tokenizer.mask_token_id
    assert mask_id in job.stop_ids
    f = job.train_dataset[0]
    learned = [i for i, lab in zip(f["input_ids"], f["labels"], strict=True) if lab != -100]
    assert chat_tokenizer.convert_ids_to_tokens(learned) == ["bad", "[MASK]", "fine", "[MASK]"]
    prompt = chat_tokenizer.decode(job.prompt_ids("good"))
    assert prompt.endswith("assistant :")


def test_truncated_examples_without_response_are_dropped(decoder_tokenizer):
    long = [{"prompt": "good " * 80, "response": "bad"}, {"prompt": "a", "response": "b"}]
    job = _task().prepare(_ctx(decoder_tokenizer, _rows(long), _rows(long[1:])))
    assert len(job.train_dataset) == 1
    with pytest.raises(DataError, match="max_length"):
        _task().prepare(_ctx(decoder_tokenizer, _rows(long[:1]), _rows(long[:1])))


def test_loss_perplexity_and_padding(decoder_tokenizer, tiny_gpt2):
    job = _task().prepare(_ctx(decoder_tokenizer, _rows(ALPACA), _rows(ALPACA)))
    model = job.build_model(ResolvedModel(str(tiny_gpt2)), {})
    assert job.head_modules == []
    batch = job.collate(job.train_dataset)
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    loss = job.loss(model, batch)
    assert torch.isfinite(loss)
    # padding does not change an example's loss
    single = job.loss(model, job.collate(job.train_dataset[1:2]))
    model.eval()
    with torch.no_grad():
        total, count = job._token_losses(model, batch)
        s1, n1 = job._token_losses(model, job.collate(job.train_dataset[1:2]))
        s_all = sum(job._token_losses(model, job.collate([f]))[0] for f in job.train_dataset)
    assert torch.allclose(total, s_all, rtol=1e-4)
    scores = job.evaluate(model, [batch])
    assert scores["eval_loss"] == pytest.approx(float(total / count), rel=1e-5)
    assert scores["eval_perplexity"] == pytest.approx(math.exp(scores["eval_loss"]), rel=1e-5)
    assert torch.isfinite(single) and torch.isfinite(s1) and int(n1) > 0


def test_tuned_llama_answers_and_stops(decoder_tokenizer, tiny_llama, tmp_path):
    data = [{"prompt": "who lives in paris", "response": "john lives in paris"}]
    job = _task().prepare(_ctx(decoder_tokenizer, _rows(data), _rows(data), {"max_new_tokens": 8}))
    model = job.build_model(ResolvedModel(str(tiny_llama)), {})
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = job.collate(job.train_dataset)
    before = job.evaluate(model, [batch])["eval_loss"]
    model.train()
    for _ in range(40):
        opt.zero_grad()
        job.loss(model, batch).backward()
        opt.step()
    after = job.evaluate(model, [batch])["eval_loss"]
    assert after < before / 4
    # stops at EOS (4 tokens) instead of running on to max_new_tokens=8
    assert job.predict(model, ["who lives in paris"]) == ["john lives in paris"]
    job.save(tmp_path)
    again = _task().restore(_ctx(decoder_tokenizer, None), tmp_path)
    assert again.predict(model, ["who lives in paris", "who lives in paris please"])[0] == "john lives in paris"
