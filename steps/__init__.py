"""ZenML steps: thin wrappers that call :mod:`xray` and add artifacts and metadata."""
