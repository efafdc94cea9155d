"""Step: save the trained model to the BentoML model store, with what serving needs."""

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from xray.constants import CLASS_NAMES
from xray.model import KerasModelFile
from xray.packaging import save_to_model_store

logger = logging.getLogger(__name__)


# Never cached: the BentoML model store is local to the machine that runs the step.
@step(enable_cache=False)
def package_model(
    model: KerasModelFile,
    metrics: dict[str, Any],
    threshold: float,
    data_fingerprint: str,
    guard: dict[str, Any] | None,
) -> Annotated[str, "bentoml_model_tag"]:
    """Saves ``model.keras`` with ``bentoml.models.create``, labelled with the ZenML
    model version and carrying threshold, class names, image size, metrics and data
    fingerprint as metadata (the service reads threshold and image size from there), and
    the input guard as ``guard.json``.

    Args:
        model: The trained model.
        metrics: Test metrics.
        threshold: Decision threshold chosen on validation.
        data_fingerprint: Fingerprint of the training data set.
        guard: The fitted input guard, saved as ``guard.json`` beside ``model.keras``.

    Returns:
        The BentoML model tag.
    """
    version = get_step_context().model
    tag = save_to_model_store(
        model,
        metadata={
            "threshold": float(threshold),
            "class_names": list(CLASS_NAMES),
            "image_size": model.image_size,
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
            "data_fingerprint": data_fingerprint,
            "zenml_model": version.name,
            "zenml_model_version": str(version.version),
        },
        labels={"zenml_model": version.name, "zenml_model_version": str(version.version)},
        guard=guard,
    )
    logger.info("Saved BentoML model %s", tag)
    log_metadata(metadata={"bentoml_model_tag": tag})
    return tag
