"""The prefixes and the forward hook that hands them to the model as a key/value cache.

Prefixes are one tensor ``[num_virtual_tokens, layers * 2 * kv_heads * head_dim]`` (per token: layer,
key/value, head, dim: PEFT's ``prompt_embeddings`` layout). Keys and values have the *kv-head* count,
so grouped-query attention (Llama with fewer kv heads) works.

Injection: a forward pre-hook on the top-level model puts the prefixes into a ``transformers``
``DynamicCache`` passed as the model's cache argument (``cache`` from transformers 5.24, ``past_key_values``
before) (an empty cache that ``generate`` created is filled in
place, so generation continues from it), prepends ones for the prefix to a 2-D attention mask, and
shifts explicit ``position_ids`` by ``num_virtual_tokens``. The model then offsets its positions by
the cache length, as it does for any past. This mirrors what PEFT feeds the model, so adapters behave
identically in both.

Encoder-decoder models (T5, BART) get PEFT's ``SEQ_2_SEQ_LM`` layout: the prefixes go into the decoder's
self-attention cache (an ``EncoderDecoderCache``), ``decoder_attention_mask`` grows by the prefix, and the
encoder and the cross-attention see none (PEFT builds cross-attention prefixes too, then clears them
before the model runs). PEFT also hands decoder layer ``i`` the prefix slot ``2 * i mod layers``
(its legacy-cache split); ``slot_of`` reproduces that so files load with identical outputs in both.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import Cache, DynamicCache, EncoderDecoderCache

from tunekit.methods.architecture import cache_keyword


class PrefixEncoder(nn.Module):
    """Trainable prefixes, optionally produced by a small MLP (reparameterisation)."""

    def __init__(self, tokens: int, layers: int, kv_heads: int, head_dim: int, hidden: int,
                 projection: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.tokens, self.layers, self.kv_heads, self.head_dim = tokens, layers, kv_heads, head_dim
        width = layers * 2 * kv_heads * head_dim
        self.dropout = nn.Dropout(dropout)
        if projection:
            self.embedding = nn.Parameter(torch.randn(tokens, hidden))
            self.mlp = nn.Sequential(nn.Linear(hidden, projection), nn.Tanh(), nn.Linear(projection, width))
        else:
            self.prefix = nn.Parameter(torch.randn(tokens, width))

    @property
    def projected(self) -> bool:
        return hasattr(self, "mlp")

    def flat(self) -> torch.Tensor:
        """``[tokens, layers * 2 * kv_dim]`` prefixes (through the MLP when there is one)."""
        return self.mlp(self.embedding) if self.projected else self.prefix

    def per_layer(self, batch: int, dtype: torch.dtype, seq2seq: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(key, value) per layer, each ``[batch, kv_heads, tokens, head_dim]`` (``seq2seq``: PEFT's slots)."""
        flat = self.dropout(self.flat()).to(dtype)
        kv = flat.view(self.tokens, self.layers * 2, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)
        kv = kv.unsqueeze(1).expand(-1, batch, -1, -1, -1)
        slots = [slot_of(i, self.layers) if seq2seq else i for i in range(self.layers)]
        return [(kv[2 * s], kv[2 * s + 1]) for s in slots]


def slot_of(layer: int, layers: int) -> int:
    """The prefix slot PEFT gives decoder ``layer`` of an encoder-decoder model (``2 * layer mod layers``)."""
    return (2 * layer) % layers


def _bind(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Positional inputs bound to their names, so everything in the hooks is by name."""
    if not args:
        return kwargs
    bound = dict(inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments)
    bound.update(bound.pop("kwargs", None) or {})
    return bound


def _first(kwargs: dict[str, Any], *names: str) -> Any:
    return next((kwargs[n] for n in names if kwargs.get(n) is not None), None)


class PrefixInjector:
    """The forward pre-hook (``with_kwargs=True``) that adds the prefixes to every call of the model."""

    def __init__(self, encoder: PrefixEncoder, seq2seq: bool = False) -> None:
        self.encoder = encoder
        self.seq2seq = seq2seq

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        kwargs = _bind(module, args, kwargs)
        if self.seq2seq:
            return (), self._seq2seq(module, kwargs)
        source = _first(kwargs, "input_ids", "inputs_embeds")
        if source is None:
            return (), kwargs
        batch, length = source.shape[0], source.shape[1]
        n = self.encoder.tokens
        slot = cache_keyword(module, kwargs)
        cache = kwargs.get(slot)
        if cache is None or (isinstance(cache, Cache) and cache.get_seq_length() == 0):
            cache = cache if isinstance(cache, Cache) else DynamicCache()
            self._fill(module, cache, batch)
            kwargs[slot] = cache
        past = cache.get_seq_length()
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[1] + n == past + length:
            ones = torch.ones(batch, n, dtype=mask.dtype, device=mask.device)
            kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + n
        return (), kwargs

    def _fill(self, module: nn.Module, cache: Any, batch: int) -> None:
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
        for layer, (key, value) in enumerate(self.encoder.per_layer(batch, dtype, self.seq2seq)):
            cache.update(key, value, layer)

    def _seq2seq(self, module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Prefixes in the decoder's self-attention cache; the decoder mask grows by the prefix."""
        target = _first(kwargs, "decoder_input_ids", "decoder_inputs_embeds", "labels")
        source = _first(kwargs, "input_ids", "inputs_embeds")
        if source is None and kwargs.get("encoder_outputs") is not None:
            source = kwargs["encoder_outputs"][0]
        if source is None and target is None:
            return kwargs
        batch = (source if source is not None else target).shape[0]
        slot = cache_keyword(module, kwargs)
        cache = kwargs.get(slot)
        if cache is None or (isinstance(cache, Cache) and cache.get_seq_length() == 0):
            if not isinstance(cache, EncoderDecoderCache):
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            self._fill(module, cache.self_attention_cache, batch)
            kwargs[slot] = cache
        mask = kwargs.get("decoder_attention_mask")
        n, past = self.encoder.tokens, cache.get_seq_length()
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and target is not None \
                and mask.shape[1] + n == past + target.shape[1]:
            kwargs["decoder_attention_mask"] = torch.cat([mask.new_ones(batch, n), mask], dim=1)
        return kwargs
