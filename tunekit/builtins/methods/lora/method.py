"""``lora``: low-rank updates ``(alpha / r) * B @ A`` on chosen linear layers; the base stays frozen.

Targets: a list of names or suffixes, a full-match regex, or ``all-linear`` (see ``targets``); defaults
per architecture (BERT ``query,value``; GPT-2 ``c_attn``; Llama ``q_proj,v_proj``; T5 ``q,v`` and BART
``q_proj,v_proj`` in every attention of both stacks). ``alpha`` defaults to
``2 * r``. Folders are written in PEFT's layout (see ``files``), and merge/unmerge fold the update into
the base weights exactly; on an int8 base merging is refused (use ``tunekit.methods.merge.merged_float_model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from tunekit.builtins.methods.lora import files, targets
from tunekit.builtins.methods.lora.layer import LoraWrapper
from tunekit.builtins.methods.lora.options import LoraOptions
from tunekit.methods import adapter_files
from tunekit.methods.surgery import (
    AppliedMethod,
    adapter_dtype,
    freeze_all,
    present_modules,
    replace_module,
    resolve_modules,
    unfreeze,
)


class AppliedLora(AppliedMethod):
    supports_merge = True

    def wrappers(self) -> list[tuple[str, LoraWrapper]]:
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, LoraWrapper)]

    def file_key(self, name: str) -> str:
        return files.PREFIX + name

    def file_config(self) -> dict[str, Any]:
        wrapped = [n for n, _ in self.wrappers()]
        spec = targets.normalise(self.options.target_modules, self.model)
        return files.peft_config(
            self.model, self.options, targets.peft_targets(self.model, wrapped, spec, self.keep),
            any(m.fan_in_fan_out for _, m in self.wrappers()), self.keep_trainable,
        )

    def merge(self) -> None:
        """Fold every update into its base weight (MethodError on an int8 base)."""
        for _, module in self.wrappers():
            module._check_float_base()
        for _, module in self.wrappers():
            module.merge()

    def unmerge(self) -> None:
        for _, module in self.wrappers():
            module.unmerge()

    def unload(self) -> nn.Module:
        """Merge, then put the plain base layers back; returns the model (no LoRA modules left)."""
        self.merge()
        for name, module in self.wrappers():
            replace_module(self.model, name, module.base_layer)
        return self.model


class Lora:
    name = "lora"
    description = "LoRA: trainable low-rank updates on chosen linear layers; PEFT-compatible files; mergeable."
    options_class = LoraOptions
    identity_at_init = True
    supports_merge = True
    trains_base_weights = False
    default_lr = 3e-3  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)
    peft_type = "LORA"

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedLora:
        keep = resolve_modules(model, keep_trainable)
        spec = targets.normalise(options.target_modules, model)
        chosen = targets.resolve(model, spec, exclude=keep)
        freeze_all(model)
        dtype = adapter_dtype(model)
        for name in chosen:
            base = model.get_submodule(name)
            wrapper = LoraWrapper(base, options.r, options.lora_alpha, options.dropout)
            device = next(base.parameters()).device
            wrapper.lora_A.to(device=device, dtype=dtype)
            wrapper.lora_B.to(device=device, dtype=dtype)
            replace_module(model, name, wrapper)
        for name in chosen:
            module = model.get_submodule(name)
            module.lora_A.weight.requires_grad_(True)
            module.lora_B.weight.requires_grad_(True)
        unfreeze(model, keep)
        return AppliedLora(self.name, model, options, keep, injected=chosen + keep, keep_trainable=list(keep_trainable),
                           created=(".lora_A.", ".lora_B."))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """r x (in + out) per targeted layer, from the config numbers of the default or named targets."""
        return options.r * sum(i + o for i, o in target_shapes(arch, options))

    def load(self, model: nn.Module, folder: str | Path) -> AppliedLora:
        """Load a LoRA folder written by tunekit or by PEFT."""
        options, keep = files.read_peft_config(folder)
        tensors = files.normalise_keys(adapter_files.read_tensors(folder))
        applied = self.apply(model, options, present_modules(model, keep))
        applied.load_tensors(tensors, folder)
        return applied


# (in, out, how many per model) of each family's linear layers, keyed by their dotted path in a block.
def _block_linears(arch: Any) -> dict[str, tuple[int, int, int]]:
    h, i, n = arch.hidden, arch.intermediate, arch.layers
    if arch.family == "bert":
        return {"query": (h, h, n), "key": (h, h, n), "value": (h, h, n), "attention.output.dense": (h, h, n),
                "intermediate.dense": (h, i, n), "output.dense": (i, h, n)}
    if arch.family == "gpt2":
        return {"c_attn": (h, 3 * h, n), "attn.c_proj": (h, h, n), "c_fc": (h, i, n), "mlp.c_proj": (i, h, n)}
    q, kv = arch.heads * arch.head_dim, arch.kv_dim
    if arch.family in ("t5", "bart"):
        return _encoder_decoder_linears(arch, q)
    return {"q_proj": (h, q, n), "k_proj": (h, kv, n), "v_proj": (h, kv, n), "o_proj": (q, h, n),
            "gate_proj": (h, i, n), "up_proj": (h, i, n), "down_proj": (i, h, n)}


def _encoder_decoder_linears(arch: Any, inner: int) -> dict[str, tuple[int, int, int]]:
    """T5 / BART: self-attention in both stacks, cross-attention in the decoder, the feed-forward in both."""
    h, i, both, dec = arch.hidden, arch.intermediate, arch.all_layers, arch.decoder_layers
    if arch.family == "t5":
        self_attn, cross, proj = "SelfAttention", "EncDecAttention", ("q", "k", "v", "o")
        ffn = {"wo": (i, h, both)}
        ffn.update({"wi_0": (h, i, both), "wi_1": (h, i, both)} if arch.gated_ffn else {"wi": (h, i, both)})
    else:
        self_attn, cross, proj = "self_attn", "encoder_attn", ("q_proj", "k_proj", "v_proj", "out_proj")
        ffn = {"fc1": (h, i, both), "fc2": (i, h, both)}
    shapes = {p: (inner, h) if p in ("o", "out_proj") else (h, inner) for p in proj}
    table = {f"{self_attn}.{p}": (*shapes[p], both) for p in proj}
    table.update({f"{cross}.{p}": (*shapes[p], dec) for p in proj})
    return {**table, **ffn}


def target_shapes(arch: Any, options: Any) -> list[tuple[int, int]]:
    """(in, out) of every layer LoRA wraps, for name-list or ``all-linear`` targets."""
    spec = options.target_modules
    if spec is None:
        spec = targets.defaults(arch.family)
    elif isinstance(spec, str) and spec != targets.ALL_LINEAR:
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    table = _block_linears(arch)
    if spec == targets.ALL_LINEAR:
        chosen = list(table.values())
    else:
        chosen = [shape for key, shape in table.items()
                  if any(key == t or key.endswith("." + t) or t.endswith("." + key) for t in spec)]
    return [(i, o) for i, o, count in chosen for _ in range(count)]
