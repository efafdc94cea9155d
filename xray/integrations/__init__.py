"""Adapters to other tools: MLflow (tracking), BentoML (packaging), Evidently (validation)."""
