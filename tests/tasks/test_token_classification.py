"""token-classification and the CoNLL reader: sentences, sub-token alignment, entity metrics, predict."""

from __future__ import annotations

import pytest
import torch

from tunekit import options as opts
from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.errors import DataError
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext

CONLL = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O
"""


def _task():
    return registries().tasks.get("token-classification")


def _ctx(tok, train, validation=None, **options):
    task = _task()
    return TaskContext(tok, opts.build(task.options_class, {"max_length": 32, **options}), DataConfig(),
                       train, validation, 0)


@pytest.fixture
def conll_rows(tmp_path):
    f = tmp_path / "eng.train"
    f.write_text(CONLL, encoding="utf-8")
    return read_dataset(str(f), DataConfig())


def test_conll_reader(conll_rows):
    assert len(conll_rows) == 3
    assert conll_rows[0]["tokens"] == ["EU", "rejects", "German", "call", "."]
    assert conll_rows[0]["tags"] == ["I-ORG", "O", "I-MISC", "O", "O"]
    assert conll_rows[2]["tags"] == ["I-LOC", "O"]


def test_conll_line_without_label(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU I-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        read_dataset(str(f), DataConfig())


def test_labels_on_first_subtoken(conll_rows, bert_tokenizer):
    job = _task().prepare(_ctx(bert_tokenizer, conll_rows, conll_rows))
    assert job.labels[0] == "O" and set(job.labels) == {"O", "I-ORG", "I-MISC", "I-PER", "I-LOC"}
    f = job.train_dataset[1]  # "Peter Blackburn": both are split into several word pieces
    tokens = bert_tokenizer.convert_ids_to_tokens(f["input_ids"])
    learned = [(t, job.labels[lab]) for t, lab in zip(tokens, f["labels"], strict=True) if lab != -100]
    assert learned == [("peter", "I-PER"), ("blackburn", "I-PER")]
    assert sum(f["word_starts"]) == 2
    every = _task().prepare(_ctx(bert_tokenizer, conll_rows, conll_rows, label_all_tokens=True))
    g = every.train_dataset[2]
    assert sum(lab != -100 for lab in g["labels"]) > 2  # 'brussels' and the date are split: all pieces learn


def test_unknown_tag_in_validation(conll_rows, bert_tokenizer):
    import datasets

    val = datasets.Dataset.from_list([{"tokens": ["x"], "tags": ["B-DATE"]}])
    with pytest.raises(DataError, match="'B-DATE'.*never had"):
        _task().prepare(_ctx(bert_tokenizer, conll_rows, val))


def test_train_evaluate_predict(conll_rows, bert_tokenizer, tiny_bert, tmp_path):
    job = _task().prepare(_ctx(bert_tokenizer, conll_rows, conll_rows))
    model = job.build_model(ResolvedModel(str(tiny_bert)), {})
    assert job.head_modules == ["classifier"]
    batch = job.collate(job.train_dataset)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        job.loss(model, batch).backward()
        opt.step()
    scores = job.evaluate(model, [batch])
    assert set(scores) == {"eval_precision", "eval_recall", "eval_f1", "eval_accuracy", "eval_loss"}
    assert scores["eval_f1"] == 1.0 and scores["eval_accuracy"] == 1.0
    out = job.predict(model, ["Peter Blackburn", ["EU", "rejects", "German", "call", "."]])
    assert out[0]["entities"] == [{"type": "PER", "text": "Peter Blackburn", "start": 0, "end": 2}]
    assert [e["type"] for e in out[1]["entities"]] == ["ORG", "MISC"]
    job.save(tmp_path)
    again = _task().restore(_ctx(bert_tokenizer, None), tmp_path)
    assert again.labels == job.labels
    assert again.predict(model, ["Peter Blackburn"])[0]["tags"] == ["I-PER", "I-PER"]
