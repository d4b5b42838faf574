"""Tiny run folders (a causal LM with a chat template, a sequence classifier) and a live server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.tinyrun import WORDS, make_data, make_model

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def make_causal_model(folder: Path) -> Path:
    """A 2-layer random Llama with a word-level tokenizer that has a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys([*SPECIAL, *WORDS, "paris", "capital", "france", "what"]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def train(tree: dict[str, Any]) -> Path:
    from tunekit.runs.runner import run

    return run(tree).output_dir


@pytest.fixture(scope="session")
def causal_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve_causal")
    model = make_causal_model(root / "model")
    data = root / "qa.jsonl"
    rows = [{"prompt": f"what is the capital of {c}", "response": f"the capital is {a}"}
            for c, a in [("france", "paris"), ("it", "good"), ("this", "great")] * 4]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return train({"model": {"name": str(model)}, "task": {"name": "causal-lm", "max_new_tokens": 8},
                  "method": "lora", "data": {"train": str(data)}, "output": {"dir": str(root / "run")},
                  "training": {"max_steps": 2, "batch_size": 4, "lr": 1e-3}})


@pytest.fixture(scope="session")
def classify_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve_cls")
    return train({"model": {"name": str(make_model(root / "model"))}, "task": "sequence-classification",
                  "method": "lora", "data": {"train": str(make_data(root / "a.tsv", n=48))},
                  "output": {"dir": str(root / "run")}, "training": {"max_steps": 2, "batch_size": 8, "lr": 5e-3}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(run_dir: Path, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """A uvicorn server for ``run_dir`` in a thread; yields (base URL, the app's service)."""
    import uvicorn

    from tunekit.runs.runner import load_run
    from tunekit.serve import create_app

    app = create_app(load_run(run_dir), **kwargs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app.state.service
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        app.state.service.close()


@pytest.fixture(scope="module")
def causal_server(causal_run):
    with serving(causal_run) as served:
        yield served


@pytest.fixture(scope="module")
def classify_server(classify_run):
    with serving(classify_run) as served:
        yield served
