"""Tiny finished runs to export: a Llama causal LM with a byte-level BPE tokenizer (SmolLM2's kind) and BERT runs
for the three encoder tasks. Everything is random and built once per session in a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.errors.conftest import cli, one_thread  # noqa: F401  (the in-process CLI, one torch thread)
from tests.tinyrun import make_model

WORDS = "the a good bad movie film great awful fun boring plot acting yes no is it was . , ? ! paris london".split()
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def bpe_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer (SmolLM2's kind) trained on the small word list, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok.train_from_iterator(text * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory) -> Path:
    """A 2-layer random Llama (GQA: 4 query heads, 2 kv heads, tied embeddings) with the BPE tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok) + 3, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
                      rope_theta=10000.0)
    folder = tmp_path_factory.mktemp("bpe_llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def finished(tmp_path_factory, name: str, model: Path, task: str, train: Path, method: str = "lora") -> Path:
    """Train a short run (4 steps, a high learning rate so the weights move) and return its folder."""
    from tunekit.runs.runner import run

    out = tmp_path_factory.mktemp(name) / "run"
    run({
        "model": {"name": str(model)},
        "task": {"name": task},
        "method": {"name": method},
        "data": {"train": str(train)},
        "training": {"max_steps": 4, "batch_size": 4, "eval_each_epoch": False, "lr": 5e-2},
        "output": {"dir": str(out)},
    })
    return out


@pytest.fixture(scope="session")
def llama_run(tmp_path_factory, llama_folder) -> Path:
    """A finished LoRA causal-LM run on the tiny Llama (chat template rows)."""
    data = tmp_path_factory.mktemp("lm_data") / "chat.jsonl"
    rows = [{"prompt": f"is the {w} good ?", "response": f"yes , the {w} is great ."} for w in WORDS[4:12]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return finished(tmp_path_factory, "llama_run", llama_folder, "causal-lm", data)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def encoder_runs(tmp_path_factory) -> dict[str, Path]:
    """Finished LoRA runs of tinyrun's BERT for sequence classification, token classification and QA."""
    d = tmp_path_factory.mktemp("encoder_data")
    bert = make_model(d / "bert")
    good, bad = ["the good movie", "great fun", "a good film"], ["the bad film", "awful boring", "a bad plot"]
    rows = [(good[i % 3], "pos") if i % 2 else (bad[i % 3], "neg") for i in range(16)]
    cls = _write(d / "train.csv", "sentence,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    sentences = [[("the", "O"), ("movie", "B-MISC"), ("was", "O"), ("good", "O")],
                 [("a", "O"), ("film", "B-MISC"), ("plot", "I-MISC"), ("!", "O")]] * 8
    conll = _write(d / "train.conll", "\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n")
    qas = [{"id": str(i), "question": "what was good ?", "answers": [{"text": "the movie", "answer_start": 0}]}
           for i in range(16)]
    squad = _write(d / "train.json", json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "the movie was good , the plot was bad .", "qas": qas}]}]}))
    tasks = {"sequence-classification": cls, "token-classification": conll, "question-answering": squad}
    return {task: finished(tmp_path_factory, task, bert, task, train) for task, train in tasks.items()}
