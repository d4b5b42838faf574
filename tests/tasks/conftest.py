"""Tiny tokenizers and model folders for the task tests (random weights, built in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (
    "the a an of and to in is was it that this for on with as by at from good bad great awful movie film "
    "plot acting fun boring love hate nice terrible fine excellent paris france london england city capital "
    "who what where when which river name john mary went lives works born eu rejects german call british lamb "
    "peter blackburn brussels europe union said . , ? ! ' \" - : ; 1 2 3 0 yes no please tell me answer"
).split()


def _vocab() -> list[str]:
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters]]


@pytest.fixture(scope="session")
def bert_tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tok")
    vocab = {token: i for i, token in enumerate(dict.fromkeys(_vocab()))}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tok.save_pretrained(folder)
    return tok


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, bert_tokenizer) -> Path:
    """A saved 2-layer BERT (hidden 32) whose vocabulary matches ``bert_tokenizer``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(cfg).save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, bert_tokenizer) -> Path:
    """A saved 2-layer GPT-2 (Conv1D) LM with the same small vocabulary."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(bert_tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                     bos_token_id=2, eos_token_id=3)
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, bert_tokenizer) -> Path:
    """A saved 2-layer Llama LM with grouped-query attention (4 query heads, 2 kv heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(bert_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=2, eos_token_id=3, pad_token_id=None)
    folder = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def decoder_tokenizer(bert_tokenizer):
    """The small tokenizer dressed as a decoder's: no pad token, [SEP] as EOS, [CLS] as BOS."""
    import copy

    tok = copy.deepcopy(bert_tokenizer)
    tok.pad_token = None
    tok.eos_token = "[SEP]"
    tok.bos_token = "[CLS]"
    return tok
