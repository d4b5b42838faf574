"""Train the tiny job in a separate process (for the kill/resume and data-parallel tests).

    python train_script.py OUT_DIR [--steps N] [--save-steps N] [--batch-size N] [--resume] [--no-dropout]

Writes ``OUT_DIR/final.safetensors`` (all weights) from the main process when training ends.
Runs unchanged under ``python -m torch.distributed.run --nproc_per_node 2``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from safetensors.torch import save_file  # noqa: E402
from tinyjob import FullApplied, TinyJob, tiny_bert  # noqa: E402

from tunekit.config import TrainingConfig  # noqa: E402
from tunekit.engine import train  # noqa: E402

SCRIPT = Path(__file__)


def training_config(steps: int, save_steps: int | None, batch_size: int, resume: bool = False) -> TrainingConfig:
    return TrainingConfig(max_steps=steps, batch_size=batch_size, lr=1e-3, save_steps=save_steps, logging_steps=5,
                          eval_steps=25, load_best_at_end=False, resume=resume, save_total_limit=2)


def job() -> TinyJob:
    return TinyJob(n_train=256, n_eval=24)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-dropout", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = tiny_bert(dropout=0.0 if args.no_dropout else 0.1)
    result = train(model, job(), training_config(args.steps, args.save_steps, args.batch_size, args.resume),
                   Path(args.out), applied=FullApplied(model), config_fingerprint="script")
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    weights = {n: p.detach().contiguous() for n, p in model.named_parameters()}
    save_file(weights, str(Path(args.out) / "final.safetensors"))
    print(f"steps={result.steps} loss={result.train_loss:.4f}")


if __name__ == "__main__":
    main()
