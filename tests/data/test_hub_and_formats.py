"""The hub format on local save_to_disk folders, and format selection by content."""

from __future__ import annotations

import json

import pytest

from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.errors import DataError


def test_save_to_disk_folder_dataset_and_dict(tmp_path):
    import datasets

    single = tmp_path / "single"
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(single))
    assert read_dataset(str(single), DataConfig())["label"] == [0, 1]
    both = tmp_path / "both"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["a", "b", "c"]}),
        "test": datasets.Dataset.from_dict({"text": ["z"]}),
    }).save_to_disk(str(both))
    assert len(read_dataset(str(both), DataConfig())) == 3
    assert read_dataset(str(both), DataConfig(split="test"))["text"] == ["z"]
    assert read_dataset(f"{both}:test", DataConfig())["text"] == ["z"]
    with pytest.raises(DataError, match="no split 'validation'.*train, test"):
        read_dataset(str(both), DataConfig(split="validation"))


def test_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        read_dataset(str(tmp_path / "x"), DataConfig())


def test_unreachable_hub_name_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load the dataset 'nobody/no-such-dataset-xyz'"):
        read_dataset("nobody/no-such-dataset-xyz", DataConfig())


def test_squad_json_vs_plain_json(tmp_path):
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"version": "v1.1", "data": [{"title": "t", "paragraphs": [
        {"context": "paris is big", "qas": [{"id": "1", "question": "what is big", "answers": [
            {"text": "paris", "answer_start": 0}]}]}]}]}), encoding="utf-8")
    assert read_dataset(str(squad), DataConfig()).column_names[:4] == ["id", "title", "context", "question"]
    plain = tmp_path / "p.json"
    plain.write_text(json.dumps([{"question": "q", "context": "c"}]), encoding="utf-8")
    assert read_dataset(str(plain), DataConfig()).column_names == ["question", "context"]


def test_named_format_overrides_extension(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("text\tlabel\nhi\t1\n", encoding="utf-8")
    assert read_dataset(str(f), DataConfig(format="tsv"))["label"] == ["1"]
