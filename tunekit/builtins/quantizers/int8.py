"""``int8`` quantizer: load the frozen base with bitsandbytes LLM.int8 (8-bit linear layers).

The modules a run trains stay in full precision: the task's head and the pretrained modules it trains
with it (``TaskJob.head_modules``: ``classifier``, ``score``, ``qa_outputs``, an encoder's ``pooler``, ...)
and the modules a method trains (its ``float_modules``). The runner passes them all as ``skip_modules``.

transformers matches a skip entry against the full name of each *linear layer* it would quantize
(from the start of the name, or as its suffix), so a plain name such as ``pooler`` or ``classifier``
covers a linear layer of that name but not the linear layers inside a module of that name
(``bert.pooler.dense``, RoBERTa's ``classifier.dense``). Each name is therefore passed twice: as
given, and as a pattern for everything beneath it. bitsandbytes' 8-bit kernels run on CPU too.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from tunekit.errors import UsageError
from tunekit.hookspecs import hookimpl


def skip_patterns(skip_modules: Sequence[str]) -> list[str]:
    """Each name in ``skip_modules`` plus a pattern for the modules beneath it (``pooler`` -> ``bert.pooler.dense``).

    A name that is already a regex (a method's ``float_modules``, e.g. ``.*layer\\.5``) is kept as given and
    its descendants are matched by transformers' own prefix rule.
    """
    out: list[str] = []
    for name in skip_modules:
        if not name or name in out:
            continue
        out.append(name)
        if re.fullmatch(r"[\w.]+", name):  # a plain dotted module name, not a regex
            out.append(rf"(?:.+\.)?{re.escape(name)}\..+")
    return out


class Int8:
    name = "int8"
    description = "Load the base model in 8-bit (bitsandbytes LLM.int8); the head and trained modules stay float."

    def load_kwargs(self, skip_modules: Sequence[str]) -> dict[str, Any]:
        """``from_pretrained`` keyword arguments: a ``BitsAndBytesConfig`` that leaves ``skip_modules`` in float."""
        try:
            from transformers import BitsAndBytesConfig
        except ImportError:  # pragma: no cover - transformers always has it
            raise UsageError("this transformers has no BitsAndBytesConfig; upgrade transformers to use --quantize int8.") from None
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError("--quantize int8 needs the bitsandbytes package; pip install bitsandbytes.")
        skip = skip_patterns(skip_modules)
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip or None)}


@hookimpl
def register_quantizers(register):
    register(Int8())
