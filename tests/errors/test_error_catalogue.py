"""Every bad input of the catalogue ends with one clean line, the right exit code, and no output left behind.

Each case runs in-process through ``tunekit.cli.main`` (fast), through ``tunekit.run(dict)`` when the
mistake is not a command-line one (it must raise the catalogue's tunekit error), and, for a
representative few, through ``python -m tunekit`` in a subprocess (where a traceback could not hide).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import tunekit
from tests.errors.catalogue import CASES, Case
from tests.errors.support import assert_clean_failure, assert_output_untouched, run_tunekit, snapshot

BY_ID = {case.id: case for case in CASES}


def _skip_reason(case: Case) -> str | None:
    if case.needs_task and case.needs_task not in tunekit.registries().tasks:
        return f"the {case.needs_task!r} task is not registered yet"
    if case.setup == "not_root" and os.geteuid() == 0:
        return "running as root, whom chmod 000 does not stop from reading (the check is os.access in read_dataset)"
    if case.setup == "proc" and not Path("/proc/self").is_dir():
        return "no /proc file system here to stand for a folder that cannot be written"
    return None


@pytest.fixture
def prepared(request, tmp_path, models, data, monkeypatch):
    """(argument list, output folder) of the case, with the output folder prepared as the case needs."""
    case: Case = request.param
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)  # anything written to a default ./runs folder stays in the test's folder
    out = tmp_path / "out"
    if case.setup in ("finished", "corrupt", "finished_without_checkpoints", "damaged_adapter"):
        shutil.copytree(request.getfixturevalue("finished_run"), out)
    if case.setup == "finished_without_checkpoints":
        shutil.rmtree(out / "checkpoints")
    if case.setup == "damaged_adapter":
        (out / "adapter" / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    if case.setup == "corrupt":
        newest = max((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        (newest / "trainable.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    places = {name: str(path) for name, path in models.items()}
    args = [a.format(data=data, out=out, **places) for a in case.args]
    if args[0] == "run" and "--output" not in args:
        args += ["--output", str(out)]
    return args, Path(args[args.index("--output") + 1]) if "--output" in args else out


def _cases(predicate=lambda case: True):
    return [pytest.param(case, id=case.id) for case in CASES if predicate(case)]


def test_the_catalogue_is_large_and_unique():
    assert len(CASES) >= 30
    assert len(BY_ID) == len(CASES)
    assert all(case.code in (1, 2) for case in CASES)
    for case in CASES:
        if case.error is not None:
            assert case.error.exit_code == case.code, case.id


@pytest.mark.parametrize("prepared", _cases(), indirect=True)
def test_cli_in_process(prepared, request, cli):
    case = request.node.callspec.params["prepared"]
    args, out = prepared
    before = snapshot(out)
    result = cli(*args)
    assert_clean_failure(result, case.code, case.phrase)
    assert_output_untouched(before, out)


@pytest.mark.parametrize("prepared", _cases(lambda c: c.error is not None), indirect=True)
def test_python_api(prepared, request):
    """``tunekit.run(dict)`` raises the catalogue's error type with the same message."""
    from tunekit import config as config_mod
    from tunekit.cli.run import overrides_from_flags
    from tunekit.cli.run import run as run_command

    case = request.node.callspec.params["prepared"]
    args, out = prepared
    params = run_command.make_context("run", list(args[1:])).params
    config_path, sets = params.pop("config_path"), params.pop("sets")
    before = snapshot(out)
    with pytest.raises(tunekit.TunekitError) as info:
        if config_path:
            tunekit.run(config_path)
        else:
            tree = overrides_from_flags(params)
            for item in sets:
                key, value = item.split("=", 1)
                config_mod.set_path(tree, key, config_mod.parse_value(value))
            tunekit.run(tree)
    assert isinstance(info.value, case.error), f"{type(info.value).__name__}: {info.value}"
    assert info.value.exit_code == case.code
    assert case.phrase.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)
    assert_output_untouched(before, out)


@pytest.mark.parametrize("prepared", _cases(lambda c: c.subprocess), indirect=True)
def test_cli_subprocess(prepared, request):
    case = request.node.callspec.params["prepared"]
    args, out = prepared
    before = snapshot(out)
    result = run_tunekit(*args)
    assert_clean_failure(result, case.code, case.phrase)
    assert_output_untouched(before, out)


def test_debug_shows_the_traceback(cli, data, tmp_path):
    """--debug is the one way to see the traceback; the error line still comes last."""
    result = cli("--debug", "run", "--task", "sequence-classification", "--method", "lorra",
                 "--data", str(data / "train.csv"), "--output", str(tmp_path / "out"))
    assert result.code == 2
    assert "Traceback" in result.stderr
    assert result.error_lines and "did you mean 'lora'" in result.error_lines[-1]
    assert not (tmp_path / "out").exists()


def test_an_unexpected_exception_still_ends_in_one_line(cli, monkeypatch, data, tmp_path):
    """A bug (any non-tunekit exception) is reported as one line asking for --debug, exit 1."""
    import tunekit.runs.runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug [bold]markup[/bold] stays literal")

    monkeypatch.setattr(tunekit.runs.runner, "prepare", broken)
    result = cli("run", "--task", "sequence-classification", "--data", str(data / "train.csv"),
                 "--output", str(tmp_path / "out"))
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert "unexpected ZeroDivisionError" in line and "--debug" in line
    assert "[bold]markup[/bold]" in line  # user text is never read as rich markup
    assert not (tmp_path / "out").exists()


def test_a_message_quoting_a_newline_stays_on_one_line(cli, tmp_path):
    result = cli("run", "--set", "method.r\n--set", "--output", str(tmp_path / "out"))
    assert result.code == 2
    assert len(result.error_lines) == 1 and "write it as KEY=VALUE" in result.error_lines[0]
    assert [line for line in result.stderr.splitlines() if line.strip()] == result.error_lines
