"""Checkpoint folders: atomic writes, completion markers, pruning, RNG round trip, fingerprints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tinyjob import tiny_bert

from tunekit.engine import checkpoint as ckpt
from tunekit.errors import CheckpointError


def test_atomic_folder_leaves_nothing_behind_on_failure(tmp_path):
    final = tmp_path / "checkpoints" / "step-1"
    with pytest.raises(RuntimeError):
        with ckpt.atomic_folder(final) as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("killed")
    assert not final.exists() and list((tmp_path / "checkpoints").iterdir()) == []
    with ckpt.atomic_folder(final) as tmp:
        (tmp / "x").write_text("whole")
    assert (final / ckpt.MARKER).is_file() and (final / "x").read_text() == "whole"


def test_incomplete_folders_are_ignored_and_the_newest_complete_wins(tmp_path):
    for step in (5, 10, 20):
        with ckpt.atomic_folder(ckpt.step_dir(tmp_path, step)):
            pass
    (ckpt.checkpoints_dir(tmp_path) / "step-30").mkdir()  # no marker: a copy cut short
    (ckpt.checkpoints_dir(tmp_path) / ".tmp-step-40-123").mkdir()
    assert ckpt.find_last_checkpoint(tmp_path).name == "step-20"
    ckpt.prune(tmp_path, keep=2)
    names = sorted(p.name for p in ckpt.checkpoints_dir(tmp_path).iterdir())
    assert names == ["step-10", "step-20"]
    assert ckpt.find_last_checkpoint(tmp_path / "nothing") is None


def test_output_dir_rules(tmp_path):
    assert ckpt.checkpoint_to_resume(tmp_path, resume=False) is None
    with ckpt.atomic_folder(ckpt.step_dir(tmp_path, 3)):
        pass
    (tmp_path / ckpt.BEST).mkdir()
    with pytest.raises(CheckpointError, match="--resume"):
        ckpt.checkpoint_to_resume(tmp_path, resume=False)
    assert ckpt.checkpoint_to_resume(tmp_path, resume=True).name == "step-3"
    assert ckpt.checkpoint_to_resume(tmp_path, resume=False, overwrite=True) is None
    assert ckpt.find_last_checkpoint(tmp_path).name == "step-3"  # deciding deletes nothing
    ckpt.clear_training_files(tmp_path)
    assert ckpt.find_last_checkpoint(tmp_path) is None and not (tmp_path / ckpt.BEST).exists()


def test_rng_states_round_trip_through_json():
    import json

    state = json.loads(json.dumps(ckpt.rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)  # move on
    ckpt.set_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_weights_round_trip_and_mismatch_is_a_checkpoint_error(tmp_path):
    model = tiny_bert()
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier")
    ckpt.save_weights(model, tmp_path / "w.safetensors")
    other = tiny_bert(seed=1)
    for name, p in other.named_parameters():
        p.requires_grad = name.startswith("classifier")
    ckpt.load_weights(other, tmp_path / "w.safetensors")
    assert torch.equal(other.classifier.weight, model.classifier.weight)
    for p in other.parameters():
        p.requires_grad = True
    with pytest.raises(CheckpointError, match="different model or method"):
        ckpt.load_weights(other, tmp_path / "w.safetensors")


def test_fingerprint_ignores_settings_that_do_not_change_training():
    tree = {"training": {"lr": 1e-3, "resume": False, "logging_steps": 10}, "output": {"dir": "a"}}
    same = {"training": {"lr": 1e-3, "resume": True, "logging_steps": 1}, "output": {"dir": "b"}}
    other = {"training": {"lr": 2e-3, "resume": False, "logging_steps": 10}, "output": {"dir": "a"}}
    assert ckpt.config_fingerprint(tree) == ckpt.config_fingerprint(same)
    assert ckpt.config_fingerprint(tree) != ckpt.config_fingerprint(other)
