"""Pure logic: settings, records, metrics, calibration, splits, promotion rules (numpy,
pandas and pydantic only; no files, no models)."""
