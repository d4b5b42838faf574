"""Fixtures of the bad-input tests: tiny model folders, a folder of broken data files, and ways to call the CLI.

Everything is built once per session (a few seconds): random 2-layer BERT / GPT-2 / Llama / DistilBERT
folders saved with ``save_pretrained`` plus a small word-piece tokenizer, so that a case that gets as
far as loading a model costs about a second.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import pytest

from tests.errors.support import CliResult

WORDS = "the a good bad movie film great awful fun boring plot acting yes no . , ? !".split()
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the shared 2-core machine stays responsive."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tokenizer(decoder: bool):
    from transformers import BertTokenizerFast

    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *CHARS,
                                *[f"##{c}" for c in CHARS]]))
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    if decoder:
        tok.eos_token = "[SEP]"
        tok.bos_token = "[CLS]"
    return tok


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny random models with their tokenizer (bert, gpt2, llama with GQA, distilbert) and two broken ones."""
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    root = tmp_path_factory.mktemp("models")
    n = len(_tokenizer(False))
    torch.manual_seed(0)
    built = {
        "bert": BertModel(BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=128)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=n, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                           bos_token_id=2, eos_token_id=3)),
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=128, bos_token_id=2, eos_token_id=3)),
        "distilbert": DistilBertModel(DistilBertConfig(vocab_size=n, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                       max_position_embeddings=128)),
    }
    out = {}
    for name, model in built.items():
        folder = root / name
        model.save_pretrained(folder)
        _tokenizer(name in ("gpt2", "llama")).save_pretrained(folder)
        out[name] = folder
    # Broken model folders: the tokenizer and config but no weights; a config.json that is not JSON.
    out["noweights"] = root / "noweights"
    shutil.copytree(out["bert"], out["noweights"], ignore=shutil.ignore_patterns("*.safetensors"))
    # A tokenizer that does not belong to the weights: the training text has ids beyond its 10 embeddings.
    out["smallvocab"] = root / "smallvocab"
    BertModel(BertConfig(vocab_size=10, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(out["smallvocab"])
    _tokenizer(False).save_pretrained(out["smallvocab"])
    out["badconfig"] = root / "badconfig"
    shutil.copytree(out["bert"], out["badconfig"])
    (out["badconfig"] / "config.json").write_text('{"model_type": "bert", "hidden_size": ', encoding="utf-8")
    return out


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _sentiment_rows(n: int = 24) -> list[tuple[str, str]]:
    good = ["the good movie", "great fun", "a good film", "great acting"]
    bad = ["the bad film", "awful boring", "a bad plot", "boring acting"]
    return [(good[i % 4], "pos") if i % 2 else (bad[i % 4], "neg") for i in range(n)]


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """A folder of good and broken data and config files (names used by the catalogue)."""
    d = tmp_path_factory.mktemp("data")
    rows = _sentiment_rows()
    _write(d / "train.csv", "sentence,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    _write(d / "train.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    _write(d / "semicolon.csv", "sentence;label\n" + "".join(f"{t};{y}\n" for t, y in rows))
    _write(d / "commas.tsv", "sentence,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    _write(d / "other_columns.csv", "review_text,stars\n" + "".join(f"{t},{y}\n" for t, y in rows))
    _write(d / "val_other_columns.csv", "text,target\n" + "".join(f"{t},{y}\n" for t, y in rows[:4]))
    _write(d / "val_new_label.csv", "sentence,label\nthe good movie,pos\na bad film,neutral\n")
    _write(d / "one_class.csv", "sentence,label\n" + "".join(f"{t},pos\n" for t, _ in rows))
    _write(d / "empty.csv", "")
    _write(d / "header_only.csv", "sentence,label\n")
    _write(d / "latin1.csv", ("sentence,label\n" + "".join(f"{t},{y}\n" for t, y in rows)).replace("e", "\xe9")
           .encode("latin-1"))
    _write(d / "not_records.json", json.dumps({"sentence": "a", "label": 1}))
    _write(d / "bad_line.jsonl", '{"sentence": "the good movie", "label": "pos"}\n{"sentence": oops}\n')
    _write(d / "garbage.parquet", b"PAR1 this is not parquet")
    _write(d / "not_squad.json", json.dumps([{"question": "who?", "context": "the film"}]))
    _write(d / "ragged.conll", "EU B-ORG\nrejects\nthe O\n\nfilm O\n")
    _write(d / "chat.jsonl", "".join(json.dumps({"prompt": f"is the {w} good ?", "response": "yes"}) + "\n"
                                     for w in ("movie", "film", "plot", "acting")))
    _write(d / "no_text.json", json.dumps([{"foo": "bar", "n": 1}, {"foo": "baz", "n": 2}]))
    (d / "a_folder.csv").mkdir()
    (d / "broken.csv").symlink_to(d / "no-such-target.csv")
    unreadable = _write(d / "unreadable.csv", "sentence,label\nthe good movie,pos\n")
    unreadable.chmod(0)
    _write(d / "a_file", "not a folder\n")
    _write(d / "bad_syntax.yaml", "model:\n  name: [unclosed\n")
    _write(d / "unknown_section.yaml", "model:\n  name: x\nmodle:\n  name: y\n")
    _write(d / "unknown_key.yaml", "training:\n  lrr: 0.1\n")
    _write(d / "python_tag.yaml", "model: !!python/object/apply:os.system ['echo owned']\n")
    _write(d / "list.yaml", "- model\n- task\n")
    return d


@pytest.fixture(scope="session")
def finished_run(models, data, tmp_path_factory) -> Path:
    """A finished LoRA classification run with two step checkpoints (copied by the cases that need one)."""
    from tunekit.runs.runner import run

    out = tmp_path_factory.mktemp("finished") / "run"
    run({
        "model": {"name": str(models["bert"])},
        "task": {"name": "sequence-classification"},
        "method": {"name": "lora"},
        "data": {"train": str(data / "train.csv")},
        "training": {"max_steps": 2, "save_steps": 1, "batch_size": 4, "eval_each_epoch": False},
        "output": {"dir": str(out)},
    })
    assert (out / "checkpoints").is_dir() and (out / "adapter").is_dir()
    return out


@contextlib.contextmanager
def _restored_logging():
    """``tunekit.cli`` installs its own handler on the ``tunekit`` logger; undo that after each call."""
    logger = logging.getLogger("tunekit")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def cli():
    """Call ``tunekit.cli.main`` in-process: returns the exit code and what it printed."""
    from tunekit.cli import main

    def call(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with _restored_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        return CliResult(code, out.getvalue(), err.getvalue())

    return call
