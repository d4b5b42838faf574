"""IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning"): three learned vectors per transformer block rescale the attention keys, the attention
values and the feed-forward intermediate activations. The vectors start at one, so the adapted model
is the base model until training moves them, and each folds exactly into the projection it scales.

Parameters per block: ``d_k + d_v + d_ff`` (``d_k = d_v`` = key/value width, ``kv_heads * head_dim``
for grouped-query attention; ``d_ff`` = feed-forward intermediate width).

Encoder-decoder models (T5, BART): every block of both stacks gets its self-attention key/value vectors
and its feed-forward vector, and each decoder block also gets key/value vectors on its cross-attention
(as PEFT's IA3 defaults for T5 do), so a decoder block holds ``2 * d_k + 2 * d_v + d_ff`` parameters.
Their folders are PEFT's IA3 format (``task_type: SEQ_2_SEQ_LM``), which ``peft.PeftModel.from_pretrained``
loads with identical outputs; with a kept-trainable module (which the seq2seq task never adds) and on
one-stack models the folder is tunekit's own format, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tunekit.errors import MethodError
from tunekit.methods import architecture
from tunekit.methods.surgery import (
    AppliedMethod,
    freeze_all,
    load_into,
    load_tunekit_adapter,
    peft_task_type,
    present_modules,
    replace_module,
    resolve_modules,
    unfreeze,
)
from tunekit.names import matches
from tunekit_ia3 import peft_files
from tunekit_ia3.layer import IA3Scaled, Side, is_quantized, weight_layout
from tunekit_ia3.options import IA3Options

# Inside one transformer block: the key and value projections of each architecture family that
# tunekit.methods.architecture knows (it names the feed-forward output projection itself). GPT-2 fuses query, key and
# value into one Conv1D, whose key and value thirds get the vectors.
KEY_VALUE = {
    "bert": ("attention.self.key", "attention.self.value"),
    "llama": ("self_attn.k_proj", "self_attn.v_proj"),
    # encoder-decoder families: self-attention, and (decoder blocks only) cross-attention
    "t5": ("layer.0.SelfAttention.k", "layer.0.SelfAttention.v", "layer.1.EncDecAttention.k", "layer.1.EncDecAttention.v"),
    "bart": ("self_attn.k_proj", "self_attn.v_proj", "encoder_attn.k_proj", "encoder_attn.v_proj"),
}
FUSED_QKV = {"gpt2": "attn.c_attn"}


def _default_patterns(model: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """(key/value, feed-forward, fused qkv) qualified module names for a model tunekit.methods.architecture knows."""
    try:
        family = architecture.family_of(model)
        blocks = [name for name, _ in architecture.blocks(model)]
        ffn = architecture.ffn_outputs(model)
    except MethodError:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        raise MethodError(
            f"IA3 has no default targets for model type {model_type!r}; set method.key_value_modules and "
            "method.feedforward_modules to the key/value and feed-forward down projection names."
        ) from None
    names = {n for n, _ in model.named_modules()}
    kv = [f"{b}.{m}" for b in blocks for m in KEY_VALUE.get(family.name, ()) if f"{b}.{m}" in names]
    fused = [f"{b}.{FUSED_QKV[family.name]}" for b in blocks] if family.name in FUSED_QKV else []
    return kv, ffn, fused


@dataclass(frozen=True)
class Target:
    """One projection IA3 wraps: which side it scales, how many features, from which offset."""

    name: str
    side: Side
    size: int
    offset: int = 0


def find_targets(model: nn.Module, options: IA3Options) -> list[Target]:
    """The projections IA3 wraps in ``model`` (raises MethodError when a pattern matches nothing)."""
    if options.uses_defaults:
        groups = _default_patterns(model)
    else:
        groups = (options.key_value_modules, options.feedforward_modules, options.fused_qkv_modules)
    targets: list[Target] = []
    taken: set[str] = set()
    for kind, patterns in zip(("kv", "ff", "fused"), groups, strict=True):
        for pattern in patterns:
            found = [
                (n, m) for n, m in model.named_modules()
                if n and matches(n, pattern) and not isinstance(m, IA3Scaled) and ".base_layer" not in n
            ]
            if not found:
                raise MethodError(
                    f"IA3 target {pattern!r} matches no module of this {type(model).__name__}; "
                    "check the names with `print(model)` and fix the method options."
                )
            for name, module in found:
                if name in taken:
                    continue
                taken.add(name)
                d_in, d_out, _ = weight_layout(module)
                if kind == "kv":
                    targets.append(Target(name, "out", d_out))
                elif kind == "ff":
                    targets.append(Target(name, "in", d_in))
                else:
                    if d_out % 3:
                        raise MethodError(
                            f"{name!r} has {d_out} outputs, not a fused query/key/value projection; "
                            "list it in method.key_value_modules instead."
                        )
                    targets.append(Target(name, "out", 2 * d_out // 3, offset=d_out // 3))
    return targets


@dataclass
class IA3Applied(AppliedMethod):
    """IA3 applied to one model: its vectors are saved, and merge exactly into the wrapped projections."""

    targets: list[Target] = dataclasses.field(default_factory=list)

    supports_merge = True

    @property
    def new_parameters(self) -> list[str]:
        """The parameters IA3 created (the engine trains them as new weights)."""
        return [f"{t.name}.ia3_l" for t in self.targets]

    def wrappers(self) -> dict[str, IA3Scaled]:
        return {t.name: self.model.get_submodule(t.name) for t in self.targets}  # type: ignore[misc]

    @property
    def peft_format(self) -> bool:
        """True when the folder is written in PEFT's IA3 format: encoder-decoder models, no kept module."""
        return peft_task_type(self.model) == "SEQ_2_SEQ_LM" and not self.keep

    def save(self, folder: str | Path) -> None:
        """PEFT's IA3 format for encoder-decoder models (unmerged vectors), tunekit's own otherwise."""
        if not self.peft_format:
            super().save(folder)
            return
        wrappers = self.wrappers()
        peft_files.write(folder, self.model, {t.name: (t.side, wrappers[t.name].full_vector()) for t in self.targets})

    def merge(self) -> None:
        """Fold every vector into its projection (MethodError for a quantized base, before any change)."""
        wrappers = self.wrappers().values()
        if any(is_quantized(w.base_layer) for w in wrappers if not w.merged):
            raise MethodError(
                "IA3 cannot merge into a quantized base exactly; load the model without --quantize to merge "
                "(or export with tunekit.methods.merge.merged_float_model, which dequantizes first)."
            )
        for wrapper in wrappers:
            wrapper.merge()

    def unmerge(self) -> None:
        """Divide the vectors back out of the projections."""
        for wrapper in self.wrappers().values():
            wrapper.unmerge()

    def unload(self) -> nn.Module:
        """Merge, then put the plain projections back in place of the wrappers."""
        self.merge()
        for name, wrapper in self.wrappers().items():
            replace_module(self.model, name, wrapper.base_layer)
        self.targets = []
        return self.model


class IA3:
    """The ``ia3`` method (follows ``tunekit.methods.protocol.Method``)."""

    name = "ia3"
    description = "IA3: learned vectors rescale attention keys, values and feed-forward activations (mergeable)."
    options_class = IA3Options
    identity_at_init = True
    supports_merge = True
    trains_base_weights = False
    peft_type = "IA3"

    def apply(self, model: nn.Module, options: IA3Options, keep_trainable: Sequence[str] = ()) -> IA3Applied:
        """Freeze ``model``, wrap the key/value and feed-forward projections, keep the head trainable."""
        targets = find_targets(model, options)
        keep = resolve_modules(model, keep_trainable)  # checked before the model is touched
        freeze_all(model)
        for t in targets:
            replace_module(model, t.name, IA3Scaled(model.get_submodule(t.name), t.side, t.size, t.offset))
        unfreeze(model, keep)
        return IA3Applied(self.name, model, options, keep, injected=[t.name for t in targets] + keep,
                          keep_trainable=list(keep_trainable), targets=targets)

    def expected_trainable(self, arch: Any, options: IA3Options) -> int:
        """Closed form ``layers * (2 * kv_dim + intermediate)`` for the default targets (encoder-decoder: every
        block of both stacks, plus ``2 * kv_dim`` of cross-attention per decoder block).

        ``arch`` is a ``tunekit.methods.architecture.ArchInfo`` (a model or config is accepted too).
        """
        if not options.uses_defaults:
            raise MethodError("the closed-form IA3 count is known for the default targets only; count the model instead.")
        info = arch if isinstance(arch, architecture.ArchInfo) else architecture.arch_info(arch)
        return info.all_layers * (2 * info.kv_dim + info.intermediate) + info.decoder_layers * 2 * info.kv_dim

    def load(self, model: nn.Module, folder: str | Path) -> IA3Applied:
        """Re-apply IA3 as saved in ``folder`` (tunekit's files, or PEFT's) and load its vectors and head."""
        if peft_files.is_peft(folder):
            options, keep = peft_files.read_config(folder)
            applied = self.apply(model, options, present_modules(model, keep))
            params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            load_into(params, peft_files.tensors(folder, params), folder)
            return applied
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)  # type: ignore[return-value]
