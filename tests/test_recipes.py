"""Every recipe in docs/recipes runs for a few steps on ../shared/data (integration, slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import tunekit
from tests.helpers import DATA, REPO

RECIPES = sorted((REPO / "docs" / "recipes").glob("*.yaml"))
HUB_ONLY = {"t5-small-summarisation", "opus-mt-translation"}  # need a model hub: config-validated only


def test_there_is_a_recipe_for_every_task_and_method():
    names = {p.stem for p in RECIPES}
    for method in ("lora", "houlsby", "pfeiffer", "freeze", "full"):
        assert {f"sst2-{method}", f"cola-{method}"} <= names
    assert {"imdb-feature-extraction", "squad-qa", "conll-ner", "smollm2-alpaca", "smollm2-prompt-response",
            "smollm2-int8-lora"} <= names


def test_recipes_are_valid_configs():
    for path in RECIPES:
        cfg = tunekit.load_config(path)
        registries = tunekit.registries()
        assert cfg.method_name in registries.methods, path.name
        assert cfg.task_name in registries.tasks, path.name


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_a_few_steps(recipe, tmp_path, monkeypatch):
    if recipe.stem in HUB_ONLY:
        pytest.skip(f"{recipe.name} loads its model and data from the Hugging Face hub")
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent: recipes read ../shared/data")
    monkeypatch.chdir(REPO)  # recipes name their data relative to the repository root
    cfg = tunekit.load_config(recipe, sets=[
        "training.max_steps=2", "training.batch_size=4", "data.max_train_samples=48", "data.max_eval_samples=16",
        f"output.dir={tmp_path / 'run'}", "training.eval_each_epoch=false",
    ])
    if cfg.task_name == "causal-lm":
        cfg.task["max_length"] = 96
        cfg.task["max_new_tokens"] = 8
    result = tunekit.run(cfg)
    summary = json.loads(Path(result.output_dir, "summary.json").read_text())
    assert summary["steps"] == 2
    assert 0 < summary["trainable_params"] <= summary["total_params"]
    eval_values = [v for k, v in summary.items() if k.startswith("eval_") and isinstance(v, float)]
    assert eval_values and all(math.isfinite(v) for v in eval_values)
    assert any((Path(result.output_dir) / "adapter").iterdir())
