"""Hypothesis fuzzing of the config loader and the dataset readers.

Whatever the input (random YAML trees and text, CSV/TSV/JSON/JSON-lines/CoNLL/SQuAD shapes, random
bytes), the loader either returns a value or raises a ``TunekitError``: never anything else.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tunekit import config as config_mod
from tunekit.config import DataConfig, RunConfig
from tunekit.data import read_dataset
from tunekit.errors import TunekitError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
WORD = st.text(alphabet=string.ascii_letters + string.digits + " _-.,;\t\"'", max_size=12)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def _known_keys() -> dict[str, list[str]]:
    import dataclasses

    keys = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in ("method", "task"):
            keys[f.name] = ["name", "r", "alpha", "target_modules", "reduction_factor", "num_virtual_tokens",
                            "max_length", "stride"]
        else:
            keys[f.name] = [g.name for g in dataclasses.fields(f.default_factory())]
    return keys


KNOWN = _known_keys()
SECTION = st.one_of(st.sampled_from(sorted(KNOWN)), TEXT)


@st.composite
def config_trees(draw):
    """Mostly-plausible configuration trees: real sections and keys with values of any type."""
    tree = {}
    for section in draw(st.lists(SECTION, max_size=4, unique=True)):
        keys = st.one_of(st.sampled_from(KNOWN.get(section, ["name"])), TEXT)
        tree[section] = draw(st.one_of(
            st.dictionaries(keys, JSON_VALUE, max_size=5),
            JSON_VALUE,
        ))
    return tree


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="tunekit-fuzz-") as folder:
        yield Path(folder)


def _loads_or_tunekit_error(fn, *args):
    try:
        return fn(*args)
    except TunekitError as exc:
        assert str(exc).strip()  # (the CLI prints it on one line even when it quotes a newline)
        return None


# ---------------------------------------------------------------- the config loader


@FAST
@given(tree=config_trees())
def test_config_from_any_tree(tree):
    cfg = _loads_or_tunekit_error(config_mod.from_dict, tree)
    assert cfg is None or isinstance(cfg, RunConfig)


@FAST
@given(tree=config_trees())
def test_config_yaml_file_round_trip(scratch, tree):
    path = scratch / "config.yaml"
    try:
        path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    except (yaml.YAMLError, UnicodeEncodeError):  # not every Python value has a YAML spelling
        return
    cfg = _loads_or_tunekit_error(config_mod.load, path)
    if cfg is not None:  # what loaded must write back as YAML and load to the same config
        again = config_mod.from_dict(yaml.safe_load(config_mod.to_yaml(cfg)))
        assert again.to_dict() == cfg.to_dict()


@FAST
@given(text=st.text(max_size=200))
def test_config_any_text(scratch, text):
    path = scratch / "text.yaml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    _loads_or_tunekit_error(config_mod.load, path)


@FAST
@given(blob=st.binary(max_size=200))
def test_config_any_bytes(scratch, blob):
    path = scratch / "bytes.yaml"
    path.write_bytes(blob)
    _loads_or_tunekit_error(config_mod.load, path)


@FAST
@given(sets=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([f"{s}.{k}" for s, ks in KNOWN.items() for k in ks]), TEXT),
    TEXT), max_size=3))
def test_config_set_flags(sets):
    _loads_or_tunekit_error(config_mod.load, None, None, sets)


# ---------------------------------------------------------------- the dataset readers


def _read(path: Path, header: bool = True, fmt: str | None = None):
    data = DataConfig(header=header, format=fmt)
    rows = _loads_or_tunekit_error(read_dataset, str(path), data)
    if rows is not None:
        assert len(rows) >= 1 and all(isinstance(c, str) for c in rows.column_names)
    return rows


@FAST
@given(rows=st.lists(st.lists(WORD, min_size=1, max_size=4), max_size=6), sep=st.sampled_from([",", "\t", ";", "|"]),
       header=st.booleans(), suffix=st.sampled_from([".csv", ".tsv"]))
def test_delimited_shapes(scratch, rows, sep, header, suffix):
    path = scratch / f"table{suffix}"
    path.write_text("".join(sep.join(row) + "\n" for row in rows), encoding="utf-8")
    _read(path, header)


@FAST
@given(value=JSON_VALUE, suffix=st.sampled_from([".json", ".jsonl"]))
def test_json_shapes(scratch, value, suffix):
    path = scratch / f"records{suffix}"
    if suffix == ".jsonl" and isinstance(value, list):
        path.write_text("".join(json.dumps(v) + "\n" for v in value), encoding="utf-8")
    else:
        path.write_text(json.dumps(value), encoding="utf-8")
    _read(path)


@FAST
@given(records=st.lists(st.dictionaries(st.sampled_from(["text", "label", "sentence", "x"]), JSON_VALUE, max_size=3),
                        min_size=1, max_size=5), suffix=st.sampled_from([".json", ".jsonl"]))
def test_json_records_of_mixed_types(scratch, records, suffix):
    path = scratch / f"mixed{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    _read(path)


@st.composite
def squad_like(draw):
    """SQuAD's nesting with random types and missing fields at every level."""
    def maybe(strategy):
        return st.one_of(strategy, JSON_VALUE)

    answer = st.fixed_dictionaries({}, optional={"text": maybe(TEXT), "answer_start": maybe(st.integers(-5, 50))})
    qa = st.fixed_dictionaries({}, optional={"question": maybe(TEXT), "id": JSON_VALUE, "is_impossible": JSON_VALUE,
                                             "answers": maybe(st.lists(maybe(answer), max_size=3))})
    para = st.fixed_dictionaries({"context": maybe(TEXT)}, optional={"qas": maybe(st.lists(maybe(qa), max_size=3))})
    article = st.fixed_dictionaries({"paragraphs": maybe(st.lists(maybe(para), max_size=3))},
                                    optional={"title": JSON_VALUE})
    return {"version": "v2.0", "data": draw(st.lists(maybe(article), min_size=1, max_size=3))}


@SLOWER
@given(tree=squad_like())
def test_squad_shapes(scratch, tree):
    path = scratch / "squad.json"
    path.write_text(json.dumps(tree), encoding="utf-8")
    _read(path)


@FAST
@given(lines=st.lists(st.one_of(st.just(""), st.just("-DOCSTART- -X- O O"),
                                st.lists(WORD.filter(lambda w: w.strip()), min_size=1, max_size=4).map(" ".join)),
                      max_size=12))
def test_conll_shapes(scratch, lines):
    path = scratch / "tags.conll"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _read(path)


@FAST
@given(blob=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".json", ".jsonl", ".parquet", ".conll"]),
       header=st.booleans())
def test_any_bytes(scratch, blob, suffix, header):
    path = scratch / f"blob{suffix}"
    path.write_bytes(blob)
    _read(path, header)


@SLOWER
@given(columns=st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=5),
                               st.lists(st.one_of(st.integers(-3, 3), TEXT, st.none()), min_size=1, max_size=3),
                               min_size=1, max_size=3))
def test_parquet_tables(scratch, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    width = min(len(v) for v in columns.values())
    try:
        table = pa.table({k: v[:width] for k, v in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types: not a table pyarrow can write
        return
    path = scratch / "table.parquet"
    pq.write_table(table, path)
    _read(path)


# ---------------------------------------------------------------- the tasks, on whatever rows a reader returned


@pytest.fixture(scope="module")
def tokenizers(models):
    from transformers import AutoTokenizer

    return {"encoder": AutoTokenizer.from_pretrained(models["bert"]),
            "decoder": AutoTokenizer.from_pretrained(models["llama"])}


TASK_FIELDS = ["sentence", "text", "label", "prompt", "response", "instruction", "output", "messages", "tokens",
               "tags", "question", "context", "answers"]


COLUMN_KINDS = [TEXT, st.sampled_from(["pos", "neg", "0", "1"]), st.integers(-3, 3), st.lists(TEXT, max_size=4),
                st.lists(st.sampled_from(["O", "B-X", "I-X"]), max_size=4),
                st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "x"]),
                                                "content": TEXT}), max_size=3),
                st.fixed_dictionaries({"text": st.lists(TEXT, max_size=2),
                                       "answer_start": st.lists(st.integers(-2, 40), max_size=2)}),
                st.none()]


@st.composite
def typed_records(draw):
    """Records whose columns each hold one kind of value (what a reader accepts), in shapes tasks may meet."""
    fields = draw(st.lists(st.sampled_from(TASK_FIELDS), min_size=1, max_size=4, unique=True))
    kinds = {f: draw(st.sampled_from(COLUMN_KINDS)) for f in fields}
    n = draw(st.integers(1, 6))
    return [{f: draw(kind) for f, kind in kinds.items()} for _ in range(n)]


@SLOWER
@given(records=st.one_of(typed_records(), st.lists(st.dictionaries(st.sampled_from(TASK_FIELDS), JSON_VALUE,
                                                                   min_size=1, max_size=4), min_size=1, max_size=6)),
       task=st.sampled_from(["sequence-classification", "causal-lm", "token-classification", "question-answering"]))
def test_tasks_on_any_records(scratch, tokenizers, records, task):
    """A task's prepare() on rows of any shape either works or raises a TunekitError."""
    import tunekit
    from tunekit import options as opts
    from tunekit.tasks.protocol import TaskContext

    registered = tunekit.registries().tasks
    if task not in registered:
        return
    path = scratch / "task.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    data = DataConfig()
    rows = _read(path)
    if rows is None:
        return
    event("the reader accepted the records")
    plugin = registered.get(task)
    tokenizer = tokenizers["decoder" if task == "causal-lm" else "encoder"]
    options = opts.build(plugin.options_class, {}, where="task")
    _loads_or_tunekit_error(plugin.prepare, TaskContext(tokenizer, options, data, rows, None, 0))
