"""A prepared GPU check: LoRA SFT on randomly initialised Llama shapes, measured on one CUDA device.

    python3 scripts/gpu_check.py [--json PATH] [--steps N] [--shapes NAME,...] [--cpu-smoke]

No weights or data travel with it: each model shape (SmolLM2-135M's and Llama-3.2-1B's) is built from a
config alone with random weights, saved bf16 to a temporary folder beside a word-level tokenizer built in
code, and trained on synthetic prompt/response jsonl through ``tunekit.run``. The setups: baseline,
gradient checkpointing, packing, prefix tuning followed by generation, and nf4 (only where bitsandbytes
imports). A setup whose config key this tunekit lacks is reported as skipped. Each setup runs in a fresh
subprocess so that its peak CUDA memory is its own and a crash in one leaves the others measured.

Per setup it prints tokens/s (tunekit's own TrainResult figure), peak CUDA memory
(``torch.cuda.max_memory_allocated``) and, beside it, ``tunekit.estimate``'s prediction where that module
exists. The results go to ``$OUT/gpu_check.json`` when ``OUT`` is set, else to ``--json``.
Without a CUDA device it prints "skipped: no CUDA device" and exits 0; ``--cpu-smoke`` runs the same code
on CPU with a 2-layer, hidden-64 model in fp32 for a few steps (the test suite does this).

tunekit is imported from this working tree by putting the repository root first on ``sys.path``, not by
``pip install -e .``: an editable install builds through setuptools in an isolated environment that pip
fills from the network, which the GPU machine does not have, and tunekit finds its built-in plugins by
scanning its own package, so nothing needs the installed metadata. Nothing here imports ``datasets``,
``bitsandbytes`` or ``gguf`` (the GPU machine has none of them); when ``datasets`` is missing the jsonl is
read by a small list-backed stand-in format registered for the run (tunekit's jsonl reader returns a
``datasets.Dataset``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tunekit.hookspecs import hookimpl  # noqa: E402  (pluggy only; torch is imported later)

SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152},
    "llama-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512},
}
SETUPS = ("baseline", "gradient-checkpointing", "packing", "prefix-tuning", "nf4")
SETUP_KEYS = {"gradient-checkpointing": "training.gradient_checkpointing", "packing": "task.packing",
              "nf4": "model.quantize"}
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "###", "Prompt", "Response", ":"]
WORDS = 400  # synthetic vocabulary of the tokenizer (the model's embedding keeps the shape's full size)
SKIP_NO_CUDA = "skipped: no CUDA device"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="where to write the results (default $OUT/gpu_check.json)")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same path on CPU, tiny model, fp32")
    parser.add_argument("--shapes", help="comma-separated shapes (default: smollm2-135m,llama-1b)")
    parser.add_argument("--setups", help=f"comma-separated setups (default: all of {','.join(SETUPS)})")
    parser.add_argument("--steps", type=int, help="optimiser steps per setup (default 20; 3 with --cpu-smoke)")
    parser.add_argument("--one", nargs=3, metavar=("SETUP", "MODEL_DIR", "DATA"), help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)  # the JSON plan of one child run
    return parser.parse_args(argv)


def plan_for(args: argparse.Namespace) -> dict[str, Any]:
    """Step count, batch, length, precision and shapes: the real sizes on CUDA, tiny ones for --cpu-smoke."""
    if args.cpu_smoke:
        plan = {"steps": 3, "batch_size": 2, "length": 64, "precision": "fp32", "shapes": ["tiny"], "rows": 24,
                "isolate": False}  # one process: the imports would cost more than the tiny runs
    else:
        plan = {"steps": 20, "batch_size": 8, "length": 512, "precision": "bf16",
                "shapes": ["smollm2-135m", "llama-1b"], "rows": 256, "isolate": True}
    if args.steps:
        plan["steps"] = args.steps
    if args.shapes:
        plan["shapes"] = args.shapes.split(",")
    plan["setups"] = args.setups.split(",") if args.setups else list(SETUPS)
    unknown = [s for s in plan["shapes"] if s not in SHAPES] + [s for s in plan["setups"] if s not in SETUPS]
    if unknown:
        sys.exit(f"unknown shape or setup {unknown[0]!r}; shapes: {', '.join(SHAPES)}; setups: {', '.join(SETUPS)}")
    return plan


# --- what a run reads: a tokenizer, a random model, synthetic data ---------------------------------------


def build_tokenizer() -> Any:
    """A word-level tokenizer over ``w0 .. w{WORDS-1}`` plus the plain template's words, built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + [f"w{i}" for i in range(WORDS)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def save_model(shape: str, folder: Path) -> Path:
    """Save a randomly initialised Llama of ``shape`` (tied embeddings, bf16 on disk) and the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=4096,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def write_data(path: Path, rows: int, length: int, seed: int = 0) -> Path:
    """``rows`` prompt/response records of ``length`` / 2 to ``length`` tokens in the plain template; the
    response is the prompt shifted by one word, so there is something to learn."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(rows):
            n = rng.randint(length // 4, length // 2 - 8)
            prompt = [rng.randrange(WORDS - 1) for _ in range(n)]
            record = {"prompt": " ".join(f"w{i}" for i in prompt),
                      "response": " ".join(f"w{i + 1}" for i in prompt)}
            fh.write(json.dumps(record) + "\n")
    return path


class ListRows(list):
    """Just the part of ``datasets.Dataset`` that tunekit's tasks use on raw rows, over a list of dicts."""

    @property
    def column_names(self) -> list[str]:
        return list(self[0]) if self else []

    def select(self, indices: Any) -> ListRows:
        return ListRows(self[i] for i in indices)


class ListRowsFormat:
    """A dataset-format plugin reading jsonl into :class:`ListRows`, for machines without ``datasets``."""

    name = "gpu-check-jsonl"
    description = "jsonl read into plain lists (the GPU check, where datasets is not installed)"
    extensions: tuple[str, ...] = ()

    def read(self, path: str, data: Any) -> ListRows:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return ListRows([json.loads(line) for line in lines if line.strip()])


class StandInPlugin:
    """The plugin that registers :class:`ListRowsFormat` (passed to ``tunekit.plugins.reset``)."""

    @staticmethod
    @hookimpl
    def register_dataset_formats(register: Any) -> None:
        register(ListRowsFormat())


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken install (bitsandbytes without its kernels) counts as absent
        return False
    return True


# --- one setup, in its own process ------------------------------------------------------------------------


def run_config(setup: str, model_dir: str, data: str, plan: dict[str, Any], out: Path) -> dict[str, Any]:
    """The ``tunekit.run`` configuration of one setup."""
    tree: dict[str, Any] = {
        "model": {"name": model_dir},
        "task": {"name": "causal-lm", "template": "plain", "max_length": plan["length"], "max_new_tokens": 16},
        "data": {"train": data, "max_eval_samples": 8, "val_split": 0.05},
        "method": {"name": "prefix-tuning"} if setup == "prefix-tuning" else {"name": "lora", "r": 16},
        "training": {"max_steps": plan["steps"], "batch_size": plan["batch_size"], "precision": plan["precision"],
                     "lr": 2e-4, "logging_steps": max(1, plan["steps"] // 4), "cache_frozen": False, "seed": 0},
        "output": {"dir": str(out), "overwrite": True},
    }
    if not _importable("datasets"):
        tree["data"]["format"] = ListRowsFormat.name
    if setup == "gradient-checkpointing":
        tree["training"]["gradient_checkpointing"] = True
    elif setup == "packing":
        tree["task"]["packing"] = True
    elif setup == "nf4":
        tree["model"]["quantize"] = "nf4"
    return tree


def unavailable(setup: str, tree: dict[str, Any]) -> str | None:
    """Why this tunekit (or this machine) cannot run ``setup``, or None when it can."""
    import tunekit

    key = SETUP_KEYS.get(setup)
    if setup == "nf4":
        if not _importable("bitsandbytes"):
            return "no bitsandbytes"
        if "nf4" not in tunekit.registries().quantizers.names():
            return f"{key}=nf4 not available in this tunekit"
        return None
    try:
        tunekit.load_config(overrides=tree)
    except tunekit.ConfigError as exc:
        if key and key.split(".")[1] in str(exc):
            return f"{key} not available in this tunekit"
        raise
    return None


def estimate(tree: dict[str, Any], plan: dict[str, Any]) -> Any:
    """``tunekit.estimate``'s prediction in MB for this setup (process overhead left out, as CUDA memory has
    none), or "n/a" where that module is absent or fails."""
    try:
        module = importlib.import_module("tunekit.estimate")
        fields = {f.name for f in dataclasses.fields(module.Settings)}
        wanted = {"batch_size": plan["batch_size"], "length": plan["length"], "precision": plan["precision"],
                  "gradient_checkpointing": bool(tree["training"].get("gradient_checkpointing")),
                  "quantize": tree["model"].get("quantize") or "none", "task": "causal-lm"}
        method = dict(tree["method"])
        predicted = module.estimate(tree["model"]["name"], method.pop("name"),
                                    module.Settings(**{k: v for k, v in wanted.items() if k in fields}),
                                    method, overhead=0)
    except Exception as exc:  # noqa: BLE001 - the check reports a missing or failing estimate and goes on
        return "n/a" if isinstance(exc, ImportError) else f"n/a ({type(exc).__name__}: {exc})"
    parts = predicted.to_dict()
    parts["total"] -= parts.get("allocator", 0)  # the CPU heap's slack: CUDA's peak allocated memory has none
    return {k: round(v / 2**20, 1) for k, v in parts.items() if k in ("total", "weights", "trainable_state",
                                                                      "activations", "logits")}


def generate(out: Path) -> dict[str, Any]:
    """Load the finished run and answer a few prompts; the answers and the time they took."""
    import torch

    import tunekit

    loaded = tunekit.load_run(out)
    if torch.cuda.is_available():
        loaded.model.to("cuda")
    prompts = [" ".join(f"w{i}" for i in range(k, k + 12)) for k in (0, 40, 80, 120)]
    start = time.perf_counter()
    answers = loaded.job.predict(loaded.model, prompts)
    return {"prompts": len(prompts), "seconds": round(time.perf_counter() - start, 3), "first_answer": answers[0]}


def run_one(setup: str, model_dir: str, data: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Train one setup and measure it."""
    import torch

    import tunekit
    import tunekit.plugins

    if not _importable("datasets"):
        tunekit.plugins.reset(extra_plugins=[StandInPlugin])
    out = Path(tempfile.mkdtemp(prefix=f"gpu-check-{setup}-"))
    tree = run_config(setup, model_dir, data, plan, out)
    reason = unavailable(setup, tree)
    if reason:
        return {"setup": setup, "status": "skipped", "reason": reason}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = tunekit.run(tree)
    summary = result.summary
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    record = {
        "setup": setup, "status": "ok", "steps": summary.get("steps"),
        "losses": [r["loss"] for r in logged if "loss" in r],
        "tokens_per_second": summary.get("tokens_per_second"), "train_seconds": summary.get("train_seconds"),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_rss_mb": summary.get("peak_memory_mb"), "metrics": result.metrics, "estimate": estimate(tree, plan),
    }
    if setup == "prefix-tuning":
        record["generation"] = generate(out)
    return record


# --- the parent: models, data, one child per setup, the report --------------------------------------------


def run_child(setup: str, model_dir: Path, data: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Run one setup in a fresh interpreter; its record, or a failure record with the end of its output."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", setup, str(model_dir), str(data),
           "--plan", json.dumps(plan)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=plan.get("timeout", 240))
    except subprocess.TimeoutExpired:
        return {"setup": setup, "status": "failed", "reason": f"no result within {plan.get('timeout', 240)} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr)[-1500:]
        return {"setup": setup, "status": "failed", "reason": f"exit {proc.returncode}", "output": tail}
    return json.loads(lines[-1][len("RESULT "):])


def _mb(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def line(shape: str, record: dict[str, Any]) -> str:
    """One human-readable line per setup."""
    head = f"{shape:13} {record['setup']:23}"
    if record["status"] != "ok":
        return f"{head} {record['status']}: {record.get('reason', '')}"
    losses = record.get("losses") or []
    loss = f"loss {losses[0]:.3f}->{losses[-1]:.3f}" if losses else "loss -"
    predicted = record.get("estimate")
    if isinstance(predicted, dict):
        predicted = ", ".join(f"{k}={v}" for k, v in predicted.items() if not isinstance(v, (dict, list)))
    text = (f"{head} {record['tokens_per_second'] or 0:>10,.0f} tok/s  peak CUDA {_mb(record['peak_cuda_mb'])}"
            f"  (estimate: {predicted})  {loss}")
    if "generation" in record:
        gen = record["generation"]
        text += f"  generated {gen['prompts']} answers in {gen['seconds']:.2f} s"
    return text


def environment() -> dict[str, Any]:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "bitsandbytes": _importable("bitsandbytes"), "datasets": _importable("datasets")}


def write_json(report: dict[str, Any], path: Path | None) -> Path | None:
    if path is None and os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "gpu_check.json"
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def check(plan: dict[str, Any]) -> dict[str, Any]:
    """Every shape x setup; prints one line each as it finishes."""
    report: dict[str, Any] = {"plan": plan, "environment": environment(), "results": {}}
    print(f"gpu check on {report['environment']['device']}: {plan['steps']} steps x batch {plan['batch_size']}, "
          f"up to {plan['length']} tokens, {plan['precision']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = write_data(Path(tmp) / "train.jsonl", plan["rows"], plan["length"])
        for shape in plan["shapes"]:
            start = time.perf_counter()
            model_dir = save_model(shape, Path(tmp) / shape)
            print(f"{shape}: random model saved in {time.perf_counter() - start:.1f} s", flush=True)
            records = []
            for setup in plan["setups"]:
                records.append(run_child(setup, model_dir, data, plan) if plan["isolate"]
                               else run_one(setup, str(model_dir), str(data), plan))
                print(line(shape, records[-1]), flush=True)
            report["results"][shape] = records
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        setup, model_dir, data = args.one
        print("RESULT " + json.dumps(run_one(setup, model_dir, data, json.loads(args.plan)), default=str))
        return 0
    if args.cpu_smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: the smoke run stays on the CPU
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(SKIP_NO_CUDA)
        write_json({"skipped": "no CUDA device"}, args.json)
        return 0
    start = time.perf_counter()
    report = check(plan_for(args))
    report["seconds"] = round(time.perf_counter() - start, 1)
    path = write_json(report, args.json)
    print(f"done in {report['seconds']} s" + (f"; results in {path}" if path else ""))
    failed = [r for records in report["results"].values() for r in records if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
