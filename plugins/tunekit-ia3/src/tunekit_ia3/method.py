"""IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning"): three learned vectors per transformer block rescale the attention keys, the attention
values and the feed-forward intermediate activations. The vectors start at one, so the adapted model
is the base model until training moves them, and each folds exactly into the projection it scales.

Parameters per block: ``d_k + d_v + d_ff`` (``d_k = d_v`` = key/value width, ``kv_heads * head_dim``
for grouped-query attention; ``d_ff`` = feed-forward intermediate width).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunekit.errors import CheckpointError, MethodError
from tunekit.options import check, option
from tunekit_ia3.layers import IA3Scaled, Side, weight_layout

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class _Layout:
    """Where IA3 goes in one architecture family (module-name patterns, see ``matches``)."""

    keys_values: tuple[str, ...]
    feedforward: tuple[str, ...]
    fused_qkv: tuple[str, ...] = ()


# The module names IA3 targets by default, by ``config.model_type``. Written out per family because
# the feed-forward down projection has no common name (BERT's is ``layer.N.output.dense``, which must
# not be confused with the attention output ``layer.N.attention.output.dense``).
_BERT_LIKE = _Layout(("attention.self.key", "attention.self.value"), (r".*layer\.\d+\.output\.dense",))
_LLAMA_LIKE = _Layout(("self_attn.k_proj", "self_attn.v_proj"), ("mlp.down_proj",))
DEFAULT_LAYOUTS: dict[str, _Layout] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), _BERT_LIKE),
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"), _LLAMA_LIKE),
    "distilbert": _Layout(("attention.k_lin", "attention.v_lin"), ("ffn.lin2",)),
    "gpt2": _Layout((), ("mlp.c_proj",), fused_qkv=("attn.c_attn",)),
}


@dataclass
class IA3Options:
    """Options of the ``ia3`` method (``--set method.NAME=VALUE``)."""

    key_value_modules: list[str] = option(
        [], "Projections whose outputs IA3 rescales (keys and values); name, dotted suffix or regex. Default: per architecture."
    )
    feedforward_modules: list[str] = option(
        [], "Feed-forward down projections whose inputs IA3 rescales. Default: per architecture."
    )
    fused_qkv_modules: list[str] = option(
        [], "Fused query/key/value projections (GPT-2 c_attn); only the key and value thirds are rescaled."
    )

    def validate(self) -> None:
        for key in ("key_value_modules", "feedforward_modules", "fused_qkv_modules"):
            for pattern in getattr(self, key):
                try:
                    re.compile(pattern)
                except re.error:
                    check(False, f"method.{key}: {pattern!r} is not a valid pattern; use a module name or a regex.")

    @property
    def uses_defaults(self) -> bool:
        return not (self.key_value_modules or self.feedforward_modules or self.fused_qkv_modules)


def matches(name: str, pattern: str) -> bool:
    """A module ``name`` matches a pattern equal to it, a dotted suffix of it, or a regex matching all of it."""
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _model_config(model_or_config: Any) -> Any:
    return getattr(model_or_config, "config", model_or_config)


def _layout(model: nn.Module, options: IA3Options) -> _Layout:
    if not options.uses_defaults:
        return _Layout(
            tuple(options.key_value_modules), tuple(options.feedforward_modules), tuple(options.fused_qkv_modules)
        )
    model_type = getattr(_model_config(model), "model_type", None)
    layout = DEFAULT_LAYOUTS.get(str(model_type))
    if layout is None:
        raise MethodError(
            f"IA3 has no default targets for model type {model_type!r}; set method.key_value_modules and "
            "method.feedforward_modules to the key/value and feed-forward down projection names."
        )
    return layout


@dataclass(frozen=True)
class Target:
    """One projection IA3 wraps: which side it scales, how many features, from which offset."""

    name: str
    side: Side
    size: int
    offset: int = 0


def find_targets(model: nn.Module, options: IA3Options) -> list[Target]:
    """The projections IA3 wraps in ``model`` (raises MethodError when a pattern matches nothing)."""
    layout = _layout(model, options)
    groups: list[tuple[str, tuple[str, ...]]] = [
        ("kv", layout.keys_values), ("ff", layout.feedforward), ("fused", layout.fused_qkv)
    ]
    targets: list[Target] = []
    taken: set[str] = set()
    for kind, patterns in groups:
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


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


class IA3Applied:
    """IA3 applied to one model: save, merge and unmerge its vectors."""

    def __init__(self, model: nn.Module, options: IA3Options, targets: list[Target], keep: list[str]) -> None:
        self.model = model
        self.options = options
        self.targets = targets
        self.keep_trainable = keep
        self.injected = [t.name for t in targets] + keep
        self.new_parameters = [f"{t.name}.ia3_l" for t in targets]

    def wrappers(self) -> dict[str, IA3Scaled]:
        return {t.name: self.model.get_submodule(t.name) for t in self.targets}  # type: ignore[misc]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The IA3 vectors plus every parameter of the kept-trainable head modules."""
        state = {f"{n}.ia3_l": w.ia3_l.detach().clone() for n, w in self.wrappers().items()}
        for head in self.keep_trainable:
            for pname, p in self.model.get_submodule(head).named_parameters():
                state[f"{head}.{pname}"] = p.detach().clone().contiguous()
        return state

    def save(self, folder: str | Path) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        config = {
            "method": "ia3",
            "options": dataclasses.asdict(self.options),
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "keep_trainable": self.keep_trainable,
            "model_type": getattr(_model_config(self.model), "model_type", None),
        }
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_file(self.trainable_state_dict(), str(out / WEIGHTS_FILE), metadata={"format": "pt", "method": "ia3"})

    def merge(self) -> None:
        for wrapper in self.wrappers().values():
            wrapper.merge()

    def unmerge(self) -> None:
        for wrapper in self.wrappers().values():
            wrapper.unmerge()


class IA3:
    """The ``ia3`` method (follows ``tunekit.method.Method``)."""

    name = "ia3"
    description = "IA3: learned vectors rescale attention keys, values and feed-forward activations (mergeable)."
    options_class = IA3Options

    def apply(self, model: nn.Module, options: IA3Options, keep_trainable: Sequence[str] = ()) -> IA3Applied:
        """Freeze ``model``, wrap the key/value and feed-forward projections, keep the head trainable."""
        targets = find_targets(model, options)
        keep = list(keep_trainable)
        heads = []
        for head in keep:  # checked before the model is touched
            try:
                heads.append(model.get_submodule(head))
            except AttributeError:
                raise MethodError(f"the module {head!r} to keep trainable does not exist in this model; check the task head name.") from None
        for p in model.parameters():
            p.requires_grad_(False)
        for t in targets:
            _set_module(model, t.name, IA3Scaled(model.get_submodule(t.name), t.side, t.size, t.offset))
        for module in heads:
            for p in module.parameters():
                p.requires_grad_(True)
        return IA3Applied(model, options, targets, keep)

    def expected_trainable(self, arch: Any, options: IA3Options) -> int:
        """Closed form from the model config alone: ``layers * (2 * kv_width + ffn_width)`` for the default targets."""
        if not options.uses_defaults:
            raise MethodError("the closed-form IA3 count is known for the default targets only; count the model instead.")
        cfg = _model_config(arch)
        model_type = getattr(cfg, "model_type", None)
        if model_type not in DEFAULT_LAYOUTS:
            raise MethodError(f"IA3 has no default targets for model type {model_type!r}; set the target options.")
        layers = _first(cfg, "num_hidden_layers", "n_layer", "n_layers")
        hidden = _first(cfg, "hidden_size", "n_embd", "dim")
        ffn = _first(cfg, "intermediate_size", "n_inner", "hidden_dim", default=None) or 4 * hidden
        heads = _first(cfg, "num_attention_heads", "n_head", "n_heads")
        kv_heads = _first(cfg, "num_key_value_heads", default=None) or heads
        head_dim = _first(cfg, "head_dim", default=None) or hidden // heads
        return layers * (2 * kv_heads * head_dim + ffn)

    def load(self, model: nn.Module, folder: str | Path) -> IA3Applied:
        """Re-apply IA3 as saved in ``folder`` and load its vectors (and the head)."""
        src = Path(folder)
        if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{str(src)!r} holds no IA3 adapter ({CONFIG_FILE} + {WEIGHTS_FILE}); pass the folder `save` wrote.")
        saved = json.loads((src / CONFIG_FILE).read_text(encoding="utf-8"))
        if saved.get("method") != "ia3":
            raise CheckpointError(f"{str(src)!r} holds a {saved.get('method')!r} adapter, not IA3; load it with that method.")
        from tunekit.options import build

        options = build(IA3Options, saved.get("options", {}), where="method")
        applied = self.apply(model, options, saved.get("keep_trainable", []))
        expected = [Target(**t) for t in saved.get("targets", [])]
        if expected != applied.targets:
            raise CheckpointError(
                f"the IA3 adapter in {str(src)!r} was made for a different model layout; load it into the model it was trained on."
            )
        state = load_file(str(src / WEIGHTS_FILE))
        params = dict(model.named_parameters())
        missing = [k for k in state if k not in params]
        if missing:
            raise CheckpointError(f"the IA3 adapter in {str(src)!r} has weights for {missing[0]!r}, which this model lacks; load it into the model it was trained on.")
        with torch.no_grad():
            for key, tensor in state.items():
                if params[key].shape != tensor.shape:
                    raise CheckpointError(
                        f"{key!r} in {str(src)!r} has shape {tuple(tensor.shape)} but the model expects "
                        f"{tuple(params[key].shape)}; load it into the model it was trained on."
                    )
                params[key].copy_(tensor.to(params[key].dtype))
        return applied


def _first(cfg: Any, *names: str, default: Any = ...) -> Any:
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return int(value)
    if default is ...:
        raise MethodError(f"the model config lacks {names[0]!r}; IA3 cannot count its parameters.")
    return default
