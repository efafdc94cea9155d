"""The model's life after training: the production version, its Bento and promotion."""
