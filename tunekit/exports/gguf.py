"""``tunekit export --format gguf``: a decoder run as one GGUF file for llama.cpp, ollama and transformers.

The file is written with the ``gguf`` package (``GGUFWriter``): tensor names come from its
``TensorNameMap``, quantization from ``gguf.quants``, merges, special ids and the chat template from
its ``SpecialVocab``. What the package leaves to the converter is done here, following llama.cpp's
conventions for Llama: the query/key rows reordered for its rotary layout, norms kept in float32, a
tied output head left out (llama.cpp reuses ``token_embd``), and the token list with its types.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tunekit.errors import UsageError
from tunekit.exports.common import require

DTYPES = ("f32", "f16", "q8_0")
"""The weight types ``--dtype`` accepts for GGUF (1-D tensors such as norms always stay float32)."""

SUPPORTED = ("llama",)
"""Model types (``config.model_type``) that export to GGUF: llama.cpp's LLAMA architecture."""


def check_exportable(model: Any, dtype: str) -> None:
    """Raise UsageError unless ``model`` is a causal LM of a supported family and ``dtype`` is known."""
    config = model.config
    if config.model_type not in SUPPORTED or not type(model).__name__.endswith("ForCausalLM"):
        raise UsageError(
            f"GGUF export supports causal-LM runs of the {', '.join(SUPPORTED)} family, not a "
            f"{config.model_type} {type(model).__name__}; use --format hf (or --format onnx for an encoder task)."
        )
    if dtype not in DTYPES:
        raise UsageError(f"unknown GGUF --dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UsageError(f"GGUF export handles Llama models with plain rotary embeddings, not rope type "
                         f"{rope.get('rope_type')!r}; use --format hf for this model.")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UsageError("GGUF export handles Llama models without attention or MLP biases; use --format hf.")


def write_gguf(model: Any, tokenizer: Any, path: Path, dtype: str, name: str) -> None:
    """Write ``model`` (a float Llama causal LM) with ``tokenizer`` as the GGUF file ``path``."""
    gguf = require("gguf", "gguf")
    check_exportable(model, dtype)
    writer = gguf.GGUFWriter(str(path), "llama")
    try:
        add_hyperparameters(writer, model.config, dtype, name)
        add_tokenizer(writer, tokenizer, model.config.vocab_size)
        add_tensors(writer, model, dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def add_hyperparameters(writer: Any, config: Any, dtype: str, name: str) -> None:
    """The ``llama.*`` keys llama.cpp and transformers read to build the model."""
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = dict(getattr(config, "rope_parameters", None) or {})
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(file_types[dtype])


def token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token text and llama.cpp token type, padded to the model's ``vocab_size``.

    Written here because gguf's ``BpeVocab`` types a special token that sits inside the base vocabulary
    (SmolLM2's ``<|im_start|>``) as normal; llama.cpp needs it as a control token to stop on it.
    """
    import gguf

    if vocab_size < len(tokenizer):
        raise UsageError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embeddings; "
                         "the run cannot be written as GGUF.")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows without a token: llama.cpp's placeholder convention
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer: how it splits text before BPE.

    llama.cpp recognises a pre-tokenizer by name; the two GPT-2-style splits tunekit's models use are
    told apart by their structure (SmolLM2 splits digits one by one before the byte-level split).
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["ByteLevel"]:
        return "gpt-2"
    return "default"


def add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The GPT-2-style BPE tokenizer: tokens, types, merges, special ids, BOS handling and chat template."""
    import gguf

    with tempfile.TemporaryDirectory() as folder:  # SpecialVocab reads the files save_pretrained writes
        tokenizer.save_pretrained(folder)
        tokenizer_json = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
        model = tokenizer_json.get("model", {})
        if model.get("type") != "BPE" or model.get("byte_fallback"):
            raise UsageError("GGUF export needs a byte-level BPE tokenizer (GPT-2 style, as SmolLM2's); this run's "
                             f"tokenizer is a {model.get('type')} one, so use --format hf.")
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    probe = tokenizer("a").input_ids
    special.add_special_token["bos"] = bool(probe) and probe[0] == tokenizer.bos_token_id
    special.add_special_token.setdefault("eos", False)
    if tokenizer.chat_template and special.chat_template is None:
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder a query/key projection's rows from transformers' rotary layout to llama.cpp's.

    transformers rotates the first half of each head against the second half; llama.cpp (like Meta's
    original checkpoints) rotates interleaved pairs. No library exposes this step on its own.
    """
    rows = weight.shape[0]
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def add_tensors(writer: Any, model: Any, dtype: str) -> None:
    """Every weight under its GGUF name, converted to ``dtype`` (1-D tensors stay float32)."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, tensor in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue  # llama.cpp uses token_embd when there is no output tensor
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"the weight {key!r} has no GGUF name for a Llama model; use --format hf for this run.")
        data = tensor.detach().float().cpu().numpy()
        if key.endswith("self_attn.q_proj.weight"):
            data = rotary_rows(data, config.num_attention_heads)
        elif key.endswith("self_attn.k_proj.weight"):
            data = rotary_rows(data, config.num_key_value_heads or config.num_attention_heads)
        add_tensor(writer, name, data, dtype)


def add_tensor(writer: Any, name: str, data: np.ndarray, dtype: str) -> None:
    """Add one tensor: float32 for vectors, else ``dtype``; q8_0 falls back to f16 when rows are not whole blocks."""
    import gguf

    if data.ndim == 1 or dtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
        return
    if dtype == "q8_0":
        qtype = gguf.GGMLQuantizationType.Q8_0
        try:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
            return
        except gguf.quants.QuantError:  # a row length that is not a multiple of the 32-value block
            pass
    writer.add_tensor(name, data.astype(np.float16))
