"""Give freed activation memory back to the operating system (Linux with glibc).

On the CPU, PyTorch allocates tensors with ``malloc``. glibc serves a large request from its own
mapping (returned to the system on free) only while the request is above a threshold, and that
threshold *grows* each time such a mapping is freed, up to 32 MiB. After the first training step
nearly every activation (a few MiB each) is therefore carved from the heap, and a freed hole in the
heap stays resident while anything above it lives: the process keeps the high-water mark of every
step's transient tensors on top of what the step needs.

Measured on SmolLM2-135M with LoRA, batch 4 x 512 tokens, gradient checkpointing, three steps: peak RSS
1,954 MiB with glibc's default behaviour and 1,354 MiB with the threshold fixed at 128 KiB (the same
run, ``MALLOC_MMAP_THRESHOLD_=131072``). Fixing the threshold with ``mallopt`` does the same from inside
the process and switches the growth off. No library offers this (it is one libc call), hence the small
ctypes wrapper. An explicit ``MALLOC_MMAP_THRESHOLD_`` in the environment is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

log = logging.getLogger("tunekit.engine")

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number for the mmap threshold (malloc.h)."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own starting value; fixing it keeps every allocation above it in its own mapping."""

_done = False


def return_freed_memory() -> bool:
    """Make freed large CPU tensors leave the process at once; True when the setting is (already) in force.

    Does nothing (False) off Linux/glibc or when the user set ``MALLOC_MMAP_THRESHOLD_`` themselves. Numerics are
    untouched: only where the allocator places memory changes.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a static or unusual libc: keep its default
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if _done:
        log.debug("malloc mmap threshold fixed at %d bytes: freed tensors return to the system", MMAP_THRESHOLD_BYTES)
    return _done
