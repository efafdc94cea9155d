"""Step: save the trained model to the BentoML model store, with what serving needs."""

import logging
from typing import Annotated

from zenml import log_metadata, step

from xray.integrations.packaging import export_model, save_to_model_store
from xray.logic.constants import BENTOML_MODEL_ARCHIVE_ARTIFACT
from xray.logic.records import ReleaseRecord
from xray.ml.guard import InputGuard
from xray.ml.model import KerasModelFile

logger = logging.getLogger(__name__)


# Never cached: the BentoML model store is local to the machine that runs the step.
@step(enable_cache=False)
def package_model(
    model: KerasModelFile,
    release: ReleaseRecord,
    guard: InputGuard | None,
) -> tuple[Annotated[str, "bentoml_model_tag"], Annotated[bytes, BENTOML_MODEL_ARCHIVE_ARTIFACT]]:
    """Saves ``model.keras`` with ``bentoml.models.create``, labelled with the ZenML
    model version and carrying threshold, class names, image size, metrics and data
    fingerprint as metadata (the service reads threshold and image size from there), and
    the input guard as ``guard.json``.

    Args:
        model: The trained model.
        release: The version's release record (threshold, image size, metrics, data
            fingerprint: :meth:`xray.logic.records.ReleaseRecord.served_metadata`).
        guard: The fitted input guard, saved as ``guard.json`` beside ``model.keras``.

    Returns:
        The BentoML model tag, and the model store entry as an archive: the store is
        local to the machine, and on a cloud stack the next step runs in another
        container (``build_bento`` imports it there).
    """
    tag = save_to_model_store(
        model,
        metadata=release.served_metadata(),
        labels={"zenml_model": release.model_name, "zenml_model_version": release.model_version},
        guard=guard.to_dict() if guard is not None else None,
    )
    logger.info("Saved BentoML model %s", tag)
    log_metadata(metadata={"bentoml_model_tag": tag})
    return tag, export_model(tag)
