"""The batch inference pipeline's steps: score, check drift, act on it."""
