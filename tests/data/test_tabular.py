"""The csv/tsv/json/jsonl/parquet readers: columns, header-less files, and one-sentence errors."""

from __future__ import annotations

import json

import pytest

from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.errors import DataError


def test_csv_with_header_keeps_text_cells(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('text,label\n"hello, world",1\n"multi\nline",007\n', encoding="utf-8")
    ds = read_dataset(str(f), DataConfig())
    assert ds.column_names == ["text", "label"]
    assert ds["text"] == ["hello, world", "multi\nline"]
    assert ds["label"] == ["1", "007"]


def test_tsv_without_header_names_columns_by_index(tmp_path):
    f = tmp_path / "cola.tsv"
    f.write_text('gj04\t1\t\tOur friends won\'t buy "this".\ngj04\t0\t*\tThe more.\n', encoding="utf-8")
    ds = read_dataset(str(f), DataConfig(header=False))
    assert ds.column_names == ["0", "1", "2", "3"]
    assert ds["1"] == ["1", "0"]
    assert ds["2"] == ["", "*"]
    assert ds["3"][0] == 'Our friends won\'t buy "this".'


def test_tsv_row_with_extra_field_names_the_line(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("sentence\tlabel\nfine\t1\nbroken\t1\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv.*line 3"):
        read_dataset(str(f), DataConfig())


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(str(tmp_path / "nope.csv"), DataConfig())
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="is empty"):
        read_dataset(str(empty), DataConfig())
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        read_dataset(str(header_only), DataConfig())


def test_json_list_and_jsonl(tmp_path):
    records = [{"instruction": "say hi", "input": "", "output": "hi"}, {"instruction": "x", "input": "y", "output": "z"}]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(records), encoding="utf-8")
    ds = read_dataset(str(f), DataConfig())
    assert ds.column_names == ["instruction", "input", "output"]
    assert len(ds) == 2
    g = tmp_path / "a.jsonl"
    g.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    assert read_dataset(str(g), DataConfig())["output"] == ["hi", "z"]


def test_json_chat_records_keep_nested_messages(tmp_path):
    records = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    f = tmp_path / "chat.json"
    f.write_text(json.dumps(records), encoding="utf-8")
    ds = read_dataset(str(f), DataConfig())
    assert ds[0]["messages"][1] == {"role": "assistant", "content": "hello"}


def test_jsonl_bad_line_is_reported(tmp_path):
    g = tmp_path / "a.jsonl"
    g.write_text('{"a": 1}\n{"a": 2\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        read_dataset(str(g), DataConfig())


def test_json_that_is_not_records(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('{"version": 1, "name": "x"}', encoding="utf-8")
    with pytest.raises(DataError, match="not a JSON list of records"):
        read_dataset(str(f), DataConfig())
    bad = tmp_path / "b.json"
    bad.write_text('[{"a": 1},\n {"a": ]', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        read_dataset(str(bad), DataConfig())


def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), f)
    ds = read_dataset(str(f), DataConfig())
    assert ds["label"] == [0, 1]
    assert ds["text"] == ["a", "b"]


def test_unknown_extension_lists_known_ones(tmp_path):
    f = tmp_path / "a.xyz"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"\.csv"):
        read_dataset(str(f), DataConfig())
