"""What every export format shares: the run as one float model, optional packages, atomic output folders."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from tunekit import files
from tunekit.errors import MethodError, UsageError


def float_model(loaded: Any, dequantize: bool) -> tuple[Any, str]:
    """The run's model as a plain float transformers model, and what it is ("a merged model", ...).

    A method that merges is folded into the base weights; a method that trains in place (it only unfreezes
    modules) is the trained model itself. A run on a quantized base needs ``dequantize``: writing quantized
    weights back would lose the training.
    """
    from tunekit.methods.merge import dequantize_model, merged_float_model
    from tunekit.methods.protocol import trains_in_place
    from tunekit.plugins import registries

    if loaded.config.model.quantize and not dequantize:
        raise MethodError(
            f"run {str(loaded.folder)!r} was trained on a {loaded.config.model.quantize} base; a plain folder of "
            "quantized weights would lose the training, so pass --dequantize to write a float model instead."
        )
    method = registries().methods.get(loaded.config.method_name)
    if trains_in_place(method):  # nothing separate to merge: the trained model is the result
        return dequantize_model(loaded.model), "the trained model"
    return merged_float_model(loaded.model, loaded.applied), "a merged model"


def require(module: str, extra: str) -> ModuleType:
    """Import an optional package, or raise one UsageError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"this export format needs the {module!r} package, which is not installed; run `pip install 'tunekit[{extra}]'`."
        ) from None


def check_target(target: Path) -> None:
    """Refuse an output path that exists and is not an empty folder."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"export folder {str(target)!r} already exists and is not empty; choose a new --output.")


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block ends without an error.

    On an error (or Ctrl-C) the temporary folder is removed, so ``target`` is complete or absent.
    """
    check_target(target)
    try:
        with files.staged_folder(target) as tmp:
            yield tmp
    except files.FolderExistsError:
        raise UsageError(f"export folder {str(target)!r} was created by someone else meanwhile; choose a new "
                         "--output.") from None
