"""The prefixes and the hooks that hand them to the model's attention as a key/value cache.

Prefixes are one tensor ``[num_virtual_tokens, slots * 2 * kv_heads * head_dim]`` (per token: slot,
key/value, head, dim: PEFT's ``prompt_embeddings`` layout). A slot is one attention layer's prefix; one-stack
models have one slot per layer. Keys and values have the *kv-head* count, so grouped-query attention
(Llama with fewer kv heads) works.

Self-attention of the model's (top) stack: a forward pre-hook on the top-level model (``PrefixInjector``)
puts the prefixes into a ``transformers`` ``DynamicCache`` passed as the model's cache argument (``cache``
from transformers 5.24, ``past_key_values`` before) (an empty cache that ``generate`` created is filled in
place, so generation continues from it), prepends ones for the prefix to a 2-D attention mask, and
shifts explicit ``position_ids`` by ``num_virtual_tokens``. The model then offsets its positions by
the cache length, as it does for any past. This mirrors what PEFT feeds the model, so adapters behave
identically in both.

Encoder-decoder models (T5, BART) can take prefixes in three kinds of attention (``KINDS``, the slot order):

- ``decoder`` self-attention, PEFT's ``SEQ_2_SEQ_LM`` layout: the prefixes go into the decoder's
  self-attention cache (an ``EncoderDecoderCache``) and ``decoder_attention_mask`` grows by the prefix. PEFT
  hands decoder layer ``i`` the prefix slot ``2 * i mod layers`` (its legacy-cache split); ``slot_of``
  reproduces that so files load with identical outputs in both.
- ``encoder`` self-attention and ``cross`` (decoder cross-) attention, which PEFT does not prefix (it builds
  cross-attention prefixes, then clears them before the model runs): a forward pre-hook on each of those
  attention modules (``AttentionPrefix``) hands it a cache holding its slot's prefix, so the module prepends
  the prefix to the keys and values it projects, and widens the module's attention mask by the prefix.
  Encoder self-attention gets a fresh ``DynamicCache`` per call (the encoder stack passes none). Cross-attention
  prefixes go into the layer's cross-attention cache before the module first fills it with the encoder's keys
  and values, so cached decoding reuses prefix and encoder keys together; without a cache (``use_cache``
  off) the module gets a fresh one per call. T5 reads the cache length as past positions, so its relative
  position bias sees the real tokens where it would without a prefix.

transformers' attention modules take a cache argument for exactly this (appending keys and values) and have
no other way in for extra keys; the hooks only use that argument and the mask (why no library call does it).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Cache, DynamicCache, EncoderDecoderCache

from tunekit.errors import MethodError
from tunekit.methods.architecture import cache_keyword

KINDS = ("decoder", "encoder", "cross")
"""The attention kinds of an encoder-decoder model that can take prefixes, in slot order."""


class PrefixEncoder(nn.Module):
    """Trainable prefixes for ``layers`` slots, optionally produced by a small MLP (reparameterisation)."""

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
        """``[tokens, slots * 2 * kv_dim]`` prefixes (through the MLP when there is one)."""
        return self.mlp(self.embedding) if self.projected else self.prefix

    def _columns(self, first: int, count: int) -> torch.Tensor:
        """``[tokens, count * 2 * kv_dim]``: the prefixes of slots ``first .. first + count - 1`` (only those
        columns of the MLP's last layer are computed)."""
        step = 2 * self.kv_heads * self.head_dim
        lo, hi = first * step, (first + count) * step
        if not self.projected:
            return self.prefix[:, lo:hi]
        last = self.mlp[2]
        return F.linear(self.mlp[1](self.mlp[0](self.embedding)), last.weight[lo:hi], last.bias[lo:hi])

    def key_values(self, first: int, count: int, batch: int, dtype: torch.dtype, heads: int | None = None,
                   order: list[int] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(key, value) of slots ``first + s`` for ``s`` in ``order`` (default ``0 .. count - 1``), each
        ``[batch, heads, tokens, kv_dim / heads]`` (``heads``: the kv heads unless given)."""
        heads = heads or self.kv_heads
        flat = self.dropout(self._columns(first, count)).to(dtype)
        kv = flat.view(self.tokens, count * 2, heads, -1).permute(1, 2, 0, 3)
        kv = kv.unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(kv[2 * s], kv[2 * s + 1]) for s in (range(count) if order is None else order)]


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


def _live_cache(kwargs: dict[str, Any], slot: str) -> Any:
    """The cache passed in, or None when ``use_cache`` is off: the model then returns the prefix cache this hook
    made anyway, and ``generate(use_cache=False)`` hands it back with the whole sequence again."""
    return None if kwargs.get("use_cache") is False else kwargs.get(slot)


def _dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


class PrefixInjector:
    """The forward pre-hook (``with_kwargs=True``) on the top-level model that puts the first ``layers``
    slots into its (decoder's) self-attention cache on every call."""

    def __init__(self, encoder: PrefixEncoder, layers: int, seq2seq: bool = False) -> None:
        self.encoder = encoder
        self.layers = layers
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
        cache = _live_cache(kwargs, slot)
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
        order = [slot_of(i, self.layers) for i in range(self.layers)] if self.seq2seq else None
        for layer, (key, value) in enumerate(self.encoder.key_values(0, self.layers, batch, _dtype(module),
                                                                     order=order)):
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
        cache = _live_cache(kwargs, slot)
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


def widen_mask(mask: Any, n: int) -> Any:
    """``mask`` with ``n`` attended key positions in front (None stays None: every key is attended)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 4):
        raise MethodError(
            f"prefix tuning on encoder or cross-attention cannot extend a {type(mask).__name__} attention mask; "
            "load the model with attn_implementation='sdpa' or 'eager'."
        )
    fill = 0 if mask.is_floating_point() else 1  # additive float masks: 0 attends; boolean / 0-1 masks: 1 does
    return torch.cat([mask.new_full((*mask.shape[:-1], n), fill), mask], dim=-1)


class _OneLayerCache(DynamicCache):
    """A cache for one encoder self-attention call: the one layer it holds, whatever index the module asks for
    (mBART's encoder attention has ``layer_idx`` None)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: Any = 0, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return super().update(key_states, value_states, 0, *args, **kwargs)

    def get_seq_length(self, layer_idx: Any = 0) -> int:
        return super().get_seq_length(0)


class AttentionPrefix:
    """The forward pre-hook (``with_kwargs=True``) on one encoder self- or decoder cross-attention module:
    hands the module a cache holding prefix slot ``slot`` and widens its attention mask."""

    def __init__(self, encoder: PrefixEncoder, module: nn.Module, slot: int, cross: bool) -> None:
        params = inspect.signature(module.forward).parameters
        heads = getattr(module, "num_heads", None) or getattr(module, "n_heads", None)
        layer = getattr(module, "layer_idx", None)
        if not cross and layer is None:  # mBART's encoder layers have no index: the fresh cache answers any
            layer = 0
        if not isinstance(heads, int) or not isinstance(layer, int) or "key_value_states" not in params:
            raise MethodError(
                f"prefix tuning cannot prefix {type(module).__name__} (no head count, layer index or cross-attention "
                "input); set method.attention=[decoder] for this model."
            )
        self.encoder, self.slot, self.cross, self.heads, self.layer = encoder, slot, cross, heads, layer
        self.mask_keyword = "mask" if "mask" in params else "attention_mask"  # T5 says mask, BART attention_mask

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        kwargs = _bind(module, args, kwargs)
        keyword = cache_keyword(module, kwargs)
        cache = kwargs.get(keyword)
        batch = kwargs["hidden_states"].shape[0]
        if self.cross:
            if cache is None:  # no caching in this call: a cache of its own carries the prefix in
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            if not isinstance(cache, EncoderDecoderCache):
                raise MethodError("prefix tuning on cross-attention needs an encoder-decoder cache; pass none or an "
                                  "EncoderDecoderCache to the model.")
            if not cache.is_updated.get(self.layer) and cache.cross_attention_cache.get_seq_length(self.layer) == 0:
                self._fill(module, cache.cross_attention_cache, batch)
        else:  # the encoder stack passes no cache: a fresh one per call
            cache = _OneLayerCache()
            self._fill(module, cache, batch)
        kwargs[keyword] = cache
        kwargs[self.mask_keyword] = widen_mask(kwargs.get(self.mask_keyword), self.encoder.tokens)
        return (), kwargs

    def _fill(self, module: nn.Module, cache: Cache, batch: int) -> None:
        (key, value), = self.encoder.key_values(self.slot, 1, batch, _dtype(module), self.heads)
        cache.update(key, value, self.layer)
