"""Writing files and folders so that a reader, or a run stopped half-way, never sees half of one.

Everything is written under a temporary name beside its target and renamed into place at the end (a rename
within one folder is atomic on POSIX file systems). Temporary folders start with ``.tmp-`` and replaced ones
with ``.old-``, so whoever owns the parent folder can recognise and remove leftovers of a killed process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


class FolderExistsError(FileExistsError):
    """The target of a ``staged_folder(..., replace=False)`` appeared (not empty) while it was being written."""


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(target: Path, *, replace: bool = False, durable: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block ends without an error it becomes ``target``.

    ``replace``: an existing ``target`` is swapped out and removed; otherwise an empty one is taken over and
    a non-empty one raises ``FolderExistsError``. ``durable``: the files and the rename are flushed to disk
    (checkpoints that must survive a power cut). On any error, Ctrl-C included, the temporary folder is removed,
    so ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        yield tmp
        if durable:
            _fsync_tree(tmp)
        old = _move_aside(target) if replace else _claim_empty(target)
        os.rename(tmp, target)
        if durable:
            _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_aside(target: Path) -> Path | None:
    if not target.exists():
        return None
    old = target.parent / f"{OLD_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    return old


def _claim_empty(target: Path) -> None:
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if target.exists():
        raise FolderExistsError(str(target))


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
