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
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import Cache, DynamicCache

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

    def per_layer(self, batch: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(key, value) per layer, each ``[batch, kv_heads, tokens, head_dim]``."""
        flat = self.dropout(self.flat()).to(dtype)
        kv = flat.view(self.tokens, self.layers * 2, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)
        kv = kv.unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(self.layers)]


class PrefixInjector:
    """The forward pre-hook (``with_kwargs=True``) that adds the prefixes to every call of the model."""

    def __init__(self, encoder: PrefixEncoder) -> None:
        self.encoder = encoder

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        if args:  # positional inputs: bind them to their names so everything below is by name
            kwargs = dict(inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments)
            extra = kwargs.pop("kwargs", None)
            kwargs.update(extra or {})
            args = ()
        source = kwargs.get("input_ids")
        if source is None:
            source = kwargs.get("inputs_embeds")
        if source is None:
            return args, kwargs
        batch, length = source.shape[0], source.shape[1]
        n = self.encoder.tokens
        slot = cache_keyword(module, kwargs)
        cache = kwargs.get(slot)
        if cache is None or (isinstance(cache, Cache) and cache.get_seq_length() == 0):
            cache = cache if isinstance(cache, Cache) else DynamicCache()
            dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
            for layer, (key, value) in enumerate(self.encoder.per_layer(batch, dtype)):
                cache.update(key, value, layer)
            kwargs[slot] = cache
        past = cache.get_seq_length()
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[1] + n == past + length:
            ones = torch.ones(batch, n, dtype=mask.dtype, device=mask.device)
            kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + n
        return args, kwargs
