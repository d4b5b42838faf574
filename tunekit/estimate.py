"""Predicted peak memory of one training run, from a model config alone (no weights are read).

The model is built on PyTorch's ``meta`` device from its config (shapes only, no storage) and the method is
applied to it through the method registry, so the trainable and frozen parameter counts are exact for any
method a plugin registers. A method that cannot be applied to a meta model is counted by its closed-form
``expected_trainable``. The peak is the sum of six terms (``Estimate``):

- **weights**: the frozen base at its storage dtype (float32: tunekit loads the base as transformers does,
  bf16 precision autocasts without converting the stored weights); with ``int8`` each quantized block linear
  keeps 1 byte per weight plus one float32 scale per output row; with ``nf4``/``fp4`` 0.5 byte per weight plus
  one float32 absmax per block of 64. Embeddings, norms, biases and the output layer stay float.
- **trainable state**: 16 bytes per trainable parameter, all float32: the parameter, its gradient and AdamW's
  two moments.
- **activations**: what autograd keeps for backward. Per block and token, the elements each block keeps with
  its weights frozen (``block_elements``: norm inputs, rotated queries/keys, values, the attention output and
  log-sum-exp of the fused attention kernel, the MLP's gate/up/activation), plus the input of every linear
  that trains (a frozen linear keeps no input: PyTorch saves only what the gradients it needs use). Attention
  dropout makes PyTorch fall back to the unfused kernel, which keeps three heads x length probability maps per
  token. Times layers, batch and length, at 4 bytes (2 under bf16 autocast). With gradient checkpointing only
  each block's input is kept, plus one block recomputed during backward.
- **logits** (causal LM only): the loss keeps the float32 log-softmax of ``batch x length x vocab`` and backward
  holds two more tensors of that size (the incoming and outgoing gradients): 3 x B x L x V x 4 bytes. With a
  chunked loss of ``logits_chunk`` positions only one chunk's three tensors exist at a time.
- **allocator**: without gradient checkpointing, half the activations again. On the CPU a run without
  checkpointing keeps glibc's default allocator behaviour (fast; ``tunekit.engine.host_memory``), whose heap
  holds on to the freed temporaries of the forward and backward passes: measured 0.45-0.6 x the activations on
  MiniLM and SmolLM2 (benchmarks/bench_estimate.py, 2026-11-30). With checkpointing the engine returns freed
  memory to the system and this term is zero.
- **overhead**: the resident memory of a Python process with torch, transformers and tunekit imported and the
  tokenizer, data and allocator slack of a small run (``RUNTIME_OVERHEAD_BYTES``, measured; see there).

The layer numbers come from ``tunekit.methods.architecture`` (BERT/RoBERTa, GPT-2, Llama/Mistral/Qwen2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunekit.errors import UsageError

QUANTIZATIONS = ("none", "int8", "nf4", "fp4")
PRECISIONS = ("fp32", "bf16")
TASK_KINDS = ("causal-lm", "classification")

RUNTIME_OVERHEAD_BYTES = 600 * 2**20
"""Resident memory that does not scale with the model: the interpreter with torch, transformers, datasets and
tunekit imported (the imports-only process of ``benchmarks/bench_estimate.py`` peaks at about 400 MiB on the
reference machine: Linux, torch 2.13 CPU) plus the tokenizer, the encoded data, the model-loading transients
and the optimizer's bookkeeping of a short run (about 200 MiB more; the measured runs lie within 10% of the
estimate with this figure)."""

LOSS_CHUNK_TOKENS = 256
"""Learned positions the causal-LM task projects to the vocabulary at a time (its lean loss checkpoints each
chunk); mirrors ``CHUNK_TOKENS`` of the built-in causal-lm task's loss module (a test keeps them equal)."""

ALLOCATOR_SHARE = 0.5
"""Freed temporaries the CPU heap keeps, as a share of the activations, when the run does not checkpoint."""

TRAINABLE_BYTES = 16
"""float32 parameter + gradient + AdamW's two moments."""
NF4_BLOCK = 64
"""bitsandbytes' 4-bit block size: one float32 absmax per 64 weights."""


@dataclass(frozen=True)
class Settings:
    """What the estimate is for: one training step's shape and numerics."""

    batch_size: int = 16
    length: int = 256
    gradient_checkpointing: bool = False
    precision: str = "fp32"
    quantize: str = "none"
    task: str | None = None
    """``causal-lm`` or ``classification``; default: causal-lm for decoders, classification for encoders."""
    logits_chunk: int | None = LOSS_CHUNK_TOKENS
    """Positions per chunk of the chunked causal-LM loss; None means the full logits are materialised."""

    def validate(self) -> None:
        """Raise UsageError for a value no run could have."""
        if self.batch_size < 1 or self.length < 1:
            raise UsageError(f"batch size and length must be positive, not {self.batch_size} and {self.length}.")
        if self.quantize not in QUANTIZATIONS:
            raise UsageError(f"unknown quantization {self.quantize!r}; choose one of {', '.join(QUANTIZATIONS)}.")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.task is not None and self.task not in TASK_KINDS:
            raise UsageError(f"unknown task kind {self.task!r}; choose one of {', '.join(TASK_KINDS)}.")
        if self.logits_chunk is not None and self.logits_chunk < 1:
            raise UsageError(f"the logits chunk must be a positive number of positions, not {self.logits_chunk}.")


@dataclass
class Estimate:
    """Predicted peak training memory in bytes, by part."""

    weights: int
    trainable_state: int
    activations: int
    logits: int
    overhead: int
    total_params: int
    trainable_params: int
    quantized_params: int
    details: dict[str, Any] = field(default_factory=dict)
    allocator: int = 0

    @property
    def total(self) -> int:
        """The predicted peak: the sum of the six parts."""
        return self.weights + self.trainable_state + self.activations + self.allocator + self.logits + self.overhead

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: every part, the total and the parameter counts."""
        return {**asdict(self), "total": self.total}


def load_config(model: str, trust_remote_code: bool = False) -> Any:
    """The transformers config of an alias, a model folder, or a bare ``config.json`` (no weights needed)."""
    from transformers import AutoConfig

    path = Path(model).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UsageError(f"config file {str(path)!r} does not exist; pass an existing config.json or a model alias.")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            return AutoConfig.for_model(values.pop("model_type"), **values)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{str(path)!r} is not a transformers config.json ({exc}); pass a model's config.json.") from None
    from tunekit.models import resolve_model

    source = resolve_model(model)
    try:
        return AutoConfig.from_pretrained(source.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the config of model {model!r} ({' '.join(str(exc).split())[:200]}); "
                         "point --model at a folder with a config.json or an alias from `tunekit models`.") from None


def _meta_model(config: Any, task: str) -> Any:
    """The model with its task head, on the meta device (shapes only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    with torch.device("meta"):
        return auto.from_config(config)


def _head_modules(model: Any) -> list[str]:
    """The fresh head a classification task trains beside the method (top-level children outside the backbone)."""
    backbone = getattr(model, "base_model_prefix", "")
    heads = [name for name, _ in model.named_children() if name != backbone and any(True for _ in _.parameters())]
    pooler = f"{backbone}.pooler"
    if any(name == pooler for name, _ in model.named_modules()):
        heads.append(pooler)
    return heads


def _apply_method(model: Any, method_name: str, options: dict[str, Any], task: str) -> tuple[Any, int, int]:
    """Apply the registered method to the meta model: (model or None, trainable, total) parameter counts."""
    from tunekit.methods.architecture import arch_info
    from tunekit.methods.protocol import count_parameters, make_options
    from tunekit.plugins import registries

    method = registries().methods.get(method_name)
    parsed = make_options(method, options)
    heads = [] if task == "causal-lm" else _head_modules(model)
    _, total = count_parameters(model)
    try:
        import torch

        with torch.device("meta"):
            method.apply(model, parsed, heads)
    except Exception:  # a plugin that needs real storage: fall back to its closed-form count (no activation detail)
        head = sum(p.numel() for name in heads for p in model.get_submodule(name).parameters())
        return None, int(method.expected_trainable(arch_info(model), parsed)) + head, total
    trainable, total_after = count_parameters(model)
    return model, trainable, total_after


def _quantized_linears(model: Any) -> list[tuple[int, int]]:
    """(in, out) features of every frozen linear inside the blocks: what a quantized load stores in 8/4 bits."""
    from tunekit.methods.architecture import blocks, is_linear

    found = []
    for _, block in blocks(model):
        for _, module in block.named_modules():
            weight = getattr(module, "weight", None)
            if is_linear(module) and weight is not None and not weight.requires_grad and weight.dim() == 2:
                out_f = getattr(module, "out_features", None) or module.nf  # nn.Linear, or GPT-2's Conv1D
                found.append((weight.numel() // out_f, int(out_f)))
    return found


def weights_bytes(frozen: int, linears: list[tuple[int, int]], quantize: str) -> tuple[int, int]:
    """(bytes, quantized parameter count) of the frozen base; ``linears`` are the quantizable block linears."""
    if quantize == "none":
        return 4 * frozen, 0
    quantized = sum(i * o for i, o in linears)
    if quantize == "int8":
        packed = quantized + 4 * sum(o for _, o in linears)  # int8 weights + one float32 scale per output row
    else:
        packed = quantized // 2 + 4 * -(-quantized // NF4_BLOCK)  # two 4-bit codes per byte + absmax per block
    return 4 * (frozen - quantized) + packed, quantized


ROLES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "llama": (("attn_in", ("q_proj", "k_proj", "v_proj")), ("attn_out", ("o_proj",)),
              ("mlp_in", ("gate_proj", "up_proj")), ("mlp_out", ("down_proj",))),
    "bert": (("attn_in", ("query", "key", "value")), ("attn_out", ("attention.output.dense",)),
             ("mlp_in", ("intermediate.dense",)), ("mlp_out", ("output.dense",))),
    "gpt2": (("attn_in", ("c_attn",)), ("attn_out", ("attn.c_proj",)),
             ("mlp_in", ("c_fc",)), ("mlp_out", ("mlp.c_proj",))),
}
"""The linear layers of a block by the tensor they read (first match wins): the layers of one role share
their input, so it is kept once however many of them train."""


def _unfused_attention(config: Any) -> bool:
    """Attention dropout in training makes PyTorch's SDPA use its unfused kernel (probabilities kept)."""
    names = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
    return any(float(getattr(config, n, 0.0) or 0.0) > 0 for n in names)


def _hidden_dropout(config: Any) -> bool:
    names = ("hidden_dropout_prob", "resid_pdrop")
    return any(float(getattr(config, n, 0.0) or 0.0) > 0 for n in names)


def block_elements(arch: Any, config: Any, length: int) -> int:
    """Elements one block keeps per token for backward with all its weights frozen.

    Llama: the two RMSNorm inputs and their inverse RMS (2h + 2), rotated queries and keys and the values
    (q + 2 kv), and the MLP's gate output, its SiLU and the up output (3 i). BERT/GPT-2: the two LayerNorm
    inputs with mean and inverse deviation (2h + 4), queries, keys and values (3 q), the GELU input (i), and
    two dropout masks (2h) when hidden dropout is on. Attention: the fused kernel keeps its output and a
    log-sum-exp per head (q + heads); the unfused one (attention dropout) keeps three probability maps per
    head: 3 heads x length (counted with saved-tensor hooks on MiniLM). Freed temporaries are not counted here (see
    the allocator term).
    """
    h, q, kv, i, heads = arch.hidden, arch.heads * arch.head_dim, arch.kv_dim, arch.intermediate, arch.heads
    attention = 3 * heads * length if _unfused_attention(config) else q + heads
    if arch.family == "llama":
        return 2 * h + 2 + q + 2 * kv + 3 * i + attention
    return 2 * h + 4 + 3 * q + i + attention + (2 * h if _hidden_dropout(config) else 0)


def _role_width(arch: Any, config: Any, role: str) -> int:
    """Extra elements per token kept when a linear of ``role`` trains: its input, unless already kept."""
    q = arch.heads * arch.head_dim
    fused_output_kept = not _unfused_attention(config)
    return {"attn_in": arch.hidden, "attn_out": 0 if fused_output_kept else q,
            "mlp_in": arch.hidden, "mlp_out": arch.intermediate}[role]


def trained_inputs(model: Any, arch: Any, config: Any) -> int:
    """Elements per token the trainable parts of the blocks add to ``block_elements``, summed over blocks.

    A role (``ROLES``) counts once per block when any module at or beneath one of its linears trains (a LoRA
    wrapper, an unfrozen linear); any other trainable linear (an adapter's projections) adds its input width.
    """
    from tunekit.methods.architecture import blocks, is_linear
    from tunekit.names import ends_with

    roles = ROLES.get(arch.family, ())
    total = 0
    for _, block in blocks(model):
        hit: set[str] = set()
        for name, module in block.named_modules():
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                continue
            parts = name.split(".")
            prefixes = [".".join(parts[:k]) for k in range(len(parts), 0, -1)]
            role = next((r for r, suffixes in roles for pre in prefixes for s in suffixes if ends_with(pre, s)), None)
            if role is not None:
                hit.add(role)
            elif is_linear(module):
                total += module.weight.numel() // (getattr(module, "out_features", None) or module.nf)
        total += sum(_role_width(arch, config, r) for r in hit)
    return total


def activation_bytes(model: Any, arch: Any, config: Any, settings: Settings) -> tuple[int, dict[str, int]]:
    """Bytes autograd keeps at the peak of backward, and the per-token element counts behind them."""
    tokens = settings.batch_size * settings.length
    per_block = block_elements(arch, config, settings.length)
    extra = trained_inputs(model, arch, config) if model is not None else 0
    outside = arch.hidden  # the final norm's (or the classifier's) input
    if settings.gradient_checkpointing:
        # Each block's input (h) is kept; during backward one block is recomputed with everything it keeps.
        elements = arch.layers * arch.hidden + per_block + extra // max(arch.layers, 1) + outside
    else:
        elements = arch.layers * per_block + extra + outside
    size = 2 if settings.precision == "bf16" else 4
    return elements * tokens * size, {"block_elements_per_token": per_block, "trained_inputs_per_token": extra,
                                      "elements_per_token": elements}


def logits_bytes(vocab: int, settings: Settings, task: str) -> int:
    """The causal-LM loss: float32 log-softmax plus two gradients of it, each positions x vocab x 4 bytes."""
    if task != "causal-lm":
        return 0
    positions = settings.batch_size * settings.length
    if settings.logits_chunk is not None:
        positions = min(positions, settings.logits_chunk)
    return 3 * positions * vocab * 4


def estimate(model: str | Any, method: str, settings: Settings, method_options: dict[str, Any] | None = None,
             overhead: int = RUNTIME_OVERHEAD_BYTES) -> Estimate:
    """Predicted peak training memory of ``method`` on ``model`` (alias, folder, config.json path or config)."""
    from tunekit.methods.architecture import arch_info

    settings.validate()
    config = load_config(model) if isinstance(model, (str, Path)) else model
    arch = arch_info(config)
    task = settings.task or ("causal-lm" if getattr(config, "is_decoder", False) or arch.family != "bert"
                             else "classification")
    meta = _meta_model(config, task)
    applied, trainable, total = _apply_method(meta, method, method_options or {}, task)
    linears = _quantized_linears(applied) if applied is not None and settings.quantize != "none" else []
    if settings.quantize != "none" and applied is None:
        linears = _quantized_linears(_meta_model(config, task))
    weights, quantized = weights_bytes(total - trainable, linears, settings.quantize)
    activations, counts = activation_bytes(applied, arch, config, settings)
    return Estimate(
        weights=weights, trainable_state=TRAINABLE_BYTES * trainable, activations=activations,
        allocator=0 if settings.gradient_checkpointing else int(ALLOCATOR_SHARE * activations),
        logits=logits_bytes(arch.vocab, settings, task), overhead=overhead, total_params=total,
        trainable_params=trainable, quantized_params=quantized,
        details={"task": task, "family": arch.family, "layers": arch.layers, **counts},
    )
