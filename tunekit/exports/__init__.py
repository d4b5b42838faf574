"""Writing a finished run in a deployable format: a transformers folder, a GGUF file or an ONNX model.

``export_run`` loads the run, folds its method into a float model (``common.float_model``) and hands it
to the format's writer; every format writes into a temporary folder that is renamed at the end, so the
output folder is complete or absent.
"""

from __future__ import annotations

from pathlib import Path

from tunekit.errors import UsageError
from tunekit.exports import gguf as gguf_export
from tunekit.exports import onnx as onnx_export
from tunekit.exports.common import atomic_folder, check_target, float_model

FORMATS = ("hf", "gguf", "onnx")
"""The formats ``tunekit export --format`` writes."""

GGUF_FILE = "model.gguf"
"""The GGUF file's name inside the export folder."""


def export_run(run_dir: str | Path, output: str | Path, fmt: str = "hf", *, dtype: str = "f16",
               dequantize: bool = False) -> str:
    """Export the run folder ``run_dir`` into the new folder ``output`` as ``fmt``; returns what was written.

    ``dtype`` is the GGUF weight type (f32, f16 or q8_0); the other formats write float32 weights.
    """
    from tunekit.runs.loading import load_run

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if fmt == "gguf" and dtype not in gguf_export.DTYPES:
        raise UsageError(f"unknown GGUF --dtype {dtype!r}; choose one of {', '.join(gguf_export.DTYPES)}.")
    if fmt == "onnx":
        onnx_export.require_packages()
    out = Path(output)
    check_target(out)
    loaded = load_run(run_dir)
    model, what = float_model(loaded, dequantize)
    if fmt == "gguf":
        gguf_export.check_exportable(model, dtype)
        with atomic_folder(out) as tmp:
            gguf_export.write_gguf(model, loaded.tokenizer, tmp / GGUF_FILE, dtype, name=Path(run_dir).resolve().name)
        return f"{what} as GGUF ({dtype}) to {out / GGUF_FILE}"
    if fmt == "onnx":
        onnx_export.head_of(model)  # refuses a causal LM before any work
        with atomic_folder(out) as tmp:
            error = onnx_export.write_onnx(model, loaded.tokenizer, tmp)
        return f"{what} as ONNX to {out} (ONNX Runtime matches the run's logits within {error:.1e})"
    from tunekit.models import save_plain_folder

    save_plain_folder(model, loaded.tokenizer, out)  # atomic itself
    return f"{what} to {out}"
