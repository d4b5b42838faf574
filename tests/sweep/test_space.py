"""The search-space file: parsing, conditional parameters, sampling into a run config, and the errors."""

from __future__ import annotations

import optuna
import pytest

from tunekit.errors import ConfigError
from tunekit.sweep import space as sp

BASE = {"model": {"name": "tiny"}, "task": {"name": "sequence-classification"},
        "method": {"name": "lora", "r": 8}, "training": {"seed": 5}}


def write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


SPACE = """
metric: eval_f1
pruner: {type: hyperband, min_resource: 2}
sampler: {type: random, seed: 0}
params:
  training.lr: {low: 1e-5, high: 1e-2, log: true}
  training.batch_size: [4, 8]
  method.name: {choices: [lora, pfeiffer, full]}
  method.r: {low: 2, high: 16, log: true, when: {method.name: lora}}
  method.reduction_factor: {choices: [8, 16], when: {method.name: [pfeiffer]}}
  task.max_length: {low: 16, high: 64, step: 16}
"""


def test_parse_kinds_and_defaults(tmp_path):
    space = sp.load(write(tmp_path, SPACE), BASE)
    kinds = {p.key: (p.kind, p.low, p.high, p.log) for p in space.params}
    assert kinds["training.lr"] == ("float", 1e-5, 1e-2, True)  # `1e-5` is text to YAML: read as a number
    assert kinds["method.r"] == ("int", 2, 16, True)
    assert kinds["task.max_length"][:3] == ("int", 16, 64)
    assert space.metric == "eval_f1" and space.direction is None
    assert isinstance(space.build_pruner(), optuna.pruners.HyperbandPruner)
    assert isinstance(space.build_sampler(0), optuna.samplers.RandomSampler)
    default = sp.load(write(tmp_path, "params:\n  training.lr: {low: 0.001, high: 0.01}\n"), BASE)
    assert isinstance(default.build_pruner(), optuna.pruners.NopPruner)
    assert isinstance(default.build_sampler(0), optuna.samplers.TPESampler)


def test_conditional_params_follow_the_method(tmp_path):
    space = sp.load(write(tmp_path, SPACE), BASE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        tree = space.sample(trial, BASE)
        method = tree["method"]["name"]
        seen.add(method)
        assert ("method.r" in trial.params) == (method == "lora")
        assert ("method.reduction_factor" in trial.params) == (method == "pfeiffer")
        if method == "lora":
            assert 2 <= tree["method"]["r"] <= 16
        else:  # the base config's lora option r does not leak into another method
            assert "r" not in tree["method"]
        assert tree["task"]["max_length"] in (16, 32, 48, 64)
        assert tree["task"]["name"] == "sequence-classification"
        study.tell(trial, 0.0)
    assert seen == {"lora", "pfeiffer", "full"}
    assert BASE["method"] == {"name": "lora", "r": 8}  # sampling never changes the base tree


def test_condition_on_a_base_config_value(tmp_path):
    text = "params:\n  method.r: {low: 2, high: 4, when: {method.name: lora}}\n" \
           "  method.reduction_factor: {choices: [8], when: {method.name: pfeiffer}}\n"
    space = sp.load(write(tmp_path, text), BASE)
    trial = optuna.create_study().ask()
    tree = space.sample(trial, BASE)
    assert set(trial.params) == {"method.r"} and tree["method"]["name"] == "lora"


@pytest.mark.parametrize(("text", "needle"), [
    ("params:\n  training.lrr: {low: 0.1, high: 1.0}\n", "unknown option training.lrr (did you mean training.lr?)"),
    ("params:\n  method.rank: {low: 2, high: 8}\n", "method.rank"),
    ("params:\n  optimizer.lr: {low: 0.1, high: 1.0}\n", "unknown key 'optimizer.lr'"),
    ("params:\n  training.lr: {low: 0.1, high: 0.01}\n", "empty range"),
    ("params:\n  training.batch_size: {choices: []}\n", "has no choices"),
    ("params:\n  training.lr: {low: 0, high: 0.1, log: true}\n", "low must be above 0"),
    ("params:\n  training.lr: {low: 0.1}\n", "needs low and high"),
    ("params:\n  training.lr: {low: 0.1, high: 0.2, scale: 2}\n", "unknown field 'scale'"),
    ("params: {}\n", "has no params"),
    ("params:\n  method.target_modules: {choices: [[query], [query, value]]}\n", "comma-separated text"),
    ("trials: 3\nparams:\n  training.lr: [0.1]\n", "unknown key 'trials'"),
    ("pruner: asha\nparams:\n  training.lr: [0.1]\n", "unknown pruner 'asha'"),
    ("pruner: {type: median, patience: 3}\nparams:\n  training.lr: [0.1]\n", "has no option 'patience'"),
    ("direction: up\nparams:\n  training.lr: [0.1]\n", "direction must be maximize or minimize"),
    ("params:\n  method.name: [lora, no-such-method]\n", "no-such-method"),
    ("params:\n  training.batch_size: [0, 8]\n", "training.batch_size must be positive"),
    ("params:\n  method.r: {low: 2, high: 8, when: {method.name: lora}}\n  method.name: [lora, full]\n",
     "list method.name before method.r"),
])
def test_bad_space_files_name_the_problem(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        sp.load(write(tmp_path, text), BASE)
    message = str(err.value)
    assert needle in message and "space.yaml" in message
    assert "\n" not in message


def test_list_options_as_comma_separated_choices(tmp_path):
    space = sp.load(write(tmp_path, "params:\n  method.target_modules: [\"query,value\", query]\n"), BASE)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    from tunekit.config import from_dict, load

    cfg = from_dict(space.sample(trial, BASE))
    chosen = trial.params["method.target_modules"]
    as_set = load(None, {"method": {"name": "lora"}}, [f"method.target_modules={chosen}"])
    assert cfg.method["target_modules"] == as_set.method["target_modules"]  # what --set would give


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        sp.load(tmp_path / "nope.yaml", BASE)


PER_METHOD = """
sampler: {type: random, seed: 0}
params:
  method.name: [lora, full]
  training.lr:
    - {low: 1e-5, high: 1e-4, log: true, when: {method.name: full}}
    - {low: 1e-3, high: 1e-2, log: true, when: {method.name: lora}}
"""


def test_a_key_can_have_one_range_per_condition(tmp_path):
    space = sp.load(write(tmp_path, PER_METHOD), BASE)
    assert [p.optuna_name for p in space.params] == [
        "method.name", "training.lr (method.name=full)", "training.lr (method.name=lora)"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        tree = space.sample(study.ask(), BASE)
        method, lr = tree["method"]["name"], tree["training"]["lr"]
        seen.add(method)
        assert (1e-5 <= lr <= 1e-4) if method == "full" else (1e-3 <= lr <= 1e-2)
    assert seen == {"lora", "full"}


@pytest.mark.parametrize("ranges, message", [
    ("    - {low: 1e-5, high: 1e-4}\n    - {low: 1e-3, high: 1e-2, when: {method.name: lora}}\n", "each needs a `when`"),
    ("    - {low: 1e-5, high: 1e-4, when: {method.name: lora}}\n"
     "    - {low: 1e-3, high: 1e-2, when: {method.name: lora}}\n", "the same `when`"),
])
def test_several_ranges_need_distinct_conditions(tmp_path, ranges, message):
    with pytest.raises(ConfigError, match=message):
        sp.load(write(tmp_path, "params:\n  method.name: [lora, full]\n  training.lr:\n" + ranges), BASE)


def test_overlapping_ranges_are_refused_when_both_apply(tmp_path):
    text = ("params:\n  method.name: [lora]\n  training.lr:\n"
            "    - {low: 1e-5, high: 1e-4, when: {method.name: lora}}\n"
            "    - {low: 1e-3, high: 1e-2, when: {training.seed: 5}}\n")
    space = sp.load(write(tmp_path, text), BASE)
    with pytest.raises(ConfigError, match="two ranges of training.lr apply to the same trial"):
        space.sample(optuna.create_study().ask(), BASE)


def test_each_worker_and_each_continuation_samples_from_its_own_seed(tmp_path):
    space = sp.load(write(tmp_path, "sampler: {type: random, seed: 0}\nparams:\n  training.lr: {low: 0.001, high: 0.01}\n"),
                    BASE)

    def first_values(stream: tuple[int, ...]) -> list[float]:
        study = optuna.create_study(sampler=space.build_sampler(5, stream))
        return [study.ask().suggest_float("training.lr", 0.001, 0.01) for _ in range(3)]

    fresh = first_values((0, 0))
    assert fresh == first_values((0, 0))  # an uninterrupted sweep is reproducible
    assert fresh == first_values(())
    others = [first_values(s) for s in [(1, 0), (0, 3), (1, 3)]]
    assert all(set(values).isdisjoint(fresh) for values in others)
    assert others[0] != others[1] != others[2]


def test_a_continued_study_does_not_propose_its_earlier_trials_again(tmp_path):
    from tunekit.sweep import study as st

    space = sp.load(write(tmp_path, "sampler: {type: random, seed: 0}\nparams:\n  training.lr: {low: 0.001, high: 0.01}\n"),
                    BASE)
    sweep = st.Sweep("s", tmp_path, BASE, space, 6, st.default_storage(tmp_path), "eval_loss", "minimize", seed=5)

    def propose(count: int) -> list[float]:
        study = st.open_study(sweep)  # a fresh process opening the stored study
        values = []
        for _ in range(count):
            trial = study.ask()
            values.append(space.sample(trial, BASE)["training"]["lr"])
            study.tell(trial, 1.0)
        return values

    first = propose(3)
    assert set(propose(3)).isdisjoint(first)


def test_workers_share_the_cores_unless_told_otherwise(monkeypatch):
    import torch

    from tunekit.sweep import study as st

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(st.os, "cpu_count", lambda: 8)
    try:
        assert st.share_cores(1) is None
        assert st.share_cores(4) == 2 and torch.get_num_threads() == 2
        assert st.share_cores(16) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert st.share_cores(4) is None
    finally:
        torch.set_num_threads(before)


def test_the_documented_sweep_spaces_parse_against_their_base():
    from tests.helpers import REPO
    from tunekit import config as config_mod

    base = config_mod.read_yaml(REPO / "docs" / "recipes" / "cola-sweep.yaml")
    space = sp.load(REPO / "docs" / "recipes" / "sweeps" / "cola-space.yaml", base)
    assert {p.key for p in space.params} >= {"method.name", "training.lr", "training.epochs"}
