"""question-answering: SQuAD reading, windows and answer positions, postprocessing, no-answer, metrics."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tunekit import cli as cli_module
from tunekit import options as opts
from tunekit.builtins.tasks.question_answering.answers import best_answers
from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.errors import DataError
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.runs import runner
from tunekit.tasks.protocol import TaskContext

CONTEXT = ("the eu rejects german call . peter blackburn went to brussels . mary lives in paris , "
           "the capital of france . john works in london , england .")


def _squad(path, version="v2.0"):
    qas = [
        {"id": "q1", "question": "where does mary live ?",
         "answers": [{"text": "paris", "answer_start": CONTEXT.index("paris")}]},
        {"id": "q2", "question": "who works in london ?",
         "answers": [{"text": "john", "answer_start": CONTEXT.index("john")}]},
        {"id": "q3", "question": "what is the name of the river ?", "answers": [], "is_impossible": True},
    ]
    if version != "v2.0":
        qas = qas[:2]
    tree = {"version": version, "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    path.write_text(json.dumps(tree), encoding="utf-8")
    return path


def _task():
    return registries().tasks.get("question-answering")


def _ctx(tok, train, validation=None, **options):
    task = _task()
    values = {"max_length": 32, "stride": 8, **options}
    return TaskContext(tok, opts.build(task.options_class, values), DataConfig(), train, validation, 0)


def test_squad_reader_detects_structure(tmp_path):
    rows = read_dataset(str(_squad(tmp_path / "s.json")), DataConfig())
    assert rows.column_names == ["id", "title", "context", "question", "answers", "is_impossible"]
    assert rows[0]["answers"] == {"text": ["paris"], "answer_start": [CONTEXT.index("paris")]}
    assert rows[2]["answers"]["text"] == [] and rows[2]["is_impossible"]


def test_plain_json_given_to_qa_is_refused(tmp_path, bert_tokenizer):
    f = tmp_path / "plain.json"
    f.write_text(json.dumps([{"text": "a", "label": 1}]), encoding="utf-8")
    rows = read_dataset(str(f), DataConfig())
    with pytest.raises(DataError, match="does not fit question-answering"):
        _task().prepare(_ctx(bert_tokenizer, rows, rows))


def test_windows_hold_answer_positions(tmp_path, bert_tokenizer):
    rows = read_dataset(str(_squad(tmp_path / "s.json")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    assert job.allow_no_answer  # v2 data has an unanswerable question
    feats = job.train_dataset
    assert len(feats) > len(rows)  # the context needs several 32-token windows
    for ex_index, answer in enumerate(["paris", "john", None]):
        windows = [f for f in feats.items if f["example_index"] == ex_index]
        hits = [f for f in windows if f["start_positions"] > 0]
        if answer is None:
            assert not hits
            continue
        assert hits, "some window holds the answer"
        for f in hits:
            ids = f["input_ids"][f["start_positions"]:f["end_positions"] + 1]
            assert bert_tokenizer.decode(ids) == answer
            s, e = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
            assert CONTEXT[s:e] == answer
        for f in windows:
            assert len(f["input_ids"]) <= 32


def test_postprocess_picks_best_span_and_no_answer(tmp_path, bert_tokenizer):
    rows = read_dataset(str(_squad(tmp_path / "s.json")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    feats = job.eval_dataset
    logits = {}
    for f in feats.items:  # "perfect" logits from the gold positions
        n = len(f["input_ids"])
        start, end = [0.0] * n, [0.0] * n
        start[f["start_positions"]] += 5.0
        end[f["end_positions"]] += 5.0
        logits[f["feature_index"]] = (start, end)
    answers = best_answers(feats, logits, n_best=5, max_answer_length=10, allow_no_answer=True, null_threshold=0.0)
    assert [a.text for a in answers] == ["paris", "john", ""]
    # without the no-answer rule, the unanswerable question still gets a span
    forced = best_answers(feats, logits, n_best=5, max_answer_length=10, allow_no_answer=False, null_threshold=0.0)
    assert forced[0].text == "paris" and forced[2].text != ""


def test_training_step_metrics_and_predict(tmp_path, bert_tokenizer, tiny_bert):
    rows = read_dataset(str(_squad(tmp_path / "s.json", "v1.1")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows, max_length=64, stride=16))
    assert not job.allow_no_answer
    model = job.build_model(ResolvedModel(str(tiny_bert)), {})
    assert job.head_modules == ["qa_outputs"]
    batch = job.collate(job.train_dataset.items)
    loss = job.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.qa_outputs.weight.grad is not None
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(40):
        opt.zero_grad()
        job.loss(model, batch).backward()
        opt.step()
    scores = job.evaluate(model, [job.collate(job.eval_dataset.items[i:i + 2])
                                  for i in range(0, len(job.eval_dataset), 2)])
    assert {"eval_exact_match", "eval_f1", "eval_loss"} <= set(scores)
    assert scores["eval_exact_match"] == 100.0
    pred = job.predict(model, [("where does mary live ?", CONTEXT), {"question": "who works in london ?", "context": CONTEXT}])
    assert [p["answer"] for p in pred] == ["paris", "john"]
    job.save(tmp_path / "run")
    again = _task().restore(_ctx(bert_tokenizer, None, max_length=64, stride=16), tmp_path / "run")
    assert again.predict(model, [("where does mary live ?", CONTEXT)])[0]["answer"] == "paris"


def _batches(job, size=4):
    data = job.eval_dataset
    return [job.collate(data.items[i:i + size]) for i in range(0, len(data), size)]


def test_no_answer_follows_the_validation_data(tmp_path, bert_tokenizer, tiny_bert, caplog):
    v2 = read_dataset(str(_squad(tmp_path / "v2.json")), DataConfig())
    v1 = read_dataset(str(_squad(tmp_path / "v1.json", "v1.1")), DataConfig())
    with caplog.at_level("INFO", logger="tunekit.tasks.question_answering"):
        job = _task().prepare(_ctx(bert_tokenizer, v2, v1))  # trained with unanswerable ones, scored on v1.1
        assert not job.allow_no_answer
        model = job.build_model(ResolvedModel(str(tiny_bert)), {})
        for _ in range(2):
            scores = job.evaluate(model, _batches(job))
    told = [r for r in caplog.records if "no unanswerable questions" in r.getMessage()]
    assert len(told) == 1 and told[0].levelname == "INFO"
    assert "eval_HasAns_f1" not in scores and "eval_best_f1_thresh" not in scores
    assert _task().prepare(_ctx(bert_tokenizer, v1, v2)).allow_no_answer  # v2 validation: "no answer" allowed
    caplog.clear()
    with caplog.at_level("INFO", logger="tunekit.tasks.question_answering"):
        forced = _task().prepare(_ctx(bert_tokenizer, v2, v1, allow_no_answer=True))
    assert forced.allow_no_answer and not caplog.records  # the explicit override wins, nothing to say
    assert not _task().prepare(_ctx(bert_tokenizer, v1, v2, allow_no_answer=False)).allow_no_answer


def _trained_questions(job):
    return {job.train_dataset.examples[f["example_index"]].question for f in job.train_dataset.items}


def test_spans_only_evaluation_trains_on_answerable_questions(tmp_path, bert_tokenizer, caplog):
    v2 = read_dataset(str(_squad(tmp_path / "v2.json")), DataConfig())
    v1 = read_dataset(str(_squad(tmp_path / "v1.json", "v1.1")), DataConfig())
    river = "what is the name of the river ?"
    with caplog.at_level("INFO", logger="tunekit.tasks.question_answering"):
        job = _task().prepare(_ctx(bert_tokenizer, v2, v1))  # SQuAD 2.0 training, spans-only evaluation
    assert _trained_questions(job) == {"where does mary live ?", "who works in london ?"}
    assert all(ex.answers for ex in job.train_dataset.examples)
    told = [r.getMessage() for r in caplog.records if "unanswerable ones" in r.getMessage()]
    assert len(told) == 1 and "2 answerable" in told[0] and "1 unanswerable" in told[0]
    assert "task.train_unanswerable=true" in told[0]
    kept = _task().prepare(_ctx(bert_tokenizer, v2, v1, train_unanswerable=True))  # the override
    assert river in _trained_questions(kept) and not kept.allow_no_answer
    assert river in _trained_questions(_task().prepare(_ctx(bert_tokenizer, v2, v2)))  # v2 evaluation learns "no answer"
    dropped = _task().prepare(_ctx(bert_tokenizer, v2, v2, allow_no_answer=False))  # "no answer" never predicted
    assert river not in _trained_questions(dropped)
    assert river not in _trained_questions(_task().prepare(_ctx(bert_tokenizer, v2, v2, train_unanswerable=False)))
    only_river = v2.select([2])
    with pytest.raises(DataError, match="every training question is unanswerable"):
        _task().prepare(_ctx(bert_tokenizer, only_river, v1))


def test_v2_figures_threshold_saved_and_used_by_predict(tmp_path, bert_tokenizer, tiny_bert):
    rows = read_dataset(str(_squad(tmp_path / "s.json")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    model = job.build_model(ResolvedModel(str(tiny_bert)), {})
    job.save(tmp_path / "run")  # the runner writes the state before training and again after it
    scores = job.evaluate(model, _batches(job))
    job.save(tmp_path / "run")
    for key in ("exact_match", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
                "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh", "loss"):
        assert f"eval_{key}" in scores, key
    assert (scores["eval_total"], scores["eval_HasAns_total"], scores["eval_NoAns_total"]) == (3, 2, 1)
    assert scores["eval_best_f1"] >= scores["eval_f1"]
    state = json.loads((tmp_path / "run" / "task.json").read_text())
    assert state["null_score_threshold"] == scores["eval_best_f1_thresh"]
    again = _task().restore(_ctx(bert_tokenizer, None), tmp_path / "run")
    assert again.allow_no_answer and again.null_threshold == scores["eval_best_f1_thresh"]
    again.eval_dataset = again.encode(rows)  # `tunekit eval`: scored at the run's threshold, i.e. its best F1
    assert again.evaluate(model, _batches(again))["eval_f1"] == pytest.approx(scores["eval_best_f1"])
    pair = ("where does mary live ?", CONTEXT)
    again.options.null_score_threshold = -1e9  # "no answer" always wins
    abstained = again.predict(model, [pair])[0]
    assert abstained["answer"] == "" and abstained["start"] == -1 and abstained["span"] in CONTEXT
    assert abstained["null_margin"] > -1e9 and isinstance(abstained["score"], float)
    again.options.null_score_threshold = 1e9  # the span always wins
    answered = again.predict(model, [pair])[0]
    assert set(answered) == {"answer", "score", "start"} and answered["answer"] == abstained["span"]
    assert answered["score"] == abstained["score"]


def test_the_threshold_kept_is_the_best_evaluations(tmp_path, bert_tokenizer):
    rows = read_dataset(str(_squad(tmp_path / "s.json")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    job.save(tmp_path / "run")
    saved = lambda: json.loads((tmp_path / "run" / "task.json").read_text())["null_score_threshold"]  # noqa: E731
    assert saved() is None  # nothing tuned before the first evaluation
    for f1, threshold, kept in [(40.0, 1.5, 1.5), (55.0, -0.5, -0.5), (50.0, 3.0, -0.5), (55.0, 2.0, -0.5)]:
        job._keep_threshold(f1, threshold)  # the engine keeps the weights of a strictly better eval_f1
        job.save(tmp_path / "run")
        assert job.found_threshold == kept and saved() == kept


def test_run_keeps_the_threshold_and_predict_prints_the_margin(tmp_path, tiny_bert):
    data = _squad(tmp_path / "s.json")
    out = tmp_path / "run"
    summary = runner.run({
        "model": {"name": str(tiny_bert)}, "task": {"name": "question-answering", "max_length": 32, "stride": 8},
        "method": {"name": "full"}, "data": {"train": str(data), "validation": str(data)},
        "training": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "eval_each_epoch": False},
        "output": {"dir": str(out)}}).summary
    assert summary["eval_NoAns_total"] == 1 and "eval_best_f1_thresh" in summary
    state = json.loads((out / "task.json").read_text())
    assert state["allow_no_answer"] and state["null_score_threshold"] == summary["eval_best_f1_thresh"]
    cli_module._load_commands()
    args = ["predict", "--run", str(out), "--context", CONTEXT, "--output", str(tmp_path / "p.jsonl"),
            "where does mary live ?", "who works in london ?"]
    result = CliRunner().invoke(cli_module.cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2
    margin = state["null_score_threshold"]
    for line in lines:
        assert {"answer", "score", "start"} <= set(line) and line["input"]["question"].endswith("?")
        if line["answer"] == "":  # left unanswered: the span it passed over and by how much "no answer" won
            assert line["span"] in CONTEXT and line["null_margin"] > margin - 1e-3
        else:
            assert "null_margin" not in line and CONTEXT[line["start"]:].startswith(line["answer"])


def test_fresh_span_head_starts_at_zero(tmp_path, bert_tokenizer, tiny_bert):
    rows = read_dataset(str(_squad(tmp_path / "s.json", "v1.1")), DataConfig())
    job = _task().prepare(_ctx(bert_tokenizer, rows, rows))
    model = job.build_model(ResolvedModel(str(tiny_bert)), {})
    assert not model.qa_outputs.weight.any() and not model.qa_outputs.bias.any()
    batch = {k: v for k, v in _batches(job)[0].items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    assert not model(**batch).start_logits.any()  # every position equally likely before training
    drawn = _task().prepare(_ctx(bert_tokenizer, rows, rows, zero_init_head=False))
    assert drawn.build_model(ResolvedModel(str(tiny_bert)), {}).qa_outputs.weight.abs().sum() > 0
    job.save(tmp_path / "run")
    restored = _task().restore(_ctx(bert_tokenizer, None), tmp_path / "run")  # predict/eval: trained weights come next
    assert restored.build_model(ResolvedModel(str(tiny_bert)), {}).qa_outputs.weight.abs().sum() > 0
