"""The run log's bf16 hint: read from the CPU's flags, given only for fp32 runs on such a CPU."""

from __future__ import annotations

import logging

import torch

from tunekit.engine import precision


def _cpuinfo(tmp_path, name: str, flags: str) -> str:
    path = tmp_path / name
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert precision.cpu_has_native_bf16(_cpuinfo(tmp_path, "zen4", "avx2 avx512f avx512_bf16"))
    assert precision.cpu_has_native_bf16(_cpuinfo(tmp_path, "sapphire", "amx_tile amx_bf16"))
    assert not precision.cpu_has_native_bf16(_cpuinfo(tmp_path, "skylake", "avx2 avx512f avx512bw"))
    assert not precision.cpu_has_native_bf16(str(tmp_path / "missing"))


def test_the_hint_is_for_fp32_runs_on_a_native_bf16_cpu(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="tunekit.engine")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    precision.hint_precision("bf16", torch.device("cpu"))
    precision.hint_precision("fp32", torch.device("cuda"))
    assert not caplog.records
    precision.hint_precision("fp32", torch.device("cpu"))
    assert "training.precision: bf16" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    precision.hint_precision("fp32", torch.device("cpu"))
    assert not caplog.records
