"""Files from other people: nothing is unpickled, no remote code runs unasked, crafted configs are refused.

A "payload" below is a pickle or YAML tag that would create a marker file if it were ever executed;
every test checks the marker never appears.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import tunekit
from tunekit.errors import CheckpointError, ConfigError, TunekitError, UsageError
from tunekit.methods import adapter_files

PACKAGE = Path(tunekit.__file__).parent


class _Payload:
    """Pickles to a call of os.system that creates ``marker`` (never run by tunekit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_source_never_unpickles_or_runs_remote_code():
    """Scan tunekit's source: torch.load only with weights_only=True (and only on the engine's own files),
    no pickle/joblib/dill loads, no yaml.load without the safe loader, no trust_remote_code=True literal."""
    problems, torch_loads = [], set()
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for call, func in _calls(tree):
            where = f"{rel}:{call.lineno}"
            if func == "torch.load":
                value = _keyword(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
                torch_loads.add(rel)
            if func in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "dill.loads", "cloudpickle.load",
                        "cloudpickle.loads", "yaml.unsafe_load", "yaml.full_load", "marshal.loads", "eval", "exec"):
                problems.append(f"{where}: {func}")
            if func == "yaml.load":
                loader = ast.unparse(_keyword(call, "Loader") or ast.Constant(None))
                if "Safe" not in loader:
                    problems.append(f"{where}: yaml.load without a safe loader")
            if func.endswith("np.load") or func.endswith("numpy.load"):
                value = _keyword(call, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where}: np.load with allow_pickle")
            value = _keyword(call, "trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{where}: trust_remote_code=True")
        guarded = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "trust_remote_code" in ast.unparse(node.test) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is True \
                    and any("trust_remote_code" in ast.unparse(t) for t in node.targets) and id(node) not in guarded:
                problems.append(f"{rel}:{node.lineno}: sets trust_remote_code without the user's setting")
    assert not problems, "\n".join(problems)
    assert torch_loads <= {"tunekit/engine/checkpoint.py"}, f"torch.load outside the checkpoint module: {torch_loads}"


def test_trust_remote_code_is_off_unless_the_user_sets_it(models, data, monkeypatch):
    """The config default is False, and no from_pretrained call of a run gets trust_remote_code=True."""
    import transformers

    from tunekit.config import RunConfig
    from tunekit.runs.runner import as_config, prepare

    assert RunConfig().model.trust_remote_code is False
    seen: list[dict] = []
    for name in ("AutoTokenizer", "AutoModelForSequenceClassification", "AutoConfig"):
        cls = getattr(transformers, name)
        original = cls.from_pretrained

        def spy(*args, _original=original, **kwargs):
            seen.append(dict(kwargs))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    cfg = as_config({"model": {"name": str(models["bert"])}, "task": {"name": "sequence-classification"},
                     "method": {"name": "lora"}, "data": {"train": str(data / "train.csv")}})
    prepare(cfg)
    assert len(seen) >= 2
    assert all(not kwargs.get("trust_remote_code") for kwargs in seen), seen


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_run_folder_cannot_switch_on_remote_code(run_copy, monkeypatch):
    import transformers

    from tunekit import config as config_mod

    tree = config_mod.read_yaml(run_copy / "config.yaml")
    tree["model"]["trust_remote_code"] = True
    (run_copy / "config.yaml").write_text(config_mod.to_yaml(config_mod.from_dict(tree)), encoding="utf-8")

    def refuse(*args, **kwargs):
        raise AssertionError("nothing may be loaded from a run folder that asks for remote code")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(UsageError, match="trust_remote_code=True"):
        tunekit.load_run(run_copy)


def test_run_config_with_a_python_tag_is_refused(run_copy, tmp_path):
    marker = tmp_path / "owned"
    text = (run_copy / "config.yaml").read_text(encoding="utf-8")
    (run_copy / "config.yaml").write_text(f"evil: !!python/object/apply:os.system ['touch {marker}']\n" + text,
                                          encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML tag"):
        tunekit.load_run(run_copy)
    assert not marker.exists()


def test_crafted_run_config_cannot_redirect_predict(run_copy, tmp_path, cli):
    """output.dir and data paths in a run folder's config.yaml are never written by eval/predict."""
    from tunekit import config as config_mod

    elsewhere = tmp_path / "elsewhere"
    tree = config_mod.read_yaml(run_copy / "config.yaml")
    tree["output"]["dir"] = str(elsewhere / ".." / "elsewhere" / "out")
    (run_copy / "config.yaml").write_text(config_mod.to_yaml(config_mod.from_dict(tree)), encoding="utf-8")
    before = sorted(p.relative_to(run_copy).as_posix() for p in run_copy.rglob("*"))
    result = cli("predict", "--run", str(run_copy), "the good movie", "a bad plot")
    assert result.code == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 2
    assert not elsewhere.exists()
    assert sorted(p.relative_to(run_copy).as_posix() for p in run_copy.rglob("*")) == before


def test_damaged_task_state_is_a_checkpoint_error(run_copy):
    state = json.loads((run_copy / "task.json").read_text())
    del state["labels"]
    (run_copy / "task.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="task state"):
        tunekit.load_run(run_copy)


def test_output_dir_with_dotdot_is_fine(models, data, tmp_path):
    result = tunekit.run({
        "model": {"name": str(models["bert"])}, "task": {"name": "sequence-classification"},
        "method": {"name": "lora"}, "data": {"train": str(data / "train.csv")},
        "training": {"max_steps": 1, "batch_size": 4, "eval_each_epoch": False},
        "output": {"dir": str(tmp_path / "a" / ".." / "b")},
    })
    assert (tmp_path / "b" / "summary.json").is_file()
    assert result.output_dir.resolve() == (tmp_path / "b").resolve()


def test_pickled_optimizer_state_is_never_unpickled(run_copy, tmp_path, cli, models, data):
    """A checkpoint's optimizer.pt replaced by a pickle payload: weights_only refuses it, resume ends cleanly."""
    marker = tmp_path / "owned"
    newest = max((run_copy / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    with open(newest / "optimizer.pt", "wb") as fh:
        pickle.dump(_Payload(marker), fh)
    result = cli("run", "--task", "sequence-classification", "--method", "lora", "--model", str(models["bert"]),
                 "--data", str(data / "train.csv"), "--max-steps", "2", "--save-steps", "1", "--batch-size", "4",
                 "--set", "training.eval_each_epoch=false", "--output", str(run_copy), "--resume")
    assert result.code == 1, result.stderr
    assert "could not be restored" in result.error_lines[0]
    assert not marker.exists()


# ---------------------------------------------------------------- adapter folders


def _saved_adapter(method: str, folder: Path, **options) -> Path:
    from tunekit.testing.models import tiny_bert

    model = tiny_bert("cls")
    report = tunekit.apply_method(model, method, keep_trainable=["classifier"], **options)
    report.applied.save(folder)
    return folder


def _load(method: str, folder: Path):
    from tunekit.testing.models import tiny_bert

    return tunekit.registries().methods.get(method).load(tiny_bert("cls"), folder)


def _edit_config(folder: Path, **changes) -> None:
    config = adapter_files.read_config(folder)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / adapter_files.CONFIG_NAME).write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(("change", "phrase"), [
    ({"use_magic": True}, "unknown key 'use_magic'"),
    ({"target_modules": 5}, "target_modules must be a list of names or a regex string"),
    ({"target_modules": {"__class__": "os.system"}}, "target_modules must be a list"),
    ({"target_modules": ["query", 7]}, "target_modules must be a list"),
    ({"modules_to_save": "classifier"}, "modules_to_save must be a list"),
    ({"r": "os.system"}, "is invalid"),
    ({"use_dora": True}, "does not implement"),
    ({"peft_type": "IA3"}, "is not a LoRA adapter"),
], ids=["unknown-key", "targets-int", "targets-dict", "targets-mixed", "save-str", "rank-str", "dora", "type"])
def test_crafted_lora_config_is_refused(tmp_path, change, phrase):
    folder = _saved_adapter("lora", tmp_path / "adapter")
    _edit_config(folder, **change)
    with pytest.raises(CheckpointError) as info:
        _load("lora", folder)
    assert phrase in str(info.value)


def test_path_traversal_names_touch_nothing_outside(tmp_path):
    """Module names such as ../../x are names, never paths: loading fails cleanly and writes nothing."""
    folder = _saved_adapter("lora", tmp_path / "box" / "adapter")
    _edit_config(folder, modules_to_save=["../../../etc/passwd"], target_modules=["../query"])
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(TunekitError):
        _load("lora", folder)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("change", "phrase"), [
    ({"import": "os"}, "unknown key 'import'"),
    ({"tunekit_method": "../../lora"}, "was written by method '../../lora'"),
    ({"options": {"non_linearity": "os.system"}}, "must be one of"),
    ({"options": {"reduction_factor": "__import__('os')"}}, "must be a whole number"),
    ({"options": ["reduction_factor", 2]}, "options must be a JSON object"),
    ({"keep_trainable": "classifier"}, "keep_trainable must be a list"),
    ({"keep_trainable": ["../../etc"]}, "has no module of that name"),
], ids=["unknown-key", "method-traversal", "callable-name", "code-string", "options-list", "keep-str", "keep-traversal"])
def test_crafted_tunekit_adapter_config_is_refused(tmp_path, change, phrase):
    folder = _saved_adapter("pfeiffer", tmp_path / "adapter")
    _edit_config(folder, **change)
    with pytest.raises(TunekitError) as info:
        _load("pfeiffer", folder)
    assert phrase in str(info.value)


def test_pickled_adapter_weights_are_never_unpickled(tmp_path):
    marker = tmp_path / "owned"
    folder = _saved_adapter("lora", tmp_path / "adapter")
    torch.save({"x": _Payload(marker)}, folder / adapter_files.WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        _load("lora", folder)
    assert not marker.exists()
