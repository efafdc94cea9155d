"""What people read: the model card, evaluation plots, error analysis pages."""
