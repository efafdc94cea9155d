"""Plain-Python core of the chest X-ray classifier (no ZenML imports).

Everything here is importable by the training steps, batch inference and the BentoML
service alike, so that loading, preprocessing and metrics have exactly one definition.
Its packages are layers (``make lint`` checks them): ``integrations`` may use
``reporting``, which may use ``ml``, which may use ``io``, which may use ``logic``.
"""
