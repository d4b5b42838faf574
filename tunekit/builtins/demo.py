"""The bundled demo dataset: questions and answers about a fictional e-bike (``data.train=demo``).

Provides two named datasets: ``demo`` (training pairs) and ``demo-heldout`` (paraphrased questions
with the keywords a correct answer must contain); ``demo-heldout`` is the held-out companion of
``demo``, so the main job scores the base and the tuned model on it.
"""

from __future__ import annotations

from typing import Any

from tunekit.heldout import load_demo
from tunekit.hookspecs import hookimpl


class DemoDataset:
    name = "demo"
    description = "Bundled Q&A about a fictional e-bike (the main job's data): `demo` and `demo-heldout`."
    extensions: tuple[str, ...] = ()
    datasets = ("demo", "demo-heldout")
    heldout_companions = {"demo": "demo-heldout"}

    def read(self, path: str, data: Any) -> Any:
        import datasets

        split = "heldout" if path == "demo-heldout" else "train"
        return datasets.Dataset.from_list(load_demo(split))


@hookimpl
def register_dataset_formats(register) -> None:
    register(DemoDataset())
