"""The soft prompt: ``n`` trainable embedding vectors placed in front of every input sequence.

The vectors enter at the transformer backbone (``model.base_model``), not the task model, so that the
head, the loss and ``generate`` all keep seeing sequences of the caller's length:

- before the backbone runs, the token embeddings get the prompt prepended, and the attention mask,
  ``token_type_ids`` and ``position_ids`` grow by ``n`` positions to match;
- after it runs, the ``n`` prompt positions are cut off ``last_hidden_state`` (and ``hidden_states``)
  again, so logits line up with the caller's labels and a sequence head that pools the first
  position still sees position 0 of the full sequence (the first prompt vector, which attends to all).

During cached generation the prompt sits in the key/value cache after the first call; later calls
only shift positions and widen the attention mask by ``n``.

Encoder-decoder models (T5, BART): the prompt goes in front of the *encoder's* input (as PEFT does for
``SEQ_2_SEQ_LM``) and stays in the encoder output, so the decoder's cross-attention reads it; a second
hook on the decoder widens the cross-attention mask (``encoder_attention_mask``) by ``n`` to match.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from tunekit.errors import MethodError
from tunekit.methods.architecture import cache_keyword

_POSITION_LIMITS = ("max_position_embeddings", "n_positions")


class SoftPrompt(nn.Module):
    """``weight``: the ``[num_virtual_tokens, hidden]`` prompt embeddings; hooks into one backbone."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(init.detach().clone())
        self._strip = False
        self._handles: list[Any] = []
        self._params: list[str] = []

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.weight.shape[0])

    def attach(self, backbone: nn.Module, embeddings: nn.Module, decoder: nn.Module | None = None) -> None:
        """Hook into ``backbone`` (its forward must accept ``inputs_embeds`` and ``attention_mask``).

        With a ``decoder`` (encoder-decoder models; ``backbone`` is then the encoder) the prompt positions
        stay in the encoder output and the decoder's cross-attention mask is widened to match.
        """
        params = list(inspect.signature(backbone.forward).parameters)
        if "inputs_embeds" not in params or "attention_mask" not in params:
            raise MethodError(
                f"prompt tuning needs a backbone that accepts inputs_embeds and attention_mask, and "
                f"{type(backbone).__name__} does not; choose another method for this model."
            )
        self._params = params
        self._embeddings = [embeddings]  # a list keeps it out of this module's children (no double state)
        self._limit = next((getattr(backbone.config, k) for k in _POSITION_LIMITS
                            if isinstance(getattr(getattr(backbone, "config", None), k, None), int)), None)
        self._handles = [backbone.register_forward_pre_hook(self._before, with_kwargs=True)]
        if decoder is None:
            self._handles.append(backbone.register_forward_hook(self._after, with_kwargs=True))
        else:
            self._handles.append(decoder.register_forward_pre_hook(self._widen_cross_mask, with_kwargs=True))

    def _widen_cross_mask(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        states, mask = kwargs.get("encoder_hidden_states"), kwargs.get("encoder_attention_mask")
        if states is not None and isinstance(mask, torch.Tensor) and mask.dim() == 2 \
                and mask.shape[1] + self.num_virtual_tokens == states.shape[1]:
            kwargs = {**kwargs, "encoder_attention_mask": torch.cat(
                [mask.new_ones(mask.shape[0], self.num_virtual_tokens), mask], dim=1)}
        return args, kwargs

    def _before(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        kwargs = dict(kwargs)
        for name, value in zip(self._params, args, strict=False):  # positional arguments become keywords
            kwargs[name] = value
        n = self.num_virtual_tokens
        cache = kwargs.get(cache_keyword(module, kwargs))
        first = cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0)
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() != 2:
            raise MethodError("prompt tuning needs a 2-D attention mask (batch, tokens); pass the tokenizer's mask.")
        position_ids = kwargs.get("position_ids")

        if not first:  # the prompt is already in the cache: widen the mask and shift the positions
            if mask is not None:
                kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)
            if position_ids is not None:
                kwargs["position_ids"] = position_ids + n
            self._strip = False
            return (), kwargs

        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            ids = kwargs.get("input_ids")
            if ids is None:
                raise MethodError("prompt tuning needs input_ids or inputs_embeds; pass one of them to the model.")
            embeds = self._embeddings[0](ids)
        batch, length = embeds.shape[0], embeds.shape[1]
        if self._limit is not None and n + length > self._limit:
            raise MethodError(
                f"{n} prompt tokens plus {length} input tokens exceed the model's {self._limit} positions; "
                "truncate the inputs (task.max_length) or use fewer method.num_virtual_tokens."
            )
        prompt = self.weight.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        kwargs["input_ids"] = None
        kwargs["inputs_embeds"] = torch.cat([prompt, embeds], dim=1)
        if mask is not None:
            kwargs["attention_mask"] = torch.cat([mask.new_ones(batch, n), mask], dim=1)
        token_types = kwargs.get("token_type_ids")
        if token_types is not None:
            kwargs["token_type_ids"] = torch.cat([token_types.new_zeros(batch, n), token_types], dim=1)
        if position_ids is not None:
            head = torch.arange(n, device=position_ids.device, dtype=position_ids.dtype)
            head = head.expand(*position_ids.shape[:-1], n)
            kwargs["position_ids"] = torch.cat([head, position_ids + n], dim=-1)
        self._strip = True
        return (), kwargs

    def _after(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        if not self._strip:
            return output
        self._strip = False
        n = self.num_virtual_tokens
        if isinstance(output, tuple):
            return (output[0][:, n:], *output[1:])
        output.last_hidden_state = output.last_hidden_state[:, n:]
        hidden = getattr(output, "hidden_states", None)
        if hidden is not None:
            output.hidden_states = tuple(h[:, n:] for h in hidden)
        return output

    def extra_repr(self) -> str:
        return f"num_virtual_tokens={self.num_virtual_tokens}, hidden={self.weight.shape[1]}"
