"""LoRA SFT on SmolLM2-135M with the alpaca demo data: tunekit vs PEFT + the transformers Trainer.

Both sides: the same N training and M held-out examples (disjoint slices of a fixed shuffle), rendered with
the tokenizer's chat template, loss on the response tokens only, max length 256, 8 examples per optimiser
step, one epoch, LoRA r=8 alpha=16 on q_proj/v_proj, lr 5e-4 (the Trainer's other settings are its defaults:
linear decay, no warm-up, AdamW, grad-norm clip 1.0; batches in random order on both sides). The target
compares tunekit in bf16 with the Trainer at its default fp32; both sides also run at the other precision,
reported beside it. Wall time covers loading, tokenizing, training, evaluating the held-out slice (in the
run's precision) and saving the adapter. The compared eval loss is computed for both sides by the same fp32
function here (token-weighted cross-entropy over the held-out responses); the untrained model's loss on the
same slice is computed in the PEFT process before its clock starts.

    python benchmarks/bench_sft.py [--quick]

One side alone (how the seed spread and the bf16 figures in benchmarks/README.md were measured; ``seed`` defaults
to 42 and ``precision`` to fp32 on both sides):

    PYTHONPATH=benchmarks python benchmarks/bench_sft.py --child tunekit --out r.json \
        --params '{"train": 32, "eval": 8, "seed": 7, "precision": "bf16", "model": "<SmolLM2 folder>"}'
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import bench_data
from harness import Check, Report, child_main, log, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
LR = 5e-4  # high enough that 12 steps move the held-out loss clearly on both sides
MAX_LENGTH = 256
BATCH = 8
TUNEKIT_PRECISION = "bf16"
"""tunekit's side of the target: bf16 autocast, the setting docs/training.md recommends where the CPU computes bf16
natively (this one: AMD EPYC with avx512_bf16). The peer keeps its default, fp32; both sides are also run at the
other precision and the same-precision ratios are printed beside the target (report only)."""
TARGET = 0.5  # issue #14: LoRA SFT wall time <= 0.5 of PEFT + Trainer at equal or lower held-out loss


def sizes(quick: bool, scale: float = 1.0) -> dict[str, Any]:
    return {"train": 16, "eval": 8} if quick else {"train": round(96 * scale), "eval": round(24 * scale)}


# --- encoding and evaluation shared by both sides ---------------------------------------------------------

def encode(tokenizer: Any, record: dict[str, str], max_length: int = MAX_LENGTH) -> dict[str, list[int]] | None:
    """Chat-templated ids with labels on the assistant turn only, cut at ``max_length`` (None if no label is left)."""
    prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input", "").strip() else "")
    user = [{"role": "user", "content": prompt}]
    before = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": record["output"]}], tokenize=False)
    prompt_ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(before):], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    if all(label == -100 for label in labels[1:]):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def encode_all(tokenizer: Any, records: list[dict[str, str]], max_length: int = MAX_LENGTH) -> list[dict[str, list[int]]]:
    """``encode`` every record, dropping those with no labelled token left."""
    return [f for f in (encode(tokenizer, r, max_length) for r in records) if f is not None]


def eval_loss(model: Any, tokenizer: Any, features: list[dict[str, list[int]]], batch_size: int = BATCH) -> float:
    """Token-weighted next-token cross-entropy over the labelled (response) tokens."""
    import torch
    import torch.nn.functional as F

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, count = 0.0, 0
    features = sorted(features, key=lambda f: len(f["input_ids"]))  # a sum over tokens: order-free, less padding
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = features[start:start + batch_size]
            width = max(len(f["input_ids"]) for f in chunk)
            ids = torch.tensor([f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in chunk])
            mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in chunk])
            labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in chunk])
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                           ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def tokenizer_for(path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _token_count(features: list[dict[str, list[int]]]) -> int:
    return sum(len(f["input_ids"]) for f in features)


# --- child setups ---------------------------------------------------------------------------------------

def tunekit_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import tunekit_side

    import tunekit

    train, held = bench_data.alpaca(p["train"], p["eval"])
    config = {
        "model": {"name": "smollm2-135m"},
        "task": {"name": "causal-lm", "max_length": MAX_LENGTH, "template": "chat"},
        "data": {"train": str(bench_data.write_json(train, workdir / "train.json")),
                 "validation": str(bench_data.write_json(held, workdir / "eval.json"))},
        "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        # Batches in random order like the Trainer's: with only 12 steps, length-grouped batches (tunekit's default,
        # 20% fewer padded tokens here) ended 0.005 and 0.011 higher in held-out loss (seeds 42 and 7, README).
        "training": {"epochs": 1, "batch_size": BATCH, "lr": LR, "seed": p.get("seed", 42),
                     "precision": p.get("precision", "fp32"), "group_by_length": False},
    }
    result = tunekit_side.run(config, workdir)
    loaded = tunekit.load_run(result.pop("output_dir"))
    tokenizer = tokenizer_for(p["model"])
    result["eval_loss"] = round(eval_loss(loaded.model, tokenizer, encode_all(tokenizer, held)), 4)
    tokens = _token_count(encode_all(tokenizer, train))
    result["train_tokens"] = tokens
    if result.get("train_seconds"):
        result["tokens_per_second"] = round(tokens / result["train_seconds"], 1)
    return result


def peft_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import peers
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, set_seed

    train, held = bench_data.alpaca(p["train"], p["eval"])
    tokenizer = tokenizer_for(p["model"])  # the untrained model's loss first, outside the timed part
    base_loss = eval_loss(AutoModelForCausalLM.from_pretrained(p["model"]), tokenizer, encode_all(tokenizer, held))
    start = time.perf_counter()
    seed = p.get("seed", peers.SEED)
    set_seed(seed)
    tokenizer = tokenizer_for(p["model"])
    model = AutoModelForCausalLM.from_pretrained(p["model"])
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"]))
    train_features, held_features = encode_all(tokenizer, train), encode_all(tokenizer, held)
    bf16 = p.get("precision", "fp32") == "bf16"  # the Trainer's own switch (CPU autocast); its default is fp32
    # the seed-spread runs (README) change the seed; the benchmark itself keeps peers.SEED
    args = peers.training_args(workdir / "trainer", LR, BATCH, 1, seed=seed, bf16=bf16)
    trainer = Trainer(model=model, args=args,
                      train_dataset=train_features,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the timed evaluation, in the run's precision
        loss = eval_loss(model, tokenizer, held_features)
    eval_seconds = time.perf_counter() - t1
    model.save_pretrained(workdir / "adapter")
    run_seconds = time.perf_counter() - start
    if bf16:  # the compared figure is fp32 on every setup (as tunekit's is, from its saved adapter), off the clock
        loss = eval_loss(model, tokenizer, held_features)
    tokens = _token_count(train_features)
    return {
        "run_seconds": round(run_seconds, 3), "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3), "eval_loss": round(loss, 4), "train_tokens": tokens,
        "tokens_per_second": round(tokens / train_seconds, 1), "trainable_params": peers.count_trainable(model),
        "steps": int(trainer.state.global_step), "base_eval_loss": round(base_loss, 4),
    }


SETUPS = {"tunekit": tunekit_setup, "peft": peft_setup}


# --- parent ---------------------------------------------------------------------------------------------

def smollm2_folder() -> str:
    """tunekit's converted SmolLM2 folder (converting the GGUF once, outside any timed setup)."""
    from tunekit.models import resolve_model

    return resolve_model("smollm2-135m").path


def _wall_check(name: str, tk: dict[str, Any], peer: dict[str, Any], target: float | None) -> Check:
    """tunekit / peer wall time; with a target, PASS also needs tunekit's held-out loss <= the peer's."""
    loss_t, loss_p = value(tk, "eval_loss"), value(peer, "eval_loss")
    loss_ok = loss_t is not None and loss_p is not None and loss_t <= loss_p + 1e-4
    check = Check.ratio_at_most("sft", name, value(tk, "run_seconds"), value(peer, "run_seconds"),
                                target if target is not None else float("inf"), extra_ok=loss_ok,
                                note=f"eval loss {loss_t} vs {loss_p} (needs <=); untrained "
                                     f"{value(peer, 'base_eval_loss')}")
    if target is None:
        check.report_only()
    return check


def run(quick: bool = False, scale: float = 1.0) -> Report:
    n = sizes(quick, scale)
    report = Report("sft", "LoRA SFT on SmolLM2-135M, alpaca demo: tunekit vs PEFT + transformers Trainer",
                    {"train_examples": n["train"], "eval_examples": n["eval"], "max_length": MAX_LENGTH,
                     "examples_per_step": BATCH, "epochs": 1, "lr": LR, "lora": "r=8 alpha=16 q_proj,v_proj",
                     "precision": f"tunekit {TUNEKIT_PRECISION}, peer fp32 (its default); both at both, report only"})
    try:
        bench_data.alpaca(1, 1)
        params = {**n, "model": smollm2_folder()}
    except Exception as exc:  # missing data or model package: report it instead of a figure
        report.notes.append(f"skipped: {exc}")
        return report
    peft = run_setup(SCRIPT, "peft", {**params, "precision": "fp32"}, label="peft-lora + Trainer")
    tk = run_setup(SCRIPT, "tunekit", {**params, "precision": TUNEKIT_PRECISION},
                   label=f"tunekit-lora {TUNEKIT_PRECISION}")
    tk32 = run_setup(SCRIPT, "tunekit", {**params, "precision": "fp32"}, label="tunekit-lora fp32")
    peft16 = run_setup(SCRIPT, "peft", {**params, "precision": "bf16"}, label="peft-lora + Trainer bf16")
    report.setups = [peft, tk, tk32, peft16]
    report.checks.append(_wall_check("LoRA SFT wall time", tk, peft, TARGET))
    report.checks.append(_wall_check("same precision, fp32: wall time", tk32, peft, None))
    report.checks.append(_wall_check("same precision, bf16: wall time", tk, peft16, None))
    report.checks.append(Check.ratio_at_most("sft", "LoRA SFT training phase", value(tk, "train_seconds"),
                                             value(peft, "train_seconds"), float("inf"),
                                             note=f"tokens/s {value(tk, 'tokens_per_second')} vs "
                                                  f"{value(peft, 'tokens_per_second')}").report_only())
    return report


def main() -> None:
    args = parent_args()
    write_reports("sft", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("LoRA SFT benchmark")
        main()
