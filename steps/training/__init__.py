"""The training pipeline's steps: data, validation, training, evaluation, release."""
