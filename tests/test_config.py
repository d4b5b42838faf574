"""Config loading: YAML < CLI flags < --set, validation errors name the key."""

from __future__ import annotations

import pytest

from tunekit import config
from tunekit.cli.run import overrides_from_flags
from tunekit.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_main_job():
    cfg = config.load()
    assert cfg.method_name == "lora"
    assert cfg.task_name == "causal-lm"
    assert cfg.model.name == "smollm2-135m"


def test_yaml_then_flags_then_set(tmp_path):
    path = write(tmp_path, """
model: {name: minilm-l6}
method: {name: lora, r: 4}
training: {lr: 0.001, epochs: 3, batch_size: 8}
data: {train: reviews.csv, text_column: text}
""")
    cfg = config.load(path, overrides_from_flags({"lr": 0.01, "epochs": None}), ["method.r=16", "data.text_column=sentence"])
    assert cfg.training.lr == 0.01  # flag beats YAML
    assert cfg.training.epochs == 3.0  # YAML kept where no flag was given
    assert cfg.training.batch_size == 8
    assert cfg.method == {"name": "lora", "r": 16}  # --set beats YAML
    assert cfg.data.text_column == "sentence"
    assert cfg.model.name == "minilm-l6"


def test_the_demo_data_suggests_the_main_job_settings():
    cfg = config.load()
    assert cfg.method == {"name": "lora", "r": 16, "target_modules": "all-linear"}
    assert cfg.training.lr == 2e-3 and cfg.training.batch_size == 8
    assert cfg.data.validation == "demo-heldout" and cfg.training.load_best_at_end is False
    assert cfg.task["system_prompt"]


def test_user_settings_beat_the_dataset_suggestions(tmp_path):
    path = write(tmp_path, "training: {batch_size: 4}\nmethod: {name: lora, target_modules: [q_proj]}\n")
    cfg = config.load(path, overrides_from_flags({"lr": 1e-4}), ["task.max_new_tokens=10"])
    assert cfg.training.batch_size == 4 and cfg.training.lr == 1e-4
    assert cfg.method == {"name": "lora", "r": 16, "target_modules": ["q_proj"]}
    assert cfg.task["max_new_tokens"] == 10 and cfg.task["system_prompt"]


def test_suggestions_for_another_plugin_or_a_file_are_not_applied():
    other = config.load(overrides={"method": {"name": "full"}, "task": {"name": "sequence-classification"}})
    assert other.method == {"name": "full"} and other.task == {"name": "sequence-classification"}
    assert other.training.lr is None  # the method's own default rate
    plain = config.load(overrides={"data": {"train": "reviews.csv"}})
    assert plain.method == {"name": "lora"} and plain.data.validation is None and plain.training.batch_size == 16


def test_set_parses_yaml_scalars_and_lists():
    cfg = config.load(sets=["training.max_steps=100", "data.header=false", "method.target_modules=[query, value]",
                            "training.report_to=tensorboard"])
    assert cfg.training.max_steps == 100
    assert cfg.data.header is False
    assert cfg.method["target_modules"] == ["query", "value"]
    assert cfg.training.report_to == ["tensorboard"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("training: {lr: fast}", "training.lr must be a number"),
        ("training: {epochs: -1}", "training.epochs must be positive"),
        ("training: {lrr: 0.1}", "did you mean training.lr"),
        ("trainng: {lr: 0.1}", "unknown config section 'trainng'"),
        ("training: {batch_size: 2.5}", "training.batch_size must be a whole number"),
        ("data: {val_split: 1.5}", "data.val_split must be in [0, 1)"),
        ("training: {precision: fp8}", "training.precision must be one of"),
        ("training: [1, 2]", "must be a mapping"),
        ("- just\n- a list", "must hold a mapping"),
        ("model: {name: [oops", "is not valid YAML at line"),
    ],
)
def test_validation_errors_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, text))
    assert needle in str(err.value)


def test_set_needs_a_section_and_equals():
    with pytest.raises(ConfigError, match="SECTION.KEY"):
        config.load(sets=["lr=0.1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.load(sets=["training.lr"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


def test_round_trip_through_yaml(tmp_path):
    cfg = config.load(sets=["method.r=4", "training.lr=0.5"])
    again = config.load(write(tmp_path, config.to_yaml(cfg)))
    assert again == cfg


def test_config_records_a_list_option_given_as_a_string_as_the_list(monkeypatch):
    """``--set method.KEY=a,b`` for a ``list[str]`` option is recorded (config.yaml) as the list it means."""
    from dataclasses import dataclass

    from tests.plugins.support import FakeMethod
    from tunekit import plugins
    from tunekit.hookspecs import hookimpl
    from tunekit.options import option

    @dataclass
    class ListOptions:
        modules: list[str] = option(["query"], "Modules, e.g. [query, intermediate].")

    class ListMethod(FakeMethod):
        options_class = ListOptions

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(ListMethod("list-method", "A method with a list option."))

    monkeypatch.setattr(plugins, "_current", plugins._current)
    plugins.reset(extra_plugins=[Plugin()])
    for given in ("query,intermediate", "[query, intermediate]"):
        cfg = config.load(sets=["method.name=list-method", f"method.modules={given}"])
        assert cfg.method == {"name": "list-method", "modules": ["query", "intermediate"]}
        assert "modules:\n  - query\n  - intermediate\n" in config.to_yaml(cfg)
    # a value that does not convert is left for the options builder to report with its context
    assert config.load(sets=["method.name=list-method", "method.modules={a: 1}"]).method["modules"] == {"a": 1}
