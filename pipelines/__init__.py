"""Pipeline definitions (wiring only)."""
