"""Helpers of the bad-input tests: CLI results, a subprocess runner, and folder snapshots."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# What a failed run must never leave behind in its output folder.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_tunekit(*args: str, timeout: float = 300, **kwargs) -> CliResult:
    """``python -m tunekit ...`` in a subprocess (the honest check that no traceback escapes)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.pop("TUNEKIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def snapshot(folder: Path) -> dict[str, str] | None:
    """{relative path: content hash} of every file under ``folder`` (None when it does not exist)."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_clean_failure(result: CliResult, code: int, phrase: str) -> None:
    """Exit ``code``, exactly one ``error:`` line holding ``phrase`` (the last line), no traceback."""
    assert result.code == code, f"exit {result.code}, expected {code}; stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert phrase.lower() in result.error_lines[0].lower(), result.error_lines[0]
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last == result.error_lines[0], result.stderr
    assert "unexpected" not in result.error_lines[0], result.error_lines[0]


def assert_output_untouched(before: dict[str, str] | None, out: Path) -> None:
    """Absent if it was absent; else no new weights or temporary files, and the old weights unchanged.

    (A failed resume may rewrite the small text files such as config.yaml; those are complete files.)
    """
    after = snapshot(out)
    if before is None:
        assert after is None, f"a failed run left {out} behind: {sorted(after or {})}"
        return
    added = sorted(set(after or {}) - set(before))
    assert not [a for a in added if a.endswith(WEIGHT_SUFFIXES)], f"a failed run wrote weights: {added}"
    assert not [a for a in added if ".tmp" in a or a.startswith(".")], f"half-written files left: {added}"
    changed = sorted(k for k in before if k.endswith(WEIGHT_SUFFIXES) and (after or {}).get(k) != before[k])
    assert not changed, f"a failed run changed or removed the weights {changed}"
