"""Tiny random-model runs of the four built-in task families, for the report tests (a few seconds each).

The models share one word-level vocabulary (``tests.tinyrun.WORDS`` plus the words of the QA and NER rows);
every run trains a few steps with evaluations, so metrics.jsonl has curves and eval_details.json has sections.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests import tinyrun
from tunekit.runs import runner

EXTRA = ("paris france london england mary john lives works where who eu rejects german call peter blackburn "
         "brussels went to in . , ? capital river name what is user assistant :").split()
CONTEXT = ("eu rejects german call . peter blackburn went to brussels . mary lives in paris , the capital of "
           "france . john works in london , england .")
TASKS = ("classification", "ner", "qa", "causal-lm")


def _tokenizer(decoder: bool = False) -> Any:
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys([*tinyrun.WORDS, *EXTRA])]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    if decoder:
        tok.eos_token, tok.bos_token = "[SEP]", "[CLS]"
        tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} [SEP] {% endfor %}"
                             "{% if add_generation_prompt %}assistant : {% endif %}")
    return tok


def encoder(folder: Path) -> Path:
    """A 2-layer BERT (hidden 32) with the shared vocabulary."""
    import torch
    from transformers import BertConfig, BertModel

    tok = _tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def decoder(folder: Path) -> Path:
    """A 2-layer GPT-2 (hidden 32) with the shared vocabulary and a chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tokenizer(decoder=True)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                               bos_token_id=2, eos_token_id=3)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _conll(path: Path) -> Path:
    sentences = [[("eu", "B-ORG"), ("rejects", "O"), ("german", "B-MISC"), ("call", "O"), (".", "O")],
                 [("peter", "B-PER"), ("blackburn", "I-PER"), ("went", "O"), ("to", "O"), ("brussels", "B-LOC")],
                 [("mary", "B-PER"), ("lives", "O"), ("in", "O"), ("paris", "B-LOC"), (".", "O")],
                 [("john", "B-PER"), ("works", "O"), ("in", "O"), ("london", "B-LOC"), (",", "O"),
                  ("england", "B-LOC")]]
    blocks = ["\n".join(f"{w} X X {t}" for w, t in s) for s in sentences * 4]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def _squad(path: Path) -> Path:
    questions = [("where does mary live ?", "paris"), ("who works in london ?", "john"),
                 ("who went to brussels ?", "peter blackburn"), ("where does john work ?", "london"),
                 ("what is the capital of france ?", "paris"), ("who rejects german call ?", "eu")]
    qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
           for i, (q, a) in enumerate(questions)]
    tree = {"version": "v1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    path.write_text(json.dumps(tree), encoding="utf-8")
    return path


def _chat(folder: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    pairs = [("where does mary live ?", "mary lives in paris ."), ("who works in london ?", "john works in london ."),
             ("what is the capital of france ?", "paris is the capital of france .")]
    train = [{"prompt": p, "response": r} for p, r in pairs for _ in range(6)]
    rng.shuffle(train)
    heldout = [{"prompt": p, "response": r, "keywords": [r.split()[0]]} for p, r in pairs]
    return _jsonl(folder / "chat.jsonl", train), _jsonl(folder / "heldout.jsonl", heldout)


def config(task: str, folder: Path, models: dict[str, Path], out: Path, method: str = "lora",
           **training: Any) -> dict[str, Any]:
    """The run config of one tiny run of ``task`` (one of :data:`TASKS`), with data files written into ``folder``."""
    train_opts = {"batch_size": 4, "lr": 5e-3, "max_steps": 6, "logging_steps": 1, "eval_steps": 3,
                  "eval_each_epoch": False, "seed": 1, **training}
    if task == "classification":
        data = {"train": str(tinyrun.make_data(folder / "cls.tsv", n=40)), "val_split": 0.3}
        spec = ({"name": "sequence-classification"}, models["encoder"])
    elif task == "ner":
        conll = _conll(folder / "ner.conll")
        data = {"train": str(conll), "validation": str(conll)}
        spec = ({"name": "token-classification", "max_length": 32}, models["encoder"])
    elif task == "qa":
        squad = _squad(folder / "squad.json")
        data = {"train": str(squad), "validation": str(squad)}
        spec = ({"name": "question-answering", "max_length": 48, "stride": 16}, models["encoder"])
    else:
        train, heldout = _chat(folder)
        data = {"train": str(train), "val_split": 0.2, "heldout": str(heldout)}
        train_opts["lr"] = training.get("lr", 5e-2)  # enough for the tuned answers to differ from the base ones
        spec = ({"name": "causal-lm", "max_length": 48, "max_new_tokens": 6}, models["decoder"])
    return {"model": {"name": str(spec[1])}, "task": spec[0], "method": {"name": method}, "data": data,
            "training": train_opts, "output": {"dir": str(out)}}


def make_runs(root: Path) -> dict[str, Path]:
    """One finished run folder per task family under ``root`` (plus the models and data they used)."""
    root.mkdir(parents=True, exist_ok=True)
    models = {"encoder": encoder(root / "encoder"), "decoder": decoder(root / "decoder")}
    runs = {}
    for task in TASKS:
        out = root / f"run-{task}"
        runner.run(config(task, root, models, out))
        runs[task] = out
    return runs
