"""Old import paths of tunekit 0.1 that moved in the 0.2 layout; each stays importable until 1.0.

Instead of a stub file per old path, one import hook answers for all of them: ``import tunekit.method``
gives the very module ``tunekit.methods.protocol`` (same object, so attributes and monkeypatching agree)
and a DeprecationWarning naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "tunekit.method": "tunekit.methods.protocol",
    "tunekit.method_base": "tunekit.methods.surgery",
    "tunekit.arch": "tunekit.methods.architecture",
    "tunekit.adapter_files": "tunekit.methods.adapter_files",
    "tunekit.merge": "tunekit.methods.merge",
    "tunekit.task": "tunekit.tasks.protocol",
    "tunekit.taskkit": "tunekit.tasks.pieces",
    "tunekit.metrics": "tunekit.tasks.metrics",
    "tunekit.rows": "tunekit.tasks.rows",
    "tunekit.heldout": "tunekit.runs.heldout",
    "tunekit.runner": "tunekit.runs.runner",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names in :data:`MOVED` and loads each as its new module."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old path goes in tunekit 1.0).",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already imported."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
