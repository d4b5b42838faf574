"""The bundled demo dataset: questions and answers about a fictional e-bike (``data.train=demo``).

Provides two named datasets: ``demo`` (training pairs) and ``demo-heldout`` (paraphrased questions
with the keywords a correct answer must contain); ``demo-heldout`` is the held-out companion of
``demo``, so the main job scores the base and the tuned model on it.

``demo`` also suggests the settings of the main job (:meth:`DemoDataset.suggested_settings`); the user's
own settings always win over them, and the run's ``config.yaml`` records what was used.
"""

from __future__ import annotations

from typing import Any

from tunekit.hookspecs import hookimpl
from tunekit.runs.heldout import load_demo


class DemoDataset:
    name = "demo"
    description = "Bundled Q&A about a fictional e-bike (the main job's data): `demo` and `demo-heldout`."
    extensions: tuple[str, ...] = ()
    datasets = ("demo", "demo-heldout")
    heldout_companions = {"demo": "demo-heldout"}

    def suggested_settings(self, name: str, method: str) -> dict[str, Any]:
        """Settings that teach SmolLM2-135M the demo's facts in a few CPU minutes (measured, see docs).

        All 207 pairs train (each of the 53 facts is asked 3-5 ways; carving a validation split out
        would hide whole facts), and the eval loss is reported on the held-out paraphrases without
        picking a checkpoint by it, so the held-out accuracy stays an honest test figure. A short
        system prompt replaces SmolLM2's default one, which would be about a third of every example.
        """
        if name != "demo":
            return {}
        settings: dict[str, Any] = {
            "task": {"name": "causal-lm", "system_prompt": "You are the Quillmoor Cycles assistant.", "max_new_tokens": 48},
            "data": {"validation": "demo-heldout"},
            "training": {"epochs": 3, "batch_size": 8, "load_best_at_end": False},
        }
        if method == "lora":  # the 53 facts need more capacity than the q/v default, and a brisk rate
            settings["method"] = {"name": "lora", "r": 16, "target_modules": "all-linear"}
            settings["training"]["lr"] = 2e-3
        return settings

    def read(self, path: str, data: Any) -> Any:
        import datasets

        split = "heldout" if path == "demo-heldout" else "train"
        return datasets.Dataset.from_list(load_demo(split))


@hookimpl
def register_dataset_formats(register) -> None:
    register(DemoDataset())
