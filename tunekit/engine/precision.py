"""Whether the CPU computes bfloat16 natively, for the run log's hint about ``training.precision``.

On such a CPU (``avx512_bf16`` or AMX), bf16 autocast runs the matrix products on bf16 units: a SmolLM2-135M
LoRA run took 40.3 s in bf16 against 100.2 s in fp32 at the same held-out loss (benchmarks/README.md).
Without those units bf16 is emulated, which is usually no faster than fp32 (not measured here), so the hint
appears only where the flags say so. torch has no public query for this (its private
``_is_mkldnn_bf16_supported`` also answers yes for emulation), hence reading ``/proc/cpuinfo``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger("tunekit.engine")

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs with bfloat16 arithmetic in hardware."""


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU lists a bf16 arithmetic flag (Linux x86); False when it does not or cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def hint_precision(precision: str, device: torch.device) -> None:
    """Log at INFO that bf16 would be faster, when an fp32 run trains on a CPU with native bf16."""
    if precision == "fp32" and device.type == "cpu" and cpu_has_native_bf16():
        log.info("this CPU computes bf16 natively: training.precision: bf16 (--precision bf16) is likely much "
                 "faster (2.5x for SmolLM2 LoRA in benchmarks/README.md); see docs/training.md")
