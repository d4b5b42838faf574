"""One run from config to run folder.

- ``runner``: the pipeline (``run``, ``load_run``): config -> model -> task -> method -> engine -> folder;
- ``output_folder``: where a run writes and when an existing folder may be reused;
- ``locking``: one process per run folder;
- ``provenance``: which distribution provided the method and the task;
- ``heldout``: held-out answer scoring and the bundled demo data.
"""
