"""``prefix-tuning``: trainable key/value prefixes in every layer; the model itself stays frozen.

Works for BERT-family encoders (classification, tagging, QA: the attention mask is extended) and for
decoders (GPT-2, Llama incl. grouped-query attention) in training and in ``generate`` with the KV
cache. Folders are written in PEFT's layout (``prompt_embeddings`` + the head as
``base_model.<head>.<param>``; the projection MLP, if any, folded into plain prefixes), so
``peft.PeftModel.from_pretrained`` loads them.

Encoder-decoder models (T5, BART) get prefixes in the attention kinds ``method.attention`` names: encoder
self-attention, decoder self-attention and decoder cross-attention (the default: all three; see ``layer``).
``[decoder]`` alone is PEFT's ``SEQ_2_SEQ_LM`` prefix tuning (``num_transformer_submodules: 2`` in the
file), saved in PEFT's format, so files load with identical outputs both ways. PEFT's format has no place
for encoder or cross-attention prefixes, so any other choice is saved in tunekit's own format (the config
``{"tunekit_method": "prefix-tuning", "options": ..., "keep_trainable": ...}`` beside the same tensors,
``prompt_embeddings`` holding every slot), which ``load`` reads too; ``save`` logs that it did so.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from tunekit.builtins.methods.prefix_tuning.layer import KINDS, AttentionPrefix, PrefixEncoder, PrefixInjector
from tunekit.builtins.methods.prefix_tuning.options import PrefixTuningOptions
from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods import adapter_files, architecture
from tunekit.methods.surgery import (
    AppliedMethod,
    adapter_dtype,
    freeze_all,
    load_into,
    load_tunekit_adapter,
    peft_task_type,
    present_modules,
    resolve_modules,
    unfreeze,
)
from tunekit.options import build

logger = logging.getLogger("tunekit.methods.prefix_tuning")

ATTRIBUTE = "prefix_encoder"
PEFT_KEYS = {"peft_type", "task_type", "num_virtual_tokens", "num_layers", "token_dim", "num_attention_heads",
             "encoder_hidden_size", "prefix_projection", "inference_mode", "modules_to_save",
             "num_transformer_submodules", "base_model_name_or_path", "revision", "peft_version", "auto_mapping",
             "init_weights"}


@dataclasses.dataclass
class AppliedPrefix(AppliedMethod):
    handles: list[Any] = dataclasses.field(default_factory=list)
    kinds: tuple[str, ...] = ()
    """Encoder-decoder models: the attention kinds with prefixes, in slot order; () for one-stack models."""

    @property
    def encoder(self) -> PrefixEncoder:
        return getattr(self.model, ATTRIBUTE)

    @property
    def encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def peft_format(self) -> bool:
        """True when PEFT's prefix tuning can hold these prefixes (one-stack models, or the decoder's only)."""
        return self.kinds in ((), ("decoder",))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The prefixes (MLP folded in) as ``prompt_embeddings`` and the head as ``base_model.<name>``."""
        out = {"prompt_embeddings": self.encoder.flat().detach()}
        for name, p in self.model.named_parameters():
            if p.requires_grad and not name.startswith(ATTRIBUTE + "."):
                out["base_model." + name] = p.detach()
        return out

    def file_config(self) -> dict[str, Any]:
        """PEFT's prefix-tuning config, or tunekit's own where PEFT cannot express the prefixes."""
        enc = self.encoder
        if not self.peft_format:  # the saved prefixes are folded: the file's options say so
            options = dataclasses.replace(self.options, projection=False)
            return {"tunekit_method": self.method, "options": dataclasses.asdict(options),
                    "keep_trainable": list(self.keep_trainable)}
        return {
            "peft_type": "PREFIX_TUNING",
            "task_type": peft_task_type(self.model) or "FEATURE_EXTRACTION",
            "base_model_name_or_path": getattr(self.model.config, "_name_or_path", None) or None,
            "num_virtual_tokens": enc.tokens,
            "num_layers": enc.layers,
            "token_dim": enc.kv_heads * enc.head_dim,
            "num_attention_heads": enc.kv_heads,
            "encoder_hidden_size": enc.kv_heads * enc.head_dim,
            "prefix_projection": False,  # saved prefixes are already folded
            "num_transformer_submodules": 2 if self.encoder_decoder else 1,
            "inference_mode": True,
            "modules_to_save": list(self.keep_trainable) or None,
        }

    def save(self, folder: str | Path) -> None:
        """Write the adapter (PEFT's format where it can hold the prefixes, tunekit's otherwise)."""
        if not self.peft_format:
            logger.info(
                "prefix-tuning with %s prefixes cannot be saved in PEFT's format (PEFT prefixes only the decoder's "
                "self-attention), so %s holds tunekit's format, which tunekit loads; train with "
                "method.attention=[decoder] for an adapter PEFT loads.", "/".join(self.kinds), folder)
        super().save(folder)

    def load_tensors(self, tensors: dict[str, torch.Tensor], folder: str | Path) -> None:
        if self.encoder.projected:
            raise CheckpointError("prefix-tuning files hold folded prefixes; load them with projection off.")
        params = {"prompt_embeddings": self.encoder.prefix}
        params.update({"base_model." + n: p for n, p in self.model.named_parameters()
                       if p.requires_grad and not n.startswith(ATTRIBUTE + ".")})
        load_into(params, tensors, folder)

    def remove(self) -> nn.Module:
        """Take the prefixes off the model again (the hooks and the encoder)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if hasattr(self.model, ATTRIBUTE):
            delattr(self.model, ATTRIBUTE)
        return self.model


def attention_kinds(info: architecture.ArchInfo, options: Any) -> tuple[str, ...]:
    """The attention kinds (slot order) that get prefixes in an encoder-decoder model; () for one-stack models."""
    if not info.decoder_layers:
        if not options.default_attention:
            raise MethodError(
                f"method.attention={list(options.attention)} chooses among the attention kinds of encoder-decoder "
                f"models, and this {info.model_type} model has one stack; leave method.attention at its default."
            )
        return ()
    return tuple(kind for kind in KINDS if kind in options.attention)


def slot_count(info: architecture.ArchInfo, kinds: tuple[str, ...]) -> int:
    """Prefix slots: one per layer of each chosen attention kind (one-stack models: one per layer)."""
    if not kinds:
        return info.layers
    layers = {"decoder": info.decoder_layers, "encoder": info.layers, "cross": info.decoder_layers}
    return sum(layers[kind] for kind in kinds)


def attention_modules(model: nn.Module, kind: str) -> list[str]:
    """Qualified names of the encoder self-attention (``encoder``) or cross-attention (``cross``) modules."""
    if kind == "cross":
        return [name.rsplit(".", 1)[0] for name in architecture.cross_attention_outputs(model)]
    stack, blocks = architecture.stacks(model)[0]
    return [f"{name}.{stack.attention_output.rsplit('.', 1)[0]}" for name, _ in blocks]


def _accepts_cache(model: nn.Module) -> bool:
    params = inspect.signature(model.forward).parameters
    return bool(set(architecture.CACHE_ARGUMENTS) & set(params)) or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class PrefixTuning:
    name = "prefix-tuning"
    description = "Prefix tuning: trainable key/value prefixes in every layer (encoders and decoders, GQA, generate)."
    options_class = PrefixTuningOptions
    identity_at_init = False  # prefixes change the attention from the first step
    supports_merge = False
    trains_base_weights = False
    default_lr = 3e-2  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)
    peft_type = "PREFIX_TUNING"

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedPrefix:
        info = architecture.arch_info(model)  # MethodError for architectures without known attention layout
        kinds = attention_kinds(info, options)
        if not _accepts_cache(model) or hasattr(model, ATTRIBUTE):
            raise MethodError(
                f"{type(model).__name__} cannot take key/value prefixes (no key/value cache input, or prefixes "
                "already applied); use lora or an adapter method with this model."
            )
        keep = resolve_modules(model, keep_trainable)
        modules = {kind: attention_modules(model, kind) for kind in kinds if kind != "decoder"}
        freeze_all(model)
        encoder = PrefixEncoder(options.num_virtual_tokens, slot_count(info, kinds), info.kv_heads, info.head_dim,
                                info.hidden, options.projection_size(info.hidden), options.dropout)
        device = next(p.device for p in model.parameters())
        encoder.to(device=device, dtype=adapter_dtype(model))
        model.add_module(ATTRIBUTE, encoder)
        handles = []
        if not kinds or "decoder" in kinds:  # the (decoder's) self-attention: through the model's own cache
            injector = PrefixInjector(encoder, info.decoder_layers or info.layers, seq2seq=bool(kinds))
            handles.append(model.register_forward_pre_hook(injector, with_kwargs=True))
        slot = info.decoder_layers if "decoder" in kinds else 0
        for kind, names in modules.items():
            for name in names:
                module = model.get_submodule(name)
                hook = AttentionPrefix(encoder, module, slot, cross=kind == "cross")
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                slot += 1
        unfreeze(model, [ATTRIBUTE] + keep)
        return AppliedPrefix(self.name, model, options, keep, injected=[ATTRIBUTE] + keep,
                             keep_trainable=list(keep_trainable), created=(f".{ATTRIBUTE}.",), handles=handles,
                             kinds=kinds)

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """tokens x slots x 2 x kv_dim, slots = the layers of the attention that gets prefixes (one-stack models:
        every layer; encoder-decoder: encoder layers for ``encoder``, decoder layers each for ``decoder`` and
        ``cross``); with a projection: embedding + MLP."""
        width = slot_count(arch, attention_kinds(arch, options)) * 2 * arch.kv_dim
        p = options.projection_size(arch.hidden)
        if not p:
            return options.num_virtual_tokens * width
        return options.num_virtual_tokens * arch.hidden + arch.hidden * p + p + p * width + width

    def load(self, model: nn.Module, folder: str | Path) -> AppliedPrefix:
        """Load a prefix-tuning folder written by tunekit (either format) or PEFT (prefixes must match the
        model's kv shape)."""
        config = adapter_files.read_config(folder)
        if "tunekit_method" in config:
            return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)  # type: ignore[return-value]
        where = str(Path(folder) / adapter_files.CONFIG_NAME)
        if config.get("peft_type") != "PREFIX_TUNING":
            raise CheckpointError(f"{where!r} is not a prefix-tuning adapter; load it with the method that wrote it.")
        unknown = sorted(set(config) - PEFT_KEYS)
        if unknown:
            raise CheckpointError(f"{where!r} has unknown key {unknown[0]!r}; tunekit reads PEFT prefix-tuning configs only.")
        info = architecture.arch_info(model)
        stacks = 2 if info.decoder_layers else 1
        if config.get("num_transformer_submodules", 1) != stacks:
            raise CheckpointError(
                f"{where!r} has num_transformer_submodules={config.get('num_transformer_submodules')!r} but this "
                f"{'encoder-decoder' if stacks == 2 else 'one-stack'} model needs {stacks}; load it into the base "
                "model it was trained with."
            )
        keep = config.get("modules_to_save") or []
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise CheckpointError(f"{where!r}: modules_to_save must be a list of module names; fix the file.")
        try:
            values = {"num_virtual_tokens": config.get("num_virtual_tokens")}
            options = build(PrefixTuningOptions, {**values, "attention": ["decoder"]} if stacks == 2 else values,
                            where="prefix-tuning")
        except ConfigError as exc:
            raise CheckpointError(f"{where!r} is invalid: {exc}") from None
        expected = {"num_layers": info.decoder_layers or info.layers, "token_dim": info.kv_dim}
        for key, value in expected.items():
            if config.get(key, value) != value:
                raise CheckpointError(
                    f"{where!r} has {key}={config.get(key)!r} but this model needs {value}; load it into the "
                    "base model it was trained with."
                )
        tensors = adapter_files.read_tensors(folder)
        applied = self.apply(model, options, present_modules(model, keep))
        applied.load_tensors(tensors, folder)
        return applied
