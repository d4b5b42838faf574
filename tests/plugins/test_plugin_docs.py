"""docs/plugins.md stays in sync with the code: every hook, protocol member and kit function is there,
and every example plugin on the page loads and registers what it says."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tunekit import data, hookspecs, models, plugins
from tunekit.methods import architecture as arch
from tunekit.methods import protocol as method
from tunekit.protocols import OptionalAttr, protocol_members
from tunekit.tasks import protocol as task

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")


def hook_specs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "tunekit_spec")
    }


def test_every_hook_has_a_section_with_its_signature() -> None:
    specs = hook_specs()
    assert specs, "no hook specifications found in tunekit.hookspecs"
    for name, sig in specs.items():
        heading = f"### `{name}({', '.join(sig.parameters)})`"
        assert heading in TEXT, f"docs/plugins.md lacks the section {heading!r}"


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^### `(register_\w+)\(", TEXT, flags=re.M))
    assert documented == set(hook_specs())


def _members(cls: type) -> set[str]:
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    names = set(getattr(cls, "__annotations__", {}))
    names |= {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}
    return names


@pytest.mark.parametrize("cls", [
    method.Method, method.Applied, task.Task, task.TaskJob, task.TaskContext,
    data.DatasetFormat, models.ModelSource, models.Quantizer, models.ResolvedModel,
])
def test_every_protocol_member_is_documented(cls: type) -> None:
    assert f"`tunekit.{cls.__module__.removeprefix('tunekit.')}.{cls.__name__}`" in TEXT or cls.__name__ in TEXT
    missing = sorted(m for m in _members(cls) if f"`{m}" not in TEXT)
    assert not missing, f"docs/plugins.md does not describe {cls.__name__}.{missing}"


def _shown_default(attr: OptionalAttr) -> str:
    return "absent" if attr.callable else f"`{attr.default!r}`"


@pytest.mark.parametrize("table", ["method.METHOD_OPTIONAL", "method.APPLIED_OPTIONAL", "task.JOB_OPTIONAL",
                                   "data.FORMAT_OPTIONAL", "models.QUANTIZER_OPTIONAL"])
def test_every_optional_attribute_is_documented_with_its_default(table: str) -> None:
    module, name = table.split(".")
    rows = getattr({"method": method, "task": task, "data": data, "models": models}[module], name)
    assert f"`{name}`" in TEXT
    for attr, declared in rows.items():
        row = f"| `{attr}` | {_shown_default(declared)} | {declared.doc} |"
        assert row in TEXT, f"docs/plugins.md lacks the row {row!r} of {table}"


def test_optional_attributes_are_not_protocol_members() -> None:
    """An optional attribute must not be required by the protocol the loader checks."""
    for protocol, table in ((method.Method, method.METHOD_OPTIONAL), (method.Applied, method.APPLIED_OPTIONAL),
                            (task.TaskJob, task.JOB_OPTIONAL), (data.DatasetFormat, data.FORMAT_OPTIONAL),
                            (models.Quantizer, models.QUANTIZER_OPTIONAL)):
        assert not set(protocol_members(protocol)) & set(table), protocol


def test_the_runner_default_learning_rate_is_the_declared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit import config as config_mod
    from tunekit.runs import runner

    class NoSuggestion:  # a method that declares no default_lr
        pass

    monkeypatch.setattr(runner, "_plugin", lambda cfg, kind: NoSuggestion())
    cfg = config_mod.from_dict({"method": {"name": "x"}, "task": {"name": "y"}})
    runner.resolve_defaults(cfg)
    assert cfg.training.lr == method.METHOD_OPTIONAL["default_lr"].default


def test_arch_fields_and_functions_are_listed_in_full() -> None:
    for cls in (arch.ArchInfo, arch.Family):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in TEXT, f"docs/plugins.md does not list {cls.__name__}.{f.name}"
    assert "| `kv_dim` (property) |" in TEXT
    public = [n for n, v in vars(arch).items()
              if inspect.isfunction(v) and v.__module__ == arch.__name__ and not n.startswith("_")]
    missing = [n for n in public if f"`{n}(" not in TEXT]
    assert not missing, f"docs/plugins.md does not list tunekit.methods.architecture.{missing}"


def test_conformance_kit_and_environment_are_documented() -> None:
    import tunekit.testing

    for name in tunekit.testing.__all__:
        assert f"`{name}" in TEXT, f"tunekit.testing.{name} is not in docs/plugins.md"
    for var in ("TUNEKIT_DISABLE_PLUGINS", "TUNEKIT_LOAD_PLUGINS"):
        assert f"`{var}`" in TEXT
    assert "[project.entry-points.tunekit]" in TEXT


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def example_plugins() -> list[str]:
    return [block for block in python_blocks() if "@hookimpl" in block]


def _module(source: str, index: int, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(f"docs_example_{index}")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(source, f"docs/plugins.md example {index}", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


def test_every_python_block_compiles() -> None:
    for i, block in enumerate(python_blocks()):
        compile(block, f"docs/plugins.md block {i}", "exec")


@pytest.mark.parametrize("index", range(len(example_plugins())))
def test_example_plugin_loads_and_registers(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    source = example_plugins()[index]
    module = _module(source, index, monkeypatch)
    if hasattr(module, "register_commands"):
        group = click.Group("tunekit")
        module.register_commands(cli=group)
        result = CliRunner().invoke(group, [next(iter(group.commands)), "docs"])
        assert result.exit_code == 0, result.output
        return
    monkeypatch.setattr(plugins, "_current", plugins._current)
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("TUNEKIT_LOAD_PLUGINS", "")  # an installed copy of an example must not collide
    regs = plugins.reset(extra_plugins=[module])
    status = next(p for p in regs.plugins if p.name == module.__name__)
    assert status.state == "loaded", status.error
    names = re.findall(r'^    name = "([^"]+)"', source, flags=re.M)
    assert names, "example registers nothing by name"
    for registry in regs.kinds():
        for entry in registry:
            if entry.provider.plugin == module.__name__:
                names.remove(entry.name)
    assert not names, f"example did not register {names}"


def test_the_complete_method_example_passes_the_conformance_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.testing import TINY_MODELS, check_method

    source = next(b for b in example_plugins() if "class AttnScale" in b)
    module = _module(source, 99, monkeypatch)
    for name in ("bert-cls", "llama-lm"):
        check_method(module.AttnScale(), {}, TINY_MODELS[name], tmp_path / name)
