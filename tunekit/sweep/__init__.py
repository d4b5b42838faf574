"""Hyperparameter sweeps and method comparisons on top of ``tunekit.run`` (Optuna does the searching).

- :mod:`tunekit.sweep.space`: the YAML search space, validated, and one config sampled from an Optuna trial;
- :mod:`tunekit.sweep.study`: the study (storage, resume, workers) and the objective (one run folder per trial);
- :mod:`tunekit.sweep.outputs`: ``best.yaml``, ``trials.csv`` and the plots;
- :mod:`tunekit.sweep.compare`: the same data and budget for several methods, one table.
"""
