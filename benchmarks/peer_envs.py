"""Virtual environments for peers whose pins conflict with tunekit's, created on first use outside the repo.

AdapterHub ``adapters`` 1.3.0 (the newest release) requires ``transformers ~= 4.57.6`` while tunekit runs on
transformers 5, so it gets its own venv under ``../peer-venvs/adapters`` (``TUNEKIT_PEER_VENVS`` moves it),
built with ``python -m venv`` + pip, with the same torch build as the main venv.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness import PEER_VENVS, log

ADAPTERS_PIN = "adapters==1.3.0"
STAMP = ".tunekit-bench-ready"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _describe(python: Path) -> str:
    code = ("import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
            "('adapters', 'transformers', 'torch')))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def adapters_python() -> tuple[str | None, str]:
    """(python of the adapters venv, what is in it) or (None, why it could not be made)."""
    venv = PEER_VENVS / "adapters"
    python = _python(venv)
    if not (venv / STAMP).is_file():
        log(f"  creating the AdapterHub venv in {venv} (once) ...")
        try:
            torch_pin = f"torch=={metadata.version('torch').split('+')[0]}"
        except metadata.PackageNotFoundError:
            torch_pin = "torch"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", torch_pin, ADAPTERS_PIN, "accelerate"],
        ]
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=30 * 60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"`{' '.join(cmd[-4:])}` failed: {exc}"
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                return None, f"`pip install {ADAPTERS_PIN}` into {venv} failed: {tail}"
        (venv / STAMP).write_text("ok\n", encoding="utf-8")
    if not python.is_file():
        return None, f"{python} is missing; delete {venv} and rerun to rebuild it"
    return str(python), _describe(python)
