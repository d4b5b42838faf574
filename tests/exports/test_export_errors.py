"""Bad export requests: one error line, a non-zero exit, and no output folder (nor temporary leftovers)."""

from __future__ import annotations

import sys

import pytest

from tests.errors.support import assert_clean_failure


def _export(cli, run, out, *args):
    return cli("export", "--run", str(run), "--output", str(out), *args)


def _nothing_written(out):
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


@pytest.mark.parametrize(("which", "args", "phrase"), [
    ("llama", ("--format", "tflite"), "unknown export format 'tflite'; choose one of hf, gguf, onnx"),
    ("llama", ("--format", "onnx"), "export it with --format gguf"),
    ("llama", ("--format", "gguf", "--dtype", "q4_k"), "unknown GGUF --dtype 'q4_k'; choose one of f32, f16, q8_0"),
    ("classification", ("--format", "gguf"), "GGUF export supports causal-LM runs of the llama family"),
])
def test_unsupported_requests_fail_in_one_line(cli, llama_run, encoder_runs, tmp_path, which, args, phrase):
    run = llama_run if which == "llama" else encoder_runs["sequence-classification"]
    out = tmp_path / "out"
    result = _export(cli, run, out, *args)
    assert_clean_failure(result, 2, phrase)
    _nothing_written(out)


@pytest.mark.parametrize("package", ["onnxruntime", "onnxscript"])
def test_missing_onnx_extra_names_it(cli, encoder_runs, tmp_path, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    out = tmp_path / "out"
    result = _export(cli, encoder_runs["sequence-classification"], out, "--format", "onnx")
    assert_clean_failure(result, 2, "pip install 'tunekit[onnx]'")
    assert package in result.error_lines[0]
    _nothing_written(out)


def test_a_failure_while_writing_leaves_nothing(cli, llama_run, tmp_path, monkeypatch):
    """The file is written in a temporary folder beside the output; an error removes it."""
    from tunekit.exports import gguf as gguf_export

    def broken(writer, model, dtype):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf_export, "add_tensors", broken)
    out = tmp_path / "out"
    result = _export(cli, llama_run, out, "--format", "gguf")
    assert result.code != 0 and "No space left on device" in result.stderr
    _nothing_written(out)


def test_gguf_refuses_a_non_empty_folder(cli, llama_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_clean_failure(_export(cli, llama_run, out, "--format", "gguf"), 2, "already exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_exporter_failure_is_one_line_and_leaves_nothing(cli, encoder_runs, tmp_path, monkeypatch):
    import torch

    def fails(*args, **kwargs):
        raise RuntimeError("Failed to export the model with torch.export.\nmany more lines")

    monkeypatch.setattr(torch.onnx, "export", fails)
    out = tmp_path / "out"
    result = _export(cli, encoder_runs["token-classification"], out, "--format", "onnx")
    assert_clean_failure(result, 2, "torch.onnx could not export this BertForTokenClassification")
    assert "many more lines" not in result.stderr
    _nothing_written(out)
