"""What a task is and the pieces tasks share.

- ``protocol``: the ``Task`` / ``TaskJob`` protocols and ``TaskContext``;
- ``pieces``: loading a model with a fresh head, padding, devices, eval mode, state files;
- ``rows``: columns, sample caps and the seeded validation split on raw rows;
- ``metrics``: accuracy, F1, Matthews, SQuAD EM/F1, entity-level scores.
"""
