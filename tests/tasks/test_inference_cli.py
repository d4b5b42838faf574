"""`tunekit eval/predict/generate/chat` on run folders trained for a few steps on tiny models."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tunekit import cli as cli_module
from tunekit.runs.runner import run


@pytest.fixture(scope="module")
def cli():
    cli_module._load_commands()
    return cli_module.cli


def _invoke(cli, *args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)
    return result


def _config(model, task, train, out, **data):
    return {
        "model": {"name": str(model)},
        "task": {"name": task, **data.pop("task_options", {})},
        "method": {"name": "full"},
        "data": {"train": str(train), "validation": str(train), **data},
        "training": {"max_steps": 3, "batch_size": 4, "lr": 1e-3, "eval_each_epoch": False, "logging_steps": 1},
        "output": {"dir": str(out)},
    }


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("cls")
    data = folder / "train.csv"
    data.write_text("text,label\n" + "".join("good movie,pos\nbad film,neg\n" for _ in range(4)), encoding="utf-8")
    run(_config(tiny_bert, "sequence-classification", data, folder / "run"))
    return folder


def test_eval_and_predict_classification(cli, classification_run):
    out = classification_run / "run"
    res = _invoke(cli, "eval", "--run", str(out), "--data", str(classification_run / "train.csv"), "--json")
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"eval_accuracy", "eval_f1", "eval_matthews_correlation", "eval_loss"} <= set(scores)
    res = _invoke(cli, "predict", "--run", str(out), "good movie", "bad film")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.strip().splitlines() if line.startswith("{")]
    assert [line["input"] for line in lines] == ["good movie", "bad film"]
    assert all(line["label"] in ("pos", "neg") and 0 <= line["score"] <= 1 for line in lines)
    res = _invoke(cli, "predict", "--run", str(out), "--data", str(classification_run / "train.csv"),
                  "-o", str(classification_run / "preds.jsonl"))
    assert res.exit_code == 0, res.output
    assert len((classification_run / "preds.jsonl").read_text().splitlines()) == 8


def test_generate_on_classification_run_is_refused(cli, classification_run):
    res = _invoke(cli, "generate", "--run", str(classification_run / "run"), "--prompt", "hi")
    assert res.exit_code != 0
    assert "does not generate text" in str(res.exception)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, tiny_llama, bert_tokenizer):
    import copy

    folder = tmp_path_factory.mktemp("llama_chat")
    shutil.copytree(tiny_llama, folder, dirs_exist_ok=True)
    tok = copy.deepcopy(bert_tokenizer)
    tok.pad_token = None
    tok.eos_token = "[SEP]"
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [SEP] {% endfor %}"
                         "{% if add_generation_prompt %}assistant : {% endif %}")
    tok.save_pretrained(folder)
    return folder


def test_causal_lm_generate_chat_eval(cli, chat_model, tmp_path):
    data = tmp_path / "chat.jsonl"
    rec = {"messages": [{"role": "user", "content": "good"}, {"role": "assistant", "content": "nice"}]}
    data.write_text("\n".join(json.dumps(rec) for _ in range(4)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    run(_config(chat_model, "causal-lm", data, out, task_options={"max_new_tokens": 4}))
    assert json.loads((out / "task.json").read_text())["template"] == "chat"
    res = _invoke(cli, "generate", "--run", str(out), "--prompt", "good", "--max-new-tokens", "3")
    assert res.exit_code == 0, res.output
    res = _invoke(cli, "chat", "--run", str(out), "--max-new-tokens", "2", input="good\n/reset\nbad\n\n")
    assert res.exit_code == 0, res.output
    assert res.output.count("model>") == 2
    res = _invoke(cli, "eval", "--run", str(out), "--data", str(data), "--json")
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(scores) == {"eval_loss", "eval_perplexity"}
