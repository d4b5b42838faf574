"""What a method is and what every method is built from.

- ``protocol``: the ``Method`` / ``Applied`` protocols, ``apply_method``, parameter counting;
- ``surgery``: module surgery (freeze, unfreeze, wrap, name matching) and the ``AppliedMethod`` base;
- ``architecture``: where each model family keeps its attention, MLP, embeddings and heads (``ArchInfo``);
- ``adapter_files``: PEFT-format ``adapter_config.json`` + ``adapter_model.safetensors`` files;
- ``merge``: folding a method into a plain float model for export.
"""
