"""The 0.1 import paths that moved in the 0.2 layout stay importable (same module, with a DeprecationWarning)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tunekit._moved import MOVED

# Every 0.1 path docs/plugins.md named (the documented-names test below) must be among these.
DOCUMENTED = {"tunekit.method", "tunekit.method_base", "tunekit.arch", "tunekit.adapter_files", "tunekit.merge",
              "tunekit.task", "tunekit.taskkit"}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_path_is_the_new_module_and_warns(old, new):
    code = (
        "import warnings, importlib\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print(w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        f"print(importlib.import_module({old!r}) is importlib.import_module({new!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [f"{old} moved to {new}; import it from there (the old path goes in tunekit 1.0).", "True"]


def test_every_documented_old_path_is_kept():
    assert DOCUMENTED <= set(MOVED)


def test_documented_names_resolve_through_old_paths():
    """What plugins written against 0.1 import (docs/plugins.md) is still there under the old names."""
    old = importlib.import_module("tunekit.method_base")
    assert hasattr(old, "AppliedMethod") and hasattr(old, "freeze_all")
    assert hasattr(importlib.import_module("tunekit.arch"), "arch_info")
    assert hasattr(importlib.import_module("tunekit.taskkit"), "load_with_head")
