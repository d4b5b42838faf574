"""seq2seq: tiny random T5 and BART learn a copy task through `tunekit.run`, round-trip through the run folder
(load_run, `tunekit predict/generate/eval`), and the data, label and decoder-start handling."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import datasets
import pytest
import torch
from click.testing import CliRunner

import tunekit
from tunekit import cli as cli_module
from tunekit import options as opts
from tunekit.config import DataConfig
from tunekit.data import read_dataset
from tunekit.errors import ConfigError, DataError, UsageError
from tunekit.models import ResolvedModel
from tunekit.plugins import registries
from tunekit.tasks.protocol import TaskContext

WORDS = "red green blue cat dog bird sun moon tree rock sea sky one two three four".split()
SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0 1 2 3
RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"


def make_tokenizer(family: str):
    """A word-level tokenizer built in code; T5 ends sources with </s>, BART wraps them in <s> ... </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([*SPECIALS, *WORDS, "summarize:"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    single = "$A </s>" if family == "t5" else "<s> $A </s>"
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 3), ("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")


def make_model(family: str, vocab: int):
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if family == "t5":  # T5 starts the decoder with the pad id
        return T5ForConditionalGeneration(T5Config(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    return BartForConditionalGeneration(BartConfig(  # BART starts it with </s>
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0,
        init_std=0.1, pad_token_id=0, eos_token_id=1, bos_token_id=3, decoder_start_token_id=1, forced_eos_token_id=1))


@pytest.fixture(scope="module", params=["t5", "bart"])
def family_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    tok = make_tokenizer(request.param)
    make_model(request.param, len(tok)).save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    return request.param, folder


def copy_rows(n: int = 12, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    sources = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))) for _ in range(n)]
    return [{"source": s, "target": s} for s in sources]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(model: Path, data: Path, out: Path, method: dict, steps: int, lr: float) -> dict:
    return {"model": {"name": str(model)},
            "task": {"name": "seq2seq", "metric": "exact_match", "max_new_tokens": 8},
            "method": method,
            "data": {"train": str(data), "validation": str(data)},
            "training": {"max_steps": steps, "batch_size": 12, "lr": lr, "seed": 0, "eval_each_epoch": False,
                         "logging_steps": 20},
            "output": {"dir": str(out)}}


def _cli(*args: str):
    cli_module._load_commands()
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=True)


def test_full_copy_task_and_run_folder_round_trip(family_folder):
    family, folder = family_folder
    rows = copy_rows()
    data = _jsonl(folder / "copy.jsonl", rows)
    result = tunekit.run(_config(folder / "model", data, folder / "run", {"name": "full"}, 60, 1e-2))
    summary = result.summary
    assert summary["eval_loss"] < 0.1, summary
    assert summary["eval_exact_match"] == 100.0 and summary["eval_chrf"] == pytest.approx(100.0)
    sources = [r["source"] for r in rows]
    loaded = tunekit.load_run(result.output_dir)
    assert loaded.job.predict(loaded.model, sources) == sources
    loaded.job.options.num_beams = 3  # beam search finds the same (near-certain) outputs
    assert loaded.job.predict(loaded.model, sources[:4]) == sources[:4]
    res = _cli("predict", "--run", str(result.output_dir), "--data", str(data))
    assert res.exit_code == 0, res.output
    outputs = [json.loads(line)["output"] for line in res.stdout.strip().splitlines()]
    assert outputs == sources
    res = _cli("generate", "--run", str(result.output_dir), "--prompt", sources[0], "--max-new-tokens", "8")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == sources[0]
    res = _cli("eval", "--run", str(result.output_dir), "--data", str(data), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["eval_exact_match"] == 100.0


def test_lora_with_explicit_targets_learns_the_copy_task(family_folder):
    family, folder = family_folder
    data = _jsonl(folder / "copy.jsonl", copy_rows())
    # A random tiny BART's frozen tied head and layer norms cap its logits (loss stalls near 0.6 with attention
    # alone), so its LoRA also adapts lm_head; T5 learns with attention alone.
    targets = ["q", "k", "v", "o"] if family == "t5" else ["q_proj", "k_proj", "v_proj", "out_proj", "lm_head"]
    method = {"name": "lora", "r": 8, "target_modules": targets}
    summary = tunekit.run(_config(folder / "model", data, folder / "lora", method, 80, 2e-2)).summary
    assert summary["eval_loss"] < 0.2, summary
    assert summary["eval_exact_match"] == 100.0
    assert summary["trainable_params"] < summary["total_params"] / 2


# --- the job without training -------------------------------------------------------------------


def _job(tok, train, validation=None, **task_options):
    task = registries().tasks.get("seq2seq")
    options = opts.build(task.options_class, {"max_new_tokens": 6, **task_options})
    ctx = TaskContext(tok, options, DataConfig(), datasets.Dataset.from_list(train),
                      datasets.Dataset.from_list(validation or train), 0)
    return task.prepare(ctx)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_loss_is_transformers_teacher_forced_loss(family):
    """Labels padded with -100 and the family's decoder start give the loss transformers computes from labels."""
    tok = make_tokenizer(family)
    job = _job(tok, [{"source": "red cat", "target": "one two three four"}, {"source": "sun", "target": "sky"}])
    batch = job.collate(job.train_dataset)
    assert batch["labels"][1].tolist() == [*tok("sky")["input_ids"], -100, -100, -100][: batch["labels"].shape[1]]
    assert batch["labels"][0, -1].item() == tok.eos_token_id
    model = make_model(family, len(tok))
    start = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])[:, 0]
    assert start.tolist() == [model.config.decoder_start_token_id] * 2 == [0 if family == "t5" else 1] * 2
    ours = job.loss(model, batch)
    theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert job.loss_weight(batch) == int((batch["labels"] != -100).sum()) == 4 + 1 + 1 + 1 + (family == "bart") * 2


def test_prefix_lengths_and_options():
    tok = make_tokenizer("t5")
    job = _job(tok, [{"source": "red cat dog bird", "target": "one two three four"}] * 2, source_prefix="summarize: ",
               max_source_length=3, max_target_length=3, metric="chrf")
    feature = job.train_dataset[0]
    assert tok.convert_ids_to_tokens(feature["input_ids"]) == ["summarize:", "red", "</s>"]
    assert tok.convert_ids_to_tokens(feature["labels"]) == ["one", "two", "</s>"]
    assert feature["reference"] == "one two three four"  # scored against the whole reference text
    assert (job.metric_for_best, job.greater_is_better) == ("eval_chrf", True)
    assert _job(tok, [{"source": "a", "target": "b"}] * 2, metric="loss").greater_is_better is False


def test_columns_by_option_data_setting_and_dotted_key():
    tok = make_tokenizer("t5")
    rows = [{"en": "red cat", "xx": "one"}, {"en": "sun", "xx": "two"}]
    job = _job(tok, rows, source_column="en", target_column="xx")
    assert (job.source_column, job.target_column) == ("en", "xx")
    nested = [{"translation": {"en": "red", "de": "one"}}, {"translation": {"en": "sun", "de": "two"}}]
    job = _job(tok, nested, source_column="translation.en", target_column="translation.de")
    assert [f["reference"] for f in job.train_dataset] == ["one", "two"]
    assert tok.convert_ids_to_tokens(job.train_dataset[1]["input_ids"]) == ["sun", "</s>"]


def test_missing_columns_are_clear_errors():
    tok = make_tokenizer("t5")
    with pytest.raises(DataError, match=r"no source column 'body' \(columns: source, target\).*task.source_column"):
        _job(tok, [{"source": "a", "target": "b"}] * 2, source_column="body")
    with pytest.raises(DataError, match="could not tell which column holds the target.*task.target_column"):
        _job(tok, [{"source": "a", "other": "b"}] * 2)
    with pytest.raises(DataError, match="no target column 'target'.*columns: source"):
        _job(tok, [{"source": "a", "target": "b"}] * 2, validation=[{"source": "a"}])
    with pytest.raises(DataError, match="column 'translation' has no key 'fr'"):
        _job(tok, [{"translation": {"en": "a"}, "target": "b"}] * 2, source_column="translation.fr")
    with pytest.raises(DataError, match="row 2 has no text in 'target'"):
        _job(tok, [{"source": "a", "target": "b"}, {"source": "a", "target": None}])


@pytest.mark.parametrize("suffix", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_every_file_format_gives_the_same_features(tmp_path, suffix):
    rows = copy_rows(4)
    frame = datasets.Dataset.from_list(rows)
    path = tmp_path / f"data.{suffix}"
    if suffix in ("csv", "tsv"):
        frame.to_csv(str(path), index=False, sep="," if suffix == "csv" else "\t")
    elif suffix == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == "jsonl":
        _jsonl(path, rows)
    else:
        frame.to_parquet(str(path))
    tok = make_tokenizer("t5")
    job = _job(tok, rows)
    assert job.encode(read_dataset(str(path), DataConfig())) == job.encode(frame)


def test_generation_is_bounded_and_decoder_only_models_are_refused(tiny_llama):
    tok = make_tokenizer("bart")
    rows = copy_rows(5)
    job = _job(tok, rows, generate_eval_samples=3)
    model = make_model("bart", len(tok))
    seen = []
    real = job._generate_ids
    job._generate_ids = lambda m, ids, mask: seen.append(len(ids)) or real(m, ids, mask)
    data = job.eval_dataset
    scores = job.evaluate(model, [job.collate(data[:2]), job.collate(data[2:])])
    assert sum(seen) == 3 and {"eval_loss", "eval_rougeL", "eval_chrf", "eval_bleu"} <= set(scores)
    with pytest.raises(ConfigError, match="not an encoder-decoder model.*causal-lm"):
        job.build_model(ResolvedModel(str(tiny_llama)), {})


def test_missing_metric_package_fails_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(UsageError, match=r"need the sacrebleu package.*pip install 'tunekit\[generation\]'"):
        _job(make_tokenizer("t5"), copy_rows(2))


def test_hub_recipes_have_valid_task_options():
    task = registries().tasks.get("seq2seq")
    for name in ("t5-small-summarisation", "opus-mt-translation"):
        cfg = tunekit.load_config(RECIPES / f"{name}.yaml")
        assert cfg.task_name == "seq2seq"
        options = opts.build(task.options_class, {k: v for k, v in cfg.task.items() if k != "name"})
        assert options.num_beams == 4
