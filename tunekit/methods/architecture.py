"""Where things are in a transformer: blocks, attention/feed-forward outputs, embeddings, linear layers.

Methods never hard-code module names; they ask this module. Each supported family is described by one
small ``Family`` record, and ``family_of(config)`` tries a short list of small detector functions in
turn, so supporting a new family means adding one function to ``DETECTORS`` (no growing ``if`` chain).

Supported: BERT/RoBERTa-family encoders (bert, roberta, xlm-roberta, camembert), GPT-2, the Llama
family (llama, mistral, qwen2 share the same module names), and the encoder-decoder families T5 (t5,
mt5) and BART (bart, mbart, marian). Anything else raises MethodError.

An encoder-decoder family has two block stacks: ``Family``'s own fields describe the encoder stack and
``Family.decoder_stack`` (a ``Stack``) the decoder, whose blocks also hold a cross-attention sub-layer.
The finders below cover every stack (encoder blocks first, then decoder blocks), so a method written
for one stack works on both; ``stacks(model)`` gives the blocks per stack.

``ArchInfo`` holds the numbers of a config (layers, hidden size, heads, ...) plus two facts observed on
the instantiated model (whether it has a pooler and an untied output layer); the closed-form parameter
counts of every method are written from these numbers alone (``tunekit.methods.param_counts``,
re-exported here).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from tunekit.errors import MethodError
from tunekit.methods.param_counts import (  # noqa: F401  (re-exported: methods find the counts here)
    backbone_parameters,
    block_parameters,
    decoder_block_parameters,
    embedding_parameters,
    final_norm_parameters,
    relative_bias_parameters,
)
from tunekit.names import ends_with


@dataclass(frozen=True)
class Stack:
    """Module names of one stack of blocks, relative to the block list (or, for the norm, its parent)."""

    blocks: str
    """Dotted suffix of the ``nn.ModuleList`` holding the stack's blocks."""
    attention_output: str
    """Inside a block: the self-attention output projection."""
    ffn_output: str
    """Inside a block: the last linear layer of the feed-forward sub-layer."""
    final_norm: str | None = None
    """Dotted suffix (next to the block list) of the norm after the stack's last block, or None."""
    cross_attention_output: str | None = None
    """Inside a decoder block of an encoder-decoder model: the cross-attention output projection."""


@dataclass(frozen=True)
class Family:
    """Module names of one architecture family, relative to the block list or the backbone."""

    name: str
    blocks: str
    """Dotted suffix of the ``nn.ModuleList`` holding the transformer blocks."""
    attention_output: str
    """Inside a block: the linear layer that projects the attention result back to the hidden size."""
    ffn_output: str
    """Inside a block: the last linear layer of the feed-forward sub-layer."""
    embeddings: tuple[str, ...]
    """Dotted suffixes of the embedding modules (token, position, ...)."""
    final_norm: str | None
    """Dotted suffix of the norm applied after the last block (decoders), or None."""
    decoder: bool
    """True for decoder-only (causal) families."""
    decoder_stack: Stack | None = None
    """Encoder-decoder families: the decoder's blocks (the fields above describe the encoder's); else None."""

    def stacks(self) -> tuple[Stack, ...]:
        """The block stacks, bottom first: one for one-stack families, (encoder, decoder) otherwise."""
        own = Stack(self.blocks, self.attention_output, self.ffn_output, self.final_norm)
        return (own,) if self.decoder_stack is None else (own, self.decoder_stack)


BERT = Family("bert", "encoder.layer", "attention.output.dense", "output.dense", ("embeddings",), None,
              decoder=False)
GPT2 = Family("gpt2", "h", "attn.c_proj", "mlp.c_proj", ("wte", "wpe"), "ln_f", decoder=True)
LLAMA = Family("llama", "layers", "self_attn.o_proj", "mlp.down_proj", ("embed_tokens",), "norm",
               decoder=True)
T5 = Family("t5", "encoder.block", "layer.0.SelfAttention.o", "layer.1.DenseReluDense.wo", ("shared", "embed_tokens"),
            "final_layer_norm", decoder=False,
            decoder_stack=Stack("decoder.block", "layer.0.SelfAttention.o", "layer.2.DenseReluDense.wo",
                                "final_layer_norm", "layer.1.EncDecAttention.o"))
BART = Family("bart", "encoder.layers", "self_attn.out_proj", "fc2",
              ("shared", "embed_tokens", "embed_positions", "layernorm_embedding"), "layer_norm", decoder=False,
              decoder_stack=Stack("decoder.layers", "self_attn.out_proj", "fc2", "layer_norm", "encoder_attn.out_proj"))


@dataclass(frozen=True)
class ArchInfo:
    """Config numbers of one model (plus whether it has a pooler / an untied output layer)."""

    family: str
    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int = 0
    type_vocab: int = 0
    qkv_bias: bool = True
    o_bias: bool = True
    mlp_bias: bool = True
    tied_embeddings: bool = True
    has_pooler: bool = False
    has_lm_head: bool = False
    """True when the model has its own (untied) output projection to the vocabulary."""
    decoder_layers: int = 0
    """Encoder-decoder models: blocks of the decoder stack (``layers`` counts the encoder's); 0 otherwise."""
    gated_ffn: bool = False
    """T5 v1.1 / mT5: the feed-forward has two input projections (``wi_0``, ``wi_1``)."""
    position_buckets: int = 0
    """T5: relative-position buckets (a ``buckets x heads`` table in the first block of each stack)."""
    embedding_norm: bool = False
    """BART, mBART: a LayerNorm after the embeddings of each stack."""

    @property
    def kv_dim(self) -> int:
        """Width of one layer's keys (= values): kv heads x head dim."""
        return self.kv_heads * self.head_dim

    @property
    def all_layers(self) -> int:
        """Blocks of every stack (encoder plus decoder for encoder-decoder models)."""
        return self.layers + self.decoder_layers


def _bert(config: Any) -> tuple[Family, dict[str, Any]] | None:
    if config.model_type not in ("bert", "roberta", "xlm-roberta", "camembert"):
        return None
    h, heads = config.hidden_size, config.num_attention_heads
    return BERT, dict(
        layers=config.num_hidden_layers, hidden=h, heads=heads, kv_heads=heads, head_dim=h // heads,
        intermediate=config.intermediate_size, vocab=config.vocab_size,
        max_positions=config.max_position_embeddings, type_vocab=config.type_vocab_size,
    )


def _gpt2(config: Any) -> tuple[Family, dict[str, Any]] | None:
    if config.model_type != "gpt2":
        return None
    h, heads = config.n_embd, config.n_head
    return GPT2, dict(
        layers=config.n_layer, hidden=h, heads=heads, kv_heads=heads, head_dim=h // heads,
        intermediate=config.n_inner or 4 * h, vocab=config.vocab_size, max_positions=config.n_positions,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
    )


def _llama(config: Any) -> tuple[Family, dict[str, Any]] | None:
    if config.model_type not in ("llama", "mistral", "qwen2"):
        return None
    h, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    # Qwen2 has biases on q/k/v only; Llama's `attention_bias` covers q, k, v and o; Mistral has none.
    qkv_bias = config.model_type == "qwen2" or bool(getattr(config, "attention_bias", False))
    o_bias = config.model_type != "qwen2" and bool(getattr(config, "attention_bias", False))
    return LLAMA, dict(
        layers=config.num_hidden_layers, hidden=h, heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
        intermediate=config.intermediate_size, vocab=config.vocab_size,
        max_positions=getattr(config, "max_position_embeddings", 0) or 0,
        qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=bool(getattr(config, "mlp_bias", False)),
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def _t5(config: Any) -> tuple[Family, dict[str, Any]] | None:
    if config.model_type not in ("t5", "mt5"):
        return None
    layers = config.num_layers
    return T5, dict(
        layers=layers, decoder_layers=getattr(config, "num_decoder_layers", None) or layers, hidden=config.d_model,
        heads=config.num_heads, kv_heads=config.num_heads, head_dim=config.d_kv, intermediate=config.d_ff,
        vocab=config.vocab_size, qkv_bias=False, o_bias=False, mlp_bias=False,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        gated_ffn=bool(getattr(config, "is_gated_act", False)),
        position_buckets=config.relative_attention_num_buckets,
    )


def _bart(config: Any) -> tuple[Family, dict[str, Any]] | None:
    if config.model_type not in ("bart", "mbart", "marian"):
        return None
    h, heads = config.d_model, config.encoder_attention_heads
    # BART and mBART learn max_position_embeddings + 2 positions (an offset of 2); Marian's are sinusoidal.
    offset = 0 if config.model_type == "marian" else 2
    return BART, dict(
        layers=config.encoder_layers, decoder_layers=config.decoder_layers, hidden=h, heads=heads, kv_heads=heads,
        head_dim=h // heads, intermediate=config.encoder_ffn_dim, vocab=config.vocab_size,
        max_positions=config.max_position_embeddings + offset,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        embedding_norm=config.model_type != "marian",
    )


FAMILIES = (BERT, GPT2, LLAMA, T5, BART)

DETECTORS: list[Callable[[Any], tuple[Family, dict[str, Any]] | None]] = [_bert, _gpt2, _llama, _t5, _bart]
"""Tried in order; each returns (family, ArchInfo fields) for configs it recognises, else None."""


def _detect(config: Any) -> tuple[Family, dict[str, Any]]:
    model_type = getattr(config, "model_type", None)
    for detect in DETECTORS:
        found = detect(config)
        if found is not None:
            return found
    raise MethodError(
        f"tunekit's built-in methods do not know the {model_type or 'unknown'!r} architecture; use a "
        "BERT/RoBERTa, GPT-2, Llama/Mistral/Qwen2, T5/mT5 or BART/mBART/Marian model (or add a detector to tunekit.methods.architecture.DETECTORS)."
    )


def family_of(model_or_config: Any) -> Family:
    """The ``Family`` of a model or config (MethodError for unknown architectures)."""
    return _detect(getattr(model_or_config, "config", model_or_config))[0]


def family_of_name(name: str) -> Family:
    """The ``Family`` called ``name`` (``ArchInfo.family``)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise MethodError(f"unknown architecture family {name!r}; known: {', '.join(f.name for f in FAMILIES)}.")


def arch_info(model_or_config: Any) -> ArchInfo:
    """``ArchInfo`` of a model (pooler and output layer observed) or of a bare config (neither assumed)."""
    config = getattr(model_or_config, "config", model_or_config)
    family, numbers = _detect(config)
    if isinstance(model_or_config, nn.Module):
        names = {name for name, _ in model_or_config.named_modules()}
        numbers["has_pooler"] = any(n == "pooler" or n.endswith(".pooler") for n in names if n)
        out = model_or_config.get_output_embeddings() if hasattr(model_or_config, "get_output_embeddings") else None
        inp = model_or_config.get_input_embeddings() if hasattr(model_or_config, "get_input_embeddings") else None
        numbers["has_lm_head"] = bool(out is not None and inp is not None and out.weight is not inp.weight)
    return ArchInfo(family=family.name, model_type=config.model_type, **numbers)


# ---------------------------------------------------------------- finding modules in a model


def _block_list(model: nn.Module, family: Family, stack: Stack) -> tuple[str, nn.ModuleList]:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and ends_with(name, stack.blocks):
            return name, module
    raise MethodError(
        f"could not find the {family.name} block list ({stack.blocks!r}) in {type(model).__name__}; "
        "pass a standard Hugging Face model of that family."
    )


def stacks(model: nn.Module) -> list[tuple[Stack, list[tuple[str, nn.Module]]]]:
    """``(Stack, [(qualified name, block), ...])`` per block stack, bottom first (encoder, then decoder)."""
    family = family_of(model)
    found = []
    for stack in family.stacks():
        path, module = _block_list(model, family, stack)
        found.append((stack, [(f"{path}.{i}", block) for i, block in enumerate(module)]))
    return found


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, block)`` for every transformer block, bottom first (encoder-decoder: encoder blocks,
    then decoder blocks)."""
    return [pair for _, found in stacks(model) for pair in found]


def blocks_path(model: nn.Module) -> str:
    """Qualified name of the (first stack's) block list (e.g. ``bert.encoder.layer``)."""
    first = blocks(model)[0][0]
    return first.rsplit(".", 1)[0]


def attention_outputs(model: nn.Module) -> list[str]:
    """Qualified names of each block's (self-)attention output projection, in every stack."""
    return [f"{name}.{stack.attention_output}" for stack, found in stacks(model) for name, _ in found]


def cross_attention_outputs(model: nn.Module) -> list[str]:
    """Qualified names of each decoder block's cross-attention output projection (empty for one-stack models)."""
    return [f"{name}.{stack.cross_attention_output}" for stack, found in stacks(model)
            if stack.cross_attention_output for name, _ in found]


def ffn_outputs(model: nn.Module) -> list[str]:
    """Qualified names of each block's feed-forward output projection, in every stack."""
    return [f"{name}.{stack.ffn_output}" for stack, found in stacks(model) for name, _ in found]


def embeddings(model: nn.Module) -> list[str]:
    """Qualified names of the embedding modules (for encoder-decoder models also each stack's alias of a
    shared embedding)."""
    family = family_of(model)
    every = model.named_modules(remove_duplicate=family.decoder_stack is None)
    return [n for n, _ in every if n and any(ends_with(n, s) for s in family.embeddings)]


def final_norms(model: nn.Module) -> list[str]:
    """Qualified names of the norms after the last block of each stack (those the model has)."""
    names = dict(model.named_modules())
    found = []
    for stack, pairs in stacks(model):
        if stack.final_norm is None:
            continue
        parent = pairs[0][0].rsplit(".", 2)[0] if pairs[0][0].count(".") >= 2 else ""
        name = f"{parent}.{stack.final_norm}" if parent else stack.final_norm
        if name in names:
            found.append(name)
    return found


def final_norm(model: nn.Module) -> str | None:
    """Qualified name of the norm after the last block (the top stack's, for encoder-decoder models), or None."""
    family = family_of(model)
    top = family.stacks()[-1]
    norms = final_norms(model)
    return next((n for n in reversed(norms) if top.final_norm and ends_with(n, top.final_norm)), None)


def is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` (bitsandbytes ``Linear8bitLt`` included, it subclasses it) or transformers ``Conv1D``."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def linear_modules(model: nn.Module, within_blocks: bool = True) -> list[str]:
    """Qualified names of the linear layers (of the blocks only, by default: never the task head)."""
    if within_blocks:
        roots = [name for name, _ in blocks(model)]
        return [n for n, m in model.named_modules() if is_linear(m) and any(n.startswith(r + ".") for r in roots)]
    return [n for n, m in model.named_modules() if is_linear(m)]


def block_index_pattern(model: nn.Module, index: int) -> str:
    """A regex matching the qualified names of block ``index`` (counted over every stack, bottom first, as
    ``blocks`` lists them) and everything inside it."""
    return re.escape(blocks(model)[index][0])


# transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache`` (the old name is still
# accepted, but ignored when ``generate`` also passes the new one); earlier releases know only the old name.
CACHE_ARGUMENTS = ("cache", "past_key_values")


def cache_keyword(module: nn.Module, kwargs: dict[str, Any]) -> str:
    """The keyword under which ``module.forward`` takes its key/value cache in this call.

    The name already used in ``kwargs`` wins; otherwise the one ``module.forward`` declares.
    """
    for name in CACHE_ARGUMENTS:
        if kwargs.get(name) is not None:
            return name
    params = inspect.signature(module.forward).parameters
    return next((name for name in CACHE_ARGUMENTS if name in params), "past_key_values")
