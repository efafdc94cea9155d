"""Stack definitions (one YAML per stack) and the code that registers them with ZenML."""
