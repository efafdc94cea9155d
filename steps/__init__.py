"""ZenML steps, one per file, grouped by the pipeline stage they belong to (``training/``,
``inference/``): thin wrappers that call :mod:`xray` and add artifacts and metadata."""
