"""Model sources (aliases, folders, hub ids) and quantized loading back ends.

A *model source* plugin turns an alias into something ``from_pretrained`` can open. A *quantizer*
plugin turns a request such as ``--quantize int8`` into ``from_pretrained`` keyword arguments.
Names that no source registered are taken as a local folder, then as a Hugging Face hub id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tunekit.errors import UsageError
from tunekit.protocols import OptionalAttr


@dataclass
class ResolvedModel:
    """Where to load a model from, and the extra ``from_pretrained`` keyword arguments it needs."""

    path: str
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    local: bool = True


@runtime_checkable
class ModelSource(Protocol):
    name: str
    description: str

    def resolve(self, cache_dir: Path) -> ResolvedModel:
        """Return a loadable location (converting or unpacking into ``cache_dir`` if needed)."""


QUANTIZER_OPTIONAL: dict[str, OptionalAttr] = {
    "options_class": OptionalAttr(None, "a dataclass of the quantizer's options, set with `model.quantize_options`; "
                                  "the runner then calls `load_kwargs(skip_modules, options)`; absent means the "
                                  "quantizer takes no options and gets `load_kwargs(skip_modules)`"),
    "after_load": OptionalAttr(None, "`after_load(model)`: adjust the model just loaded with these keyword arguments "
                               "(e.g. switch off a kernel that cannot train)", callable=True),
}
"""Optional attributes of a ``Quantizer``: name -> default and meaning (the one declaration of them)."""


@runtime_checkable
class Quantizer(Protocol):
    name: str
    description: str

    def load_kwargs(self, skip_modules: Sequence[str]) -> dict[str, Any]:
        """``from_pretrained`` keyword arguments that load the base quantized.

        ``skip_modules`` must stay in full precision: the task's ``head_modules`` (its fresh head and the
        pretrained modules it trains, e.g. ``pooler``; a leaf name means that module and everything beneath
        it) and the method's ``float_modules`` (regexes over full module names). A quantizer with an
        ``options_class`` (``QUANTIZER_OPTIONAL``) takes the parsed options as a second argument.
        """


def cache_dir() -> Path:
    """tunekit's cache folder (``TUNEKIT_CACHE``, else ``$XDG_CACHE_HOME/tunekit``, else ``~/.cache/tunekit``)."""
    if os.environ.get("TUNEKIT_CACHE"):
        return Path(os.environ["TUNEKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tunekit"


def resolve_model(name: str) -> ResolvedModel:
    """Resolve a model alias, local folder or hub id."""
    from tunekit.plugins import registries

    sources = registries().model_sources
    if name in sources:
        return sources.get(name).resolve(cache_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"model folder {str(path)!r} has no config.json; point --model at a Hugging Face model folder "
                f"or use an alias ({', '.join(sources.names())})."
            )
        return ResolvedModel(str(path))
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise UsageError(sources.unknown_message(name).replace("; known", ", and no such folder exists; known", 1))
    return ResolvedModel(name, local=False)


def save_plain_folder(model: Any, tokenizer: Any, target: Path) -> bool:
    """Write ``model`` and ``tokenizer`` as an ordinary transformers folder at ``target``, atomically.

    Any quantizer marker is dropped first: callers only pass models whose weights are plain float
    tensors (dequantized GGUF, or a merged float model), and the marker would make ``save_pretrained``
    refuse. The folder appears complete or not at all; an empty folder at ``target`` is replaced.
    Returns False, writing nothing, when another process created ``target`` meanwhile.
    """
    from tunekit import files

    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        with files.staged_folder(target) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except files.FolderExistsError:
        return False
    return True
