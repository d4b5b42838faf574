"""One process at a time per run folder: an OS-level lock (``filelock``) on ``<run>/.tunekit.lock``.

A run, a resumption, or anything else that writes into a run folder holds the lock for as long as it
writes; a second process that would write there refuses at once with :class:`RunFolderInUseError`
and writes nothing. The lock is a ``flock`` on an open file, so the kernel releases it when the
holding process dies, however it dies (SIGKILL included): a lock file left behind never blocks the
next run. Holding is reentrant inside one process (the same folder may be held by nested callers).

The lock file also records the holder's process id, only for the message a refused process shows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from tunekit.errors import TunekitError, UsageError

LOCK_FILE = ".tunekit.lock"

_held: dict[str, FileLock] = {}  # canonical folder -> this process's lock on it


class RunFolderInUseError(TunekitError):
    """Another tunekit process holds the run folder."""


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


WRITE_FIX = "wait for it to finish or choose another --output."
READ_FIX = "wait for it to finish before loading the run."


def _refuse(folder: Path, fix: str) -> RunFolderInUseError:
    return RunFolderInUseError(
        f"the run folder {str(folder)!r} is in use by another tunekit process{_holder(folder / LOCK_FILE)}; {fix}"
    )


def is_held_here(folder: str | os.PathLike) -> bool:
    """Whether this process already holds the lock on ``folder``."""
    return _key(Path(folder)) in _held


@contextlib.contextmanager
def hold(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock on ``folder`` (created if missing) for the ``with`` block, or raise RunFolderInUseError.

    Only the creation of the folder and of its lock file happens before the lock is won; a refused
    process leaves the folder as it found it.
    """
    path = Path(folder)
    key = _key(path)
    if key in _held:  # reentrant within this process
        yield path
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {str(path)!r} ({exc.strerror}); "
                         "choose another --output.") from None
    lock = FileLock(str(path / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise _refuse(path, WRITE_FIX) from None
    _held[key] = lock
    try:
        (path / LOCK_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield path
    finally:
        _held.pop(key, None)
        lock.release()


def ensure_free(folder: str | os.PathLike, fix: str = READ_FIX) -> None:
    """Raise RunFolderInUseError when another process holds ``folder``; create nothing.

    For readers (predict, eval, export) of a run folder, which another process may be half-way through
    writing, and for a writer's early check (``fix`` is the advice that ends the message). A folder without a lock file has never been held and is free.
    """
    path = Path(folder)
    lock_path = path / LOCK_FILE
    if is_held_here(path) or not lock_path.is_file():
        return
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise _refuse(path, fix) from None
    lock.release()
