"""tunekit's built-in plugins, one folder per kind of thing a plugin provides.

- ``methods/``: parameter-efficient methods (``--method``): feature extraction, freeze, full, the bottleneck
  adapters, LoRA, prefix tuning;
- ``tasks/``: tasks (``--task``): classification, token classification, question answering, causal LM;
- ``formats/``: dataset formats (``data.format``): csv/tsv/json/parquet, SQuAD, CoNLL, hub datasets, the demo;
- ``models/``: model sources (``--model``): the aliases of the bundled models;
- ``quantizers/``: quantized loading (``--quantize``): int8, nf4, fp4.

Every module or package directly inside one of these folders is loaded as a plugin, exactly like an installed
third-party plugin (same hooks, same ``register`` callbacks). Nothing in the core names them.
"""
