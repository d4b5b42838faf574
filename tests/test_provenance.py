"""Runs record which distribution (and version) provided their method and task; loading a run whose
plugin is missing, failed or blocked names what to install or unblock."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.tinyrun import make_data, make_model, run_args, tunekit
from tunekit.errors import UnknownNameError
from tunekit.registry import Provider, Registry
from tunekit.runs import provenance

RECORD = {"method": {"name": "dora", "plugin": "acme", "distribution": "acme-methods", "version": "1.2.0"},
          "task": {"name": "sequence-classification", "plugin": "tunekit.builtins.tasks.classification",
                   "distribution": "tunekit", "version": "0.1.0"}}


def regs(*statuses: tuple[str, str, str]) -> SimpleNamespace:
    return SimpleNamespace(methods=Registry("method"), tasks=Registry("task"),
                           plugins=[SimpleNamespace(name=n, distribution=d, state=s) for n, d, s in statuses])


@pytest.fixture
def folder(tmp_path):
    provenance.write(tmp_path, RECORD)
    return tmp_path


def test_a_missing_plugin_names_the_distribution_and_version_to_install(folder):
    with pytest.raises(UnknownNameError) as info:
        provenance.lookup(regs(), "method", "dora", folder)
    message = str(info.value)
    assert "'dora' from acme-methods 1.2.0" in message and "pip install 'acme-methods==1.2.0'" in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("state, blocked, fix", [
    ("blocked", "acme-methods,other", "remove 'acme-methods' from TUNEKIT_DISABLE_PLUGINS"),
    ("blocked", None, "add 'acme' to TUNEKIT_LOAD_PLUGINS"),
    ("failed", None, "tunekit --debug plugins")])
def test_a_blocked_or_failed_plugin_says_so(folder, monkeypatch, state, blocked, fix):
    if blocked:
        monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", blocked)
    else:
        monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    with pytest.raises(UnknownNameError, match=fix) as info:
        provenance.lookup(regs(("acme", "acme-methods", state)), "method", "dora", folder)
    assert "acme-methods 1.2.0" in str(info.value)


def test_a_present_plugin_is_returned_and_an_unrecorded_name_keeps_the_usual_message(folder):
    registries = regs()
    method = SimpleNamespace(name="dora", description="")
    registries.methods.add(method, Provider("acme", "acme-methods", "1.3.0"))
    assert provenance.lookup(registries, "method", "dora", folder) is method
    with pytest.raises(UnknownNameError, match="unknown method 'lora'; did you mean 'dora'"):
        provenance.lookup(registries, "method", "lora", folder)


def test_a_run_records_its_providers_and_a_blocked_method_is_named_on_load(tmp_path):
    out = tmp_path / "run"
    data = make_data(tmp_path / "train.tsv", n=32)
    proc = tunekit(*run_args(make_model(tmp_path / "model"), data, out, "--max-steps", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    recorded = json.loads((out / provenance.PROVIDERS_FILE).read_text())
    assert summary["providers"] == recorded
    assert recorded["method"]["name"] == "lora" and recorded["method"]["distribution"] == "tunekit"
    assert recorded["task"]["plugin"] == "tunekit.builtins.tasks.classification" and recorded["task"]["version"]

    version = recorded["method"]["version"]
    for command in (["predict", "--run", str(out), "good"], ["eval", "--run", str(out), "--data", str(data)]):
        proc = tunekit(*command, TUNEKIT_DISABLE_PLUGINS="lora")
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert f"the method 'lora' from tunekit {version}" in line, line
        assert "remove 'lora' from TUNEKIT_DISABLE_PLUGINS" in line, line
    proc = tunekit(*run_args(tmp_path / "model", data, out, "--max-steps", "2", "--resume", "--overwrite"),
                   TUNEKIT_DISABLE_PLUGINS="lora")
    assert proc.returncode == 2 and "TUNEKIT_DISABLE_PLUGINS" in proc.stderr, proc.stderr[-2000:]
