"""``tunekit new-plugin``: the scaffolded package is valid, its method conforms, and it installs and passes."""

from __future__ import annotations

import importlib
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.errors import UsageError
from tunekit.scaffold import PluginNames, scaffold_plugin


@pytest.mark.parametrize("name", ["", "Scale", "my_scale", "-scale", "scale-", "my--scale", "2scale", "a b"])
def test_bad_names_are_usage_errors(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="lowercase letters, digits and single hyphens"):
        scaffold_plugin(name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_names_derived_from_the_method_name() -> None:
    names = PluginNames.of("my-scale2")
    assert (names.distribution, names.package, names.class_name) == ("tunekit-my-scale2", "tunekit_my_scale2", "MyScale2")


def test_scaffold_writes_a_complete_package(tmp_path: Path) -> None:
    root = scaffold_plugin("my-scale", tmp_path)
    assert root == tmp_path / "tunekit-my-scale"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    package = "src/tunekit_my_scale/"
    # the same files with the same roles as every built-in method folder
    assert files == ["README.md", "pyproject.toml", package + "__init__.py", package + "layer.py",
                     package + "method.py", package + "options.py", "tests/test_my_scale.py"]
    init = (root / package / "__init__.py").read_text(encoding="utf-8")
    assert "class " not in init and "@hookimpl" in init  # __init__.py only registers
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points.tunekit]\nmy-scale = "tunekit_my_scale"' in pyproject
    assert 'name = "tunekit-my-scale"' in pyproject
    for path in root.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)
        assert "$" not in path.read_text(encoding="utf-8"), f"unfilled template placeholder in {path}"
    with pytest.raises(UsageError, match="already exists"):
        scaffold_plugin("my-scale", tmp_path)


@pytest.fixture
def scaffolded_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = scaffold_plugin("fresh-scale", tmp_path)
    monkeypatch.syspath_prepend(str(root / "src"))
    module = importlib.import_module("tunekit_fresh_scale")
    yield module
    for name in [n for n in sys.modules if n == "tunekit_fresh_scale" or n.startswith("tunekit_fresh_scale.")]:
        sys.modules.pop(name)


@pytest.mark.parametrize("model", ["bert-cls", "gpt2-lm", "llama-cls"])
def test_scaffolded_method_passes_the_conformance_kit(scaffolded_module, model: str, tmp_path: Path) -> None:
    from tunekit.testing import TINY_MODELS, check_method

    check_method(scaffolded_module.FreshScale(), {}, TINY_MODELS[model], tmp_path / "adapter")


def test_scaffolded_module_registers_through_the_hook(scaffolded_module, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit import plugins

    monkeypatch.setattr(plugins, "_current", plugins._current)
    regs = plugins.reset(extra_plugins=[scaffolded_module])
    assert regs.methods.entry("fresh-scale").description.startswith("Learned scale vector")


def test_new_plugin_command(tmp_path: Path) -> None:
    from tunekit import cli as cli_module

    cli_module._load_commands()
    result = CliRunner().invoke(cli_module.cli, ["new-plugin", "cli-scale", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tunekit-cli-scale" / "pyproject.toml").is_file()
    assert "pip install -e" in result.output


def test_new_plugin_command_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunekit import cli as cli_module

    with pytest.raises(SystemExit) as info:
        cli_module.main(["new-plugin", "Bad_Name", "--dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Bad_Name" in err


@pytest.mark.slow
def test_scaffolded_package_installs_lists_and_passes_its_own_tests(tmp_path: Path) -> None:
    """pip-install the generated package onto a target folder; its tests pass and the CLI lists it."""
    root = scaffold_plugin("installed-scale", tmp_path)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(root)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert (site / "tunekit_installed_scale-0.1.0.dist-info" / "entry_points.txt").is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("TUNEKIT_LOAD_PLUGINS", None)
    env.pop("TUNEKIT_DISABLE_PLUGINS", None)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "bert or gpt2-lm or installed or count",
         "tests"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    listing = subprocess.run([sys.executable, "-m", "tunekit", "methods"], env={**env, "COLUMNS": "300"},
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if "installed-scale" in line)
    assert "tunekit-installed-scale 0.1.0" in line
