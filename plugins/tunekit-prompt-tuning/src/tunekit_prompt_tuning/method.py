"""Prompt tuning (Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"):
the whole pretrained model stays frozen and only ``num_virtual_tokens`` input embedding vectors,
prepended to every sequence, are trained (plus the task head, when the task adds one).

Parameters: ``num_virtual_tokens * embedding_width``.

Encoder-decoder models (T5, BART): the prompt is prepended to the encoder input (see ``layer``), and folders
are PEFT's prompt-tuning format (``task_type: SEQ_2_SEQ_LM``; see ``PromptTuningApplied.save``), which
``peft.PeftModel.from_pretrained`` loads with identical outputs. Other models (and a kept-trainable module,
which the seq2seq task never adds) write tunekit's own format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunekit.errors import CheckpointError, MethodError
from tunekit.methods import adapter_files, architecture
from tunekit.methods.surgery import (
    AppliedMethod,
    freeze_all,
    load_into,
    load_tunekit_adapter,
    peft_task_type,
    present_modules,
    resolve_modules,
    unfreeze,
)
from tunekit_prompt_tuning.layer import SoftPrompt
from tunekit_prompt_tuning.options import PromptTuningOptions

MODULE_NAME = "soft_prompt"


def _backbone(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """(the module the prompt enters, the decoder of an encoder-decoder model or None)."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return model.get_encoder(), model.get_decoder()
    # transformers models name their backbone through `base_model` (the model itself for a bare backbone)
    return getattr(model, "base_model", model), None


def _embeddings(model: nn.Module) -> nn.Embedding:
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, nn.Embedding):
        raise MethodError(
            f"prompt tuning needs a model with token embeddings (get_input_embeddings), and {type(model).__name__} "
            "has none; choose another method for this model."
        )
    return emb


def _initial_prompt(emb: nn.Embedding, options: PromptTuningOptions) -> torch.Tensor:
    g = torch.Generator().manual_seed(options.seed)
    n, (vocab, width) = options.num_virtual_tokens, emb.weight.shape
    weight = emb.weight.detach()
    if options.init == "vocab" and weight.device.type != "meta":
        ids = torch.randint(0, vocab, (n,), generator=g)
        return weight[ids.to(weight.device)].float().clone()
    std = float(weight.float().std()) if weight.device.type != "meta" else 0.02
    return (torch.randn(n, width, generator=g) * std).to(weight.device)


@dataclass
class PromptTuningApplied(AppliedMethod):
    """Prompt tuning applied to one model: the prompt (and head) are saved; nothing merges."""

    prompt_name: str = ""

    @property
    def prompt(self) -> SoftPrompt:
        return self.model.get_submodule(self.prompt_name)  # type: ignore[return-value]

    @property
    def new_parameters(self) -> list[str]:
        """The prompt vectors (the engine trains them as new weights)."""
        return [f"{self.prompt_name}.weight"]

    @property
    def peft_format(self) -> bool:
        """True when the folder is written in PEFT's format: encoder-decoder models, no kept module."""
        return peft_task_type(self.model) == "SEQ_2_SEQ_LM" and not self.keep

    def save(self, folder: str | Path) -> None:
        """PEFT's prompt-tuning format for encoder-decoder models, tunekit's own otherwise.

        PEFT keeps ``2 * num_virtual_tokens`` rows for ``SEQ_2_SEQ_LM`` (``num_transformer_submodules: 2``) and
        prepends only the first ``num_virtual_tokens`` to the encoder input; the second set, which its forward
        never reads, is written as zeros.
        """
        if not self.peft_format:
            super().save(folder)
            return
        prompt = self.prompt.weight.detach()
        config = self.model.config
        adapter_files.write(folder, {
            "peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM",
            "base_model_name_or_path": getattr(config, "_name_or_path", None) or None,
            "num_virtual_tokens": self.prompt.num_virtual_tokens, "token_dim": int(prompt.shape[1]),
            "num_transformer_submodules": 2, "num_attention_heads": config.num_attention_heads,
            "num_layers": config.num_hidden_layers, "prompt_tuning_init": "RANDOM", "inference_mode": True,
            "modules_to_save": None,
        }, {"prompt_embeddings": torch.cat([prompt, torch.zeros_like(prompt)])})

    def merge(self) -> None:
        raise MethodError("prompt tuning adds input vectors that cannot be folded into the weights; keep the adapter instead of merging.")

    def unmerge(self) -> None:
        raise MethodError("prompt tuning never merges, so there is nothing to unmerge; use the adapter as it is.")


class PromptTuning:
    """The ``prompt-tuning`` method (follows ``tunekit.methods.protocol.Method``)."""

    name = "prompt-tuning"
    description = "Prompt tuning: trainable soft-prompt vectors prepended to the input; the model stays frozen."
    options_class = PromptTuningOptions

    identity_at_init = False
    supports_merge = False
    trains_base_weights = False
    peft_type = "PROMPT_TUNING"

    def apply(self, model: nn.Module, options: PromptTuningOptions,
              keep_trainable: Sequence[str] = ()) -> PromptTuningApplied:
        """Freeze ``model``, add the soft prompt in front of its backbone's inputs, keep the head trainable."""
        emb = _embeddings(model)
        backbone, decoder = _backbone(model)
        if any(isinstance(m, SoftPrompt) for m in model.modules()):
            raise MethodError("this model already has a soft prompt; load a fresh model before applying prompt tuning again.")
        keep = resolve_modules(model, keep_trainable)  # checked before the model is touched
        freeze_all(model)
        prompt = SoftPrompt(_initial_prompt(emb, options))
        prompt.attach(backbone, emb, decoder)
        backbone.add_module(MODULE_NAME, prompt)
        name = next(n for n, m in model.named_modules() if m is prompt)
        unfreeze(model, [name, *keep])
        return PromptTuningApplied(self.name, model, options, keep, injected=[name, *keep],
                                   keep_trainable=list(keep_trainable), prompt_name=name)

    def expected_trainable(self, arch: Any, options: PromptTuningOptions) -> int:
        """Closed form: ``num_virtual_tokens * hidden`` (head excluded).

        ``arch`` is a ``tunekit.methods.architecture.ArchInfo``; a model or config with a ``hidden_size``-like field works too.
        """
        if isinstance(arch, architecture.ArchInfo):
            return options.num_virtual_tokens * arch.hidden
        cfg = getattr(arch, "config", arch)
        for key in ("embedding_size", "hidden_size", "n_embd", "d_model", "dim"):
            width = getattr(cfg, key, None)
            if isinstance(width, int):
                return options.num_virtual_tokens * width
        raise MethodError("the model config names no embedding width (hidden_size, n_embd, ...); count the model instead.")

    def load(self, model: nn.Module, folder: str | Path) -> PromptTuningApplied:
        """Re-apply prompt tuning as saved in ``folder`` (tunekit's files, or PEFT's) and load the prompt and head."""
        if adapter_files.read_config(folder).get("peft_type") == "PROMPT_TUNING":
            return self._load_peft(model, folder)
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)  # type: ignore[return-value]

    def _load_peft(self, model: nn.Module, folder: str | Path) -> PromptTuningApplied:
        """A PEFT prompt-tuning folder: its first ``num_virtual_tokens`` rows of ``prompt_embeddings`` are the
        prompt (for seq2seq PEFT stores a second, unused set for the decoder)."""
        config = adapter_files.read_config(folder)
        where = str(Path(folder) / adapter_files.CONFIG_NAME)
        n, keep = config.get("num_virtual_tokens"), config.get("modules_to_save") or []
        if not isinstance(n, int) or n < 1 or not isinstance(keep, list):
            raise CheckpointError(f"{where!r} needs a positive num_virtual_tokens and a list modules_to_save; fix the file.")
        tensors = adapter_files.read_tensors(folder)
        prompt = tensors.pop("prompt_embeddings", None)
        if prompt is None or prompt.dim() != 2 or prompt.shape[0] < n:
            raise CheckpointError(f"{where!r}: the weights hold no prompt_embeddings of {n} rows; re-save the adapter with PEFT.")
        applied = self.apply(model, PromptTuningOptions(num_virtual_tokens=n), present_modules(model, keep))
        params = {f"{applied.prompt_name}.weight": applied.prompt.weight}
        params.update({"base_model.model." + name: p for name, p in model.named_parameters()
                       if p.requires_grad and not name.startswith(applied.prompt_name + ".")})
        tensors = {k.replace(".modules_to_save.", ".").replace(".original_module.", "."): v for k, v in tensors.items()}
        tensors[f"{applied.prompt_name}.weight"] = prompt[:n]
        load_into(params, tensors, folder)
        return applied
