"""Helpers shared by the tests: where ../shared is, the real model packages (skip when absent), fake plugin
distributions."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEKIT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the integration tests need ../shared beside the repository")
    return path


def model_package(package: str) -> Path:
    """The folder of an installed model package, or skip when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"model package {package!r} is not installed (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


_METHOD_PLUGIN = """
from dataclasses import dataclass

from tunekit.hookspecs import hookimpl


@dataclass
class Options:
    pass


class Method:
    name = "{name}"
    description = "Method from a test distribution."
    options_class = Options

    def apply(self, model, options, keep_trainable=()):
        raise NotImplementedError

    def expected_trainable(self, arch, options):
        return 0

    def load(self, model, folder):
        raise NotImplementedError


@hookimpl
def {hook}(register):
    register(Method())
"""


def method_plugin_source(name: str, hook: str = "register_methods") -> str:
    """The source of a plugin module whose ``hook`` registers a complete (never applied) method ``name``."""
    return _METHOD_PLUGIN.format(name=name, hook=hook)


def write_distribution(root: Path, dist: str, version: str, module: str, body: str, ep_name: str | None = None) -> None:
    """Install a plugin distribution by hand into ``root`` (a folder on sys.path): the module ``module`` with
    ``body`` and the ``*.dist-info`` (METADATA, ``entry_points.txt``) that ``importlib.metadata`` reads."""
    (root / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[tunekit]\n{ep_name or dist} = {module}\n", encoding="utf-8")
