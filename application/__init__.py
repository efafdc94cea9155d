"""The application layer: what a run of this project does, for any front end.

``train()`` and ``score()`` prepare the stack, run a pipeline and return typed outcomes;
``run.py`` (the CLI) only parses options and prints them. Anything a schedule or the
dashboard must do the same way belongs in the pipelines, not here.
"""
