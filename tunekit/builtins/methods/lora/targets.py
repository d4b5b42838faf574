"""Choosing LoRA's target layers: names / suffixes, a full-match regex, or ``all-linear``."""

from __future__ import annotations

import re
from typing import Any, Sequence

from torch import nn

from tunekit.errors import MethodError
from tunekit.methods import architecture
from tunekit.names import each_suffix, ends_with

ALL_LINEAR = "all-linear"
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "gpt2": ("c_attn",),
    "llama": ("q_proj", "v_proj"),
    "t5": ("q", "v"),  # every attention of both stacks: encoder self, decoder self and cross
    "bart": ("q_proj", "v_proj"),
}
"""LoRA's default ``target_modules`` per architecture family (``tunekit.methods.architecture`` names the family)."""
_REGEX_CHARS = set("\\^$.*+?()[]{}|")


def normalise(spec: list[str] | str | None, model: nn.Module) -> list[str] | str:
    """The user's ``target_modules`` as a name list, a regex string, or ``"all-linear"``.

    A string without regex characters is a comma-separated list of names (``"query,value"``), so the
    same value works from YAML and from ``--set``; any other string is a regex.
    """
    if spec is None:
        return defaults(architecture.family_of(model).name)
    if isinstance(spec, list) and spec == [ALL_LINEAR]:
        return ALL_LINEAR
    if isinstance(spec, str):
        if spec == ALL_LINEAR:
            return spec
        if not set(spec) & _REGEX_CHARS:
            return [s.strip() for s in spec.split(",") if s.strip()]
    return spec


def defaults(family: str) -> list[str]:
    """The default target names for ``family`` (MethodError for a family LoRA has no defaults for)."""
    if family not in DEFAULT_TARGETS:
        raise MethodError(f"lora has no default target_modules for the {family!r} family; set method.target_modules.")
    return list(DEFAULT_TARGETS[family])


def _examples(candidates: Sequence[str]) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in candidates})
    return ", ".join(leaves[:8]) or "none"


def resolve(model: nn.Module, spec: list[str] | str, exclude: Sequence[str] = ()) -> list[str]:
    """Qualified names of the linear layers ``spec`` selects (never inside ``exclude``, the task head)."""
    def outside(name: str) -> bool:
        return not any(name == e or name.startswith(e + ".") for e in exclude)

    if spec == ALL_LINEAR:
        chosen = [n for n in architecture.linear_modules(model, within_blocks=True) if outside(n)]
        if not chosen:
            raise MethodError("target_modules 'all-linear' found no linear layer in the transformer blocks; "
                              "name the target layers explicitly.")
        return chosen
    candidates = [n for n in architecture.linear_modules(model, within_blocks=False) if outside(n)]
    if isinstance(spec, str):
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise MethodError(f"target_modules regex {spec!r} is invalid ({exc}); fix the pattern.") from None
        chosen = [n for n in candidates if pattern.fullmatch(n)]
        if not chosen:
            raise MethodError(
                f"target_modules regex {spec!r} matches no linear layer (it must match the full name, e.g. "
                f"{candidates[0] if candidates else 'none'!r}); available layer names include {_examples(candidates)}."
            )
        return chosen
    chosen = each_suffix(candidates, spec, lambda target: MethodError(
        f"target_modules entry {target!r} matches no linear layer of {type(model).__name__}; "
        f"available names include {_examples(candidates)}."))
    return [n for n in candidates if n in chosen]


def peft_targets(model: nn.Module, chosen: Sequence[str], spec: Any, exclude: Sequence[str]) -> list[str] | str:
    """A ``target_modules`` value for PEFT's config that selects exactly ``chosen`` in PEFT too.

    Lists and regexes mean the same in PEFT; ``all-linear`` does not (PEFT also takes layers outside the
    blocks, e.g. BERT's pooler), so it is written as the leaf names when those select exactly the same
    layers, else as the full names.
    """
    if spec != ALL_LINEAR:
        return spec
    candidates = [n for n in architecture.linear_modules(model, within_blocks=False)
                  if not any(n == e or n.startswith(e + ".") for e in exclude)]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in chosen})
    if [n for n in candidates if any(ends_with(n, leaf) for leaf in leaves)] == list(chosen):
        return leaves
    return list(chosen)
