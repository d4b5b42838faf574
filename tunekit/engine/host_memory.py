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

The price is speed: every activation then comes from a fresh mapping whose pages the kernel must fault in
and zero. Measured on the same model and method on an idle 2-core machine (2026-11-30 figures in
benchmarks/README.md): batch 4 x 1,024 with checkpointing, 1,562 MiB in 113 s with the setting vs 3,126
MiB in 83 s without; batch 8 x 256 without checkpointing, 3,307 MiB in 53 s vs 4,280 MiB in 37 s. So the
engine turns it on only together with gradient checkpointing (``tunekit.engine.memory``), the mode a run
is in when memory binds. The setting is process-wide and stays for the life of the process.
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
