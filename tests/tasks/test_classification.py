"""sequence-classification on tiny random models: labels, columns, splits, loss, metrics, save/restore."""

from __future__ import annotations

import pytest
import torch

from tunekit import options as opts
from tunekit.config import DataConfig
from tunekit.errors import DataError
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext


def _rows(records):
    import datasets

    return datasets.Dataset.from_list(records)


def _task():
    return registries().tasks.get("sequence-classification")


def _ctx(tok, train, validation=None, **data):
    task = _task()
    return TaskContext(tok, opts.build(task.options_class, {"max_length": 32}), DataConfig(**data), train, validation, 0)


TRAIN = [{"sentence": f"good movie {i}", "label": "positive"} for i in range(10)] + [
    {"sentence": f"bad film {i}", "label": "negative"} for i in range(10)
]


def test_string_labels_sorted_and_stratified_split(bert_tokenizer):
    job = _task().prepare(_ctx(bert_tokenizer, _rows(TRAIN), val_split=0.2))
    assert job.labels == ["negative", "positive"]
    assert len(job.train_dataset) == 16 and len(job.eval_dataset) == 4
    assert sorted(f["labels"] for f in job.eval_dataset) == [0, 0, 1, 1]
    assert job.metric_for_best == "eval_accuracy" and job.greater_is_better


def test_integer_labels_keep_their_value_as_id(bert_tokenizer):
    rows = [{"text": "a", "label": lab} for lab in (2, 0, 10, 1, 2, 0, 10, 1)]
    job = _task().prepare(_ctx(bert_tokenizer, _rows(rows), _rows(rows)))
    assert job.labels == ["0", "1", "2", "10"]
    assert [f["labels"] for f in job.train_dataset] == [2, 0, 3, 1, 2, 0, 3, 1]


def test_headerless_columns_given_as_integers(bert_tokenizer):
    rows = _rows([{"0": "src", "1": str(i % 2), "2": "", "3": f"sentence {i}"} for i in range(8)])
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows, header=False, label_column=1, text_column=3))
    assert job.text_column == "3" and job.label_column == "1"
    assert job.labels == ["0", "1"]


def test_missing_column_lists_columns(bert_tokenizer):
    with pytest.raises(DataError, match=r"columns: sentence, label"):
        _task().prepare(_ctx(bert_tokenizer, _rows(TRAIN), text_column="review"))


def test_unknown_validation_label(bert_tokenizer):
    val = _rows([{"sentence": "meh", "label": "neutral"}])
    with pytest.raises(DataError, match="'neutral'.*never had"):
        _task().prepare(_ctx(bert_tokenizer, _rows(TRAIN), val))


def test_single_class_is_refused(bert_tokenizer):
    rows = _rows([{"sentence": "x", "label": 1}] * 4)
    with pytest.raises(DataError, match="only one class"):
        _task().prepare(_ctx(bert_tokenizer, rows, rows))


def test_bert_head_loss_metrics_predict_and_restore(bert_tokenizer, tiny_bert, tmp_path):
    job = _task().prepare(_ctx(bert_tokenizer, _rows(TRAIN), _rows(TRAIN[:4] + TRAIN[-4:])))
    model = job.build_model(ResolvedModel(str(tiny_bert)), {})
    assert job.head_modules == ["bert.pooler", "classifier"]  # task.train_pooler is on by default
    assert model.config.id2label == {0: "negative", 1: "positive"}
    batch = job.collate(job.train_dataset[:6])
    assert batch["input_ids"].shape[0] == 6 and batch["labels"].tolist() == [1] * 6
    loss = job.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.classifier.weight.grad is not None
    # a few steps of training fit the toy data
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    full = job.collate(job.train_dataset)
    for _ in range(25):
        opt.zero_grad()
        job.loss(model, full).backward()
        opt.step()
    batches = [job.collate(job.eval_dataset[i:i + 3]) for i in range(0, len(job.eval_dataset), 3)]
    scores = job.evaluate(model, batches)
    assert set(scores) == {"eval_loss", "eval_accuracy", "eval_f1", "eval_matthews_correlation"}
    assert scores["eval_accuracy"] == 1.0 and scores["eval_matthews_correlation"] == pytest.approx(1.0)
    assert model.training  # evaluate restores the mode
    preds = job.predict(model, ["good movie", "bad film"])
    assert [p["label"] for p in preds] == ["positive", "negative"]
    job.save(tmp_path)
    again = _task().restore(_ctx(bert_tokenizer, None), tmp_path)
    assert again.labels == job.labels and again.head_modules == ["bert.pooler", "classifier"]
    assert [p["label"] for p in again.predict(model, ["good movie", "bad film"])] == ["positive", "negative"]


@pytest.mark.parametrize("model_fixture", ["tiny_gpt2", "tiny_llama"])
def test_decoder_models_get_pad_token_and_pool_last_token(decoder_tokenizer, model_fixture, request):
    folder = request.getfixturevalue(model_fixture)
    job = _task().prepare(_ctx(decoder_tokenizer, _rows(TRAIN), _rows(TRAIN)))
    assert decoder_tokenizer.pad_token == "[SEP]"
    model = job.build_model(ResolvedModel(str(folder)), {})
    assert job.head_modules == ["score"]
    assert model.config.pad_token_id == decoder_tokenizer.pad_token_id
    model.eval()
    short = job.collate([job.train_dataset[0]])
    padded = job.collate([job.train_dataset[0], {"input_ids": job.train_dataset[0]["input_ids"] + [5, 6, 7]}])
    with torch.no_grad():
        a = job._logits(model, {k: v for k, v in short.items() if k != "labels"})
        b = job._logits(model, {k: v for k, v in padded.items() if k != "labels"})
    assert torch.allclose(a[0], b[0], atol=1e-5)  # padding does not change the pooled token


def test_eval_data_without_the_label_column(bert_tokenizer):
    job = _task().prepare(_ctx(bert_tokenizer, _rows(TRAIN), _rows(TRAIN)))
    with pytest.raises(DataError, match=r"no label column 'label' \(columns: sentence\)"):
        job.encode(_rows([{"sentence": "x"}]))


def test_text_pairs(bert_tokenizer):
    rows = _rows([{"sentence1": f"good {i}", "sentence2": "bad", "label": i % 2} for i in range(6)])
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    assert job.pair_column == "sentence2"
    assert 1 in job.train_dataset[0]["token_type_ids"]  # the second segment is marked
