"""Prompt tuning (Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"):
the whole pretrained model stays frozen and only ``num_virtual_tokens`` input embedding vectors,
prepended to every sequence, are trained (plus the task head, when the task adds one).

Parameters: ``num_virtual_tokens * embedding_width``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunekit.errors import CheckpointError, MethodError
from tunekit.options import build, check, option
from tunekit_prompt_tuning.soft_prompt import SoftPrompt

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MODULE_NAME = "soft_prompt"


@dataclass
class PromptTuningOptions:
    """Options of the ``prompt-tuning`` method (``--set method.NAME=VALUE``)."""

    num_virtual_tokens: int = option(20, "Number of trainable prompt vectors prepended to every input.")
    init: Literal["vocab", "random"] = option(
        "vocab", "Start from the embeddings of randomly drawn vocabulary tokens (`vocab`) or from noise (`random`)."
    )
    seed: int = option(0, "Seed for drawing the initial prompt.")

    def validate(self) -> None:
        check(self.num_virtual_tokens > 0, f"method.num_virtual_tokens must be positive, not {self.num_virtual_tokens}.")


def _backbone(model: nn.Module) -> nn.Module:
    # transformers models name their backbone through `base_model` (the model itself for a bare backbone)
    return getattr(model, "base_model", model)


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


class PromptTuningApplied:
    """Prompt tuning applied to one model: save its prompt (and head); nothing to merge."""

    def __init__(self, model: nn.Module, prompt: SoftPrompt, options: PromptTuningOptions, keep: list[str]) -> None:
        self.model = model
        self.prompt = prompt
        self.options = options
        self.keep_trainable = keep
        name = next(n for n, m in model.named_modules() if m is prompt)
        self.injected = [name, *keep]
        self.new_parameters = [f"{name}.weight"]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The prompt (``prompt_embeddings``) and the parameters of the kept-trainable head modules."""
        state = {"prompt_embeddings": self.prompt.weight.detach().clone()}
        for head in self.keep_trainable:
            for pname, p in self.model.get_submodule(head).named_parameters():
                state[f"{head}.{pname}"] = p.detach().clone().contiguous()
        return state

    def save(self, folder: str | Path) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "method": "prompt-tuning",
            "options": dataclasses.asdict(self.options),
            "embedding_width": int(self.prompt.weight.shape[1]),
            "keep_trainable": self.keep_trainable,
        }
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_file(self.trainable_state_dict(), str(out / WEIGHTS_FILE),
                  metadata={"format": "pt", "method": "prompt-tuning"})

    def merge(self) -> None:
        raise MethodError("prompt tuning adds input vectors that cannot be folded into the weights; keep the adapter instead of merging.")

    def unmerge(self) -> None:
        raise MethodError("prompt tuning never merges, so there is nothing to unmerge; use the adapter as it is.")


class PromptTuning:
    """The ``prompt-tuning`` method (follows ``tunekit.method.Method``)."""

    name = "prompt-tuning"
    description = "Prompt tuning: trainable soft-prompt vectors prepended to the input; the model stays frozen."
    options_class = PromptTuningOptions

    def apply(self, model: nn.Module, options: PromptTuningOptions,
              keep_trainable: Sequence[str] = ()) -> PromptTuningApplied:
        """Freeze ``model``, add the soft prompt in front of its backbone's inputs, keep the head trainable."""
        emb = _embeddings(model)
        backbone = _backbone(model)
        if any(isinstance(m, SoftPrompt) for m in model.modules()):
            raise MethodError("this model already has a soft prompt; load a fresh model before applying prompt tuning again.")
        keep = list(keep_trainable)
        heads = []
        for head in keep:  # checked before the model is touched
            try:
                heads.append(model.get_submodule(head))
            except AttributeError:
                raise MethodError(f"the module {head!r} to keep trainable does not exist in this model; check the task head name.") from None
        for p in model.parameters():
            p.requires_grad_(False)
        prompt = SoftPrompt(_initial_prompt(emb, options))
        prompt.attach(backbone, emb)
        backbone.add_module(MODULE_NAME, prompt)
        for module in heads:
            for p in module.parameters():
                p.requires_grad_(True)
        return PromptTuningApplied(model, prompt, options, keep)

    def expected_trainable(self, arch: Any, options: PromptTuningOptions) -> int:
        """Closed form: ``num_virtual_tokens * embedding_width`` (head excluded)."""
        cfg = getattr(arch, "config", arch)
        for key in ("embedding_size", "hidden_size", "n_embd", "d_model", "dim"):
            width = getattr(cfg, key, None)
            if isinstance(width, int):
                return options.num_virtual_tokens * width
        raise MethodError("the model config names no embedding width (hidden_size, n_embd, ...); count the model instead.")

    def load(self, model: nn.Module, folder: str | Path) -> PromptTuningApplied:
        """Re-apply prompt tuning as saved in ``folder`` and load the prompt (and the head)."""
        src = Path(folder)
        if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{str(src)!r} holds no prompt-tuning adapter ({CONFIG_FILE} + {WEIGHTS_FILE}); pass the folder `save` wrote.")
        saved = json.loads((src / CONFIG_FILE).read_text(encoding="utf-8"))
        if saved.get("method") != "prompt-tuning":
            raise CheckpointError(f"{str(src)!r} holds a {saved.get('method')!r} adapter, not prompt tuning; load it with that method.")
        options = build(PromptTuningOptions, saved.get("options", {}), where="method")
        width = _embeddings(model).embedding_dim
        if saved.get("embedding_width") != width:
            raise CheckpointError(
                f"the prompt in {str(src)!r} has width {saved.get('embedding_width')} but this model embeds tokens "
                f"in {width}; load it into the model it was trained on."
            )
        applied = self.apply(model, options, saved.get("keep_trainable", []))
        state = load_file(str(src / WEIGHTS_FILE))
        targets = {"prompt_embeddings": applied.prompt.weight}
        params = dict(model.named_parameters())
        for key in state:
            if key != "prompt_embeddings":
                if key not in params:
                    raise CheckpointError(f"the adapter in {str(src)!r} has weights for {key!r}, which this model lacks; load it into the model it was trained on.")
                targets[key] = params[key]
        with torch.no_grad():
            for key, tensor in state.items():
                if targets[key].shape != tensor.shape:
                    raise CheckpointError(
                        f"{key!r} in {str(src)!r} has shape {tuple(tensor.shape)} but the model expects "
                        f"{tuple(targets[key].shape)}; load it into the model it was trained on."
                    )
                targets[key].copy_(tensor.to(targets[key].dtype))
        return applied
