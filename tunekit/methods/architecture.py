"""Where things are in a transformer: blocks, attention/feed-forward outputs, embeddings, linear layers.

Methods never hard-code module names; they ask this module. Each supported family is described by one
small ``Family`` record, and ``family_of(config)`` tries a short list of small detector functions in
turn, so supporting a new family means adding one function to ``DETECTORS`` (no growing ``if`` chain).

Supported: BERT/RoBERTa-family encoders (bert, roberta, xlm-roberta, camembert), GPT-2, and the
Llama family (llama, mistral, qwen2 share the same module names). Anything else raises MethodError.

``ArchInfo`` holds the numbers of a config (layers, hidden size, heads, ...) plus two facts observed on
the instantiated model (whether it has a pooler and an untied output layer); the closed-form parameter
counts of every method are written from these numbers alone.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from tunekit.errors import MethodError
from tunekit.names import ends_with


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


BERT = Family("bert", "encoder.layer", "attention.output.dense", "output.dense", ("embeddings",), None,
              decoder=False)
GPT2 = Family("gpt2", "h", "attn.c_proj", "mlp.c_proj", ("wte", "wpe"), "ln_f", decoder=True)
LLAMA = Family("llama", "layers", "self_attn.o_proj", "mlp.down_proj", ("embed_tokens",), "norm",
               decoder=True)


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

    @property
    def kv_dim(self) -> int:
        """Width of one layer's keys (= values): kv heads x head dim."""
        return self.kv_heads * self.head_dim


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


FAMILIES = (BERT, GPT2, LLAMA)

DETECTORS: list[Callable[[Any], tuple[Family, dict[str, Any]] | None]] = [_bert, _gpt2, _llama]
"""Tried in order; each returns (family, ArchInfo fields) for configs it recognises, else None."""


def _detect(config: Any) -> tuple[Family, dict[str, Any]]:
    model_type = getattr(config, "model_type", None)
    for detect in DETECTORS:
        found = detect(config)
        if found is not None:
            return found
    raise MethodError(
        f"tunekit's built-in methods do not know the {model_type or 'unknown'!r} architecture; use a "
        "BERT/RoBERTa, GPT-2 or Llama/Mistral/Qwen2 model (or add a detector to tunekit.methods.architecture.DETECTORS)."
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


# ---------------------------------------------------------------- closed-form parameter counts


def block_parameters(arch: ArchInfo) -> int:
    """Parameters of one transformer block, from the config numbers."""
    h, i = arch.hidden, arch.intermediate
    if arch.family in ("bert", "gpt2"):
        # q, k, v, o projections (with biases), two LayerNorms, two feed-forward linears (with biases).
        return 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h
    q, kv = arch.heads * arch.head_dim, arch.kv_dim
    attention = h * q + 2 * h * kv + q * h + (q + 2 * kv if arch.qkv_bias else 0) + (h if arch.o_bias else 0)
    mlp = 3 * h * i + (2 * i + h if arch.mlp_bias else 0)
    return attention + mlp + 2 * h  # two RMSNorms (weight only)


def final_norm_parameters(arch: ArchInfo) -> int:
    """Parameters of the norm after the last block: GPT-2 LayerNorm (2h), Llama RMSNorm (h), BERT none."""
    return {"gpt2": 2 * arch.hidden, "llama": arch.hidden}.get(arch.family, 0)


def embedding_parameters(arch: ArchInfo) -> int:
    """Token (+ position, + token-type and LayerNorm for BERT) embedding parameters."""
    h = arch.hidden
    if arch.family == "bert":
        return (arch.vocab + arch.max_positions + arch.type_vocab) * h + 2 * h
    if arch.family == "gpt2":
        return (arch.vocab + arch.max_positions) * h
    return arch.vocab * h


def backbone_parameters(arch: ArchInfo) -> int:
    """All pretrained parameters: embeddings, blocks, final norm, pooler and untied output layer."""
    h = arch.hidden
    return (
        embedding_parameters(arch)
        + arch.layers * block_parameters(arch)
        + final_norm_parameters(arch)
        + (h * h + h if arch.has_pooler else 0)
        + (arch.vocab * h if arch.has_lm_head else 0)
    )


# ---------------------------------------------------------------- finding modules in a model


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, block)`` for every transformer block, bottom first."""
    family = family_of(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and ends_with(name, family.blocks):
            return [(f"{name}.{i}", block) for i, block in enumerate(module)]
    raise MethodError(
        f"could not find the {family.name} block list ({family.blocks!r}) in {type(model).__name__}; "
        "pass a standard Hugging Face model of that family."
    )


def blocks_path(model: nn.Module) -> str:
    """Qualified name of the block list (e.g. ``bert.encoder.layer``)."""
    first = blocks(model)[0][0]
    return first.rsplit(".", 1)[0]


def attention_outputs(model: nn.Module) -> list[str]:
    """Qualified names of each block's attention output projection."""
    family = family_of(model)
    return [f"{name}.{family.attention_output}" for name, _ in blocks(model)]


def ffn_outputs(model: nn.Module) -> list[str]:
    """Qualified names of each block's feed-forward output projection."""
    family = family_of(model)
    return [f"{name}.{family.ffn_output}" for name, _ in blocks(model)]


def embeddings(model: nn.Module) -> list[str]:
    """Qualified names of the embedding modules."""
    family = family_of(model)
    return [n for n, _ in model.named_modules() if n and any(ends_with(n, s) for s in family.embeddings)]


def final_norm(model: nn.Module) -> str | None:
    """Qualified name of the norm after the last block, if the family has one."""
    family = family_of(model)
    if family.final_norm is None:
        return None
    prefix = blocks_path(model).rsplit(".", 1)
    parent = prefix[0] + "." if len(prefix) == 2 else ""
    name = parent + family.final_norm
    return name if name in dict(model.named_modules()) else None


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
    """A regex matching the qualified names of block ``index`` and everything inside it."""
    return re.escape(f"{blocks_path(model)}.{index}")


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
