"""Closed-form parameter counts of a transformer from its ``ArchInfo`` numbers alone.

Re-exported by ``tunekit.methods.architecture`` (where methods look for them). One-stack families
(BERT, GPT-2, Llama) have one block kind; encoder-decoder families (T5, BART) have an encoder block, a
decoder block (self-attention, cross-attention, feed-forward) and, for T5, a relative-position table in
the first block of each stack.
"""

from __future__ import annotations

from typing import Any

ENCODER_DECODER = ("t5", "bart")


def _t5_attention(arch: Any) -> int:
    inner = arch.heads * arch.head_dim
    return 4 * arch.hidden * inner  # q, k, v (hidden -> inner) and o (inner -> hidden); no biases


def _t5_ffn(arch: Any) -> int:
    h, i = arch.hidden, arch.intermediate
    return (2 if arch.gated_ffn else 1) * h * i + i * h  # wi (or wi_0 + wi_1) and wo


def _bart_attention(arch: Any) -> int:
    h = arch.hidden
    return 4 * h * h + 4 * h + 2 * h  # q, k, v, out_proj with biases, and the LayerNorm after it


def _bart_ffn(arch: Any) -> int:
    h, i = arch.hidden, arch.intermediate
    return h * i + i + i * h + h + 2 * h  # fc1, fc2 with biases, and the final LayerNorm of the block


def block_parameters(arch: Any) -> int:
    """Parameters of one transformer block (the encoder block of an encoder-decoder model)."""
    h, i = arch.hidden, arch.intermediate
    if arch.family == "t5":
        return _t5_attention(arch) + _t5_ffn(arch) + 2 * h  # two RMSNorms (weight only)
    if arch.family == "bart":
        return _bart_attention(arch) + _bart_ffn(arch)
    if arch.family in ("bert", "gpt2"):
        # q, k, v, o projections (with biases), two LayerNorms, two feed-forward linears (with biases).
        return 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h
    q, kv = arch.heads * arch.head_dim, arch.kv_dim
    attention = h * q + 2 * h * kv + q * h + (q + 2 * kv if arch.qkv_bias else 0) + (h if arch.o_bias else 0)
    mlp = 3 * h * i + (2 * i + h if arch.mlp_bias else 0)
    return attention + mlp + 2 * h  # two RMSNorms (weight only)


def decoder_block_parameters(arch: Any) -> int:
    """Parameters of one decoder block of an encoder-decoder model (self- and cross-attention, feed-forward)."""
    if arch.family == "t5":
        return 2 * _t5_attention(arch) + _t5_ffn(arch) + 3 * arch.hidden
    if arch.family == "bart":
        return 2 * _bart_attention(arch) + _bart_ffn(arch)
    return 0


def relative_bias_parameters(arch: Any) -> int:
    """T5's relative-position table (buckets x heads) in the first block of one stack; 0 for other families."""
    return arch.position_buckets * arch.heads


def final_norm_parameters(arch: Any) -> int:
    """Norms after the last block: GPT-2 LayerNorm (2h), Llama RMSNorm (h), T5 one RMSNorm per stack (2h),
    mBART one LayerNorm per stack (4h); BERT, BART and Marian none."""
    if arch.family == "bart":
        return 4 * arch.hidden if arch.model_type == "mbart" else 0
    return {"gpt2": 2 * arch.hidden, "llama": arch.hidden, "t5": 2 * arch.hidden}.get(arch.family, 0)


def embedding_parameters(arch: Any) -> int:
    """Token (+ position, + token-type and LayerNorm for BERT, + BART's per-stack positions and norms) embeddings."""
    h = arch.hidden
    if arch.family == "bert":
        return (arch.vocab + arch.max_positions + arch.type_vocab) * h + 2 * h
    if arch.family == "gpt2":
        return (arch.vocab + arch.max_positions) * h
    if arch.family == "bart":  # shared tokens; positions and (BART, mBART) a LayerNorm in each stack
        return arch.vocab * h + 2 * arch.max_positions * h + (4 * h if arch.embedding_norm else 0)
    return arch.vocab * h


def backbone_parameters(arch: Any) -> int:
    """All pretrained parameters: embeddings, blocks, final norm(s), pooler and untied output layer."""
    h = arch.hidden
    blocks = arch.layers * block_parameters(arch) + arch.decoder_layers * decoder_block_parameters(arch)
    if arch.decoder_layers:
        blocks += 2 * relative_bias_parameters(arch)
    return (
        embedding_parameters(arch)
        + blocks
        + final_norm_parameters(arch)
        + (h * h + h if arch.has_pooler else 0)
        + (arch.vocab * h if arch.has_lm_head else 0)
    )
