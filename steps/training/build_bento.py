"""Step: build the prediction service's Bento for the packaged model, and keep it."""

import logging
from typing import Annotated

from zenml import ArtifactConfig, get_step_context, log_metadata, step
from zenml.enums import ArtifactType
from zenml.types import MarkdownString

from xray.integrations.packaging import build_bento as build
from xray.integrations.packaging import ensure_model, export_bento
from xray.logic.constants import BENTO_ARCHIVE_ARTIFACT

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def build_bento(
    bentoml_model_tag: str, bentoml_model_archive: bytes, model_card: MarkdownString
) -> tuple[
    Annotated[str, "bento_tag"],
    Annotated[
        bytes,
        ArtifactConfig(name=BENTO_ARCHIVE_ARTIFACT, artifact_type=ArtifactType.SERVICE),
    ],
]:
    """Builds a Bento from ``bentos/`` (service, build file, the core as a wheel,
    the model card) and exports it to the artifact store, tied to the model version.

    The local BentoML store lives on the machine that ran the step (a cloud container on
    the full-cloud stacks); the exported archive is what any machine imports later
    (``python -m application.serve`` of the production version does it by itself).

    Args:
        bentoml_model_tag: The BentoML model the Bento serves.
        bentoml_model_archive: That model's store entry, imported when this machine's
            store lacks it (a cloud step's fresh container).
        model_card: The model card (Markdown), put into the Bento.

    Returns:
        The Bento tag (``bentoml serve <tag>``, ``bentoml containerize <tag>``) and the
        ``.bento`` archive (``bentoml import``).
    """
    if ensure_model(bentoml_model_tag, bentoml_model_archive):
        logger.info("Imported BentoML model %s from its archive", bentoml_model_tag)
    version = get_step_context().model
    tag = build(
        bentoml_model_tag,
        labels={"zenml_model": version.name, "zenml_model_version": str(version.version)},
        model_card=str(model_card),
    )
    archive = export_bento(tag)
    logger.info(
        "Built Bento %s (%.1f MB archive kept as %s)",
        tag,
        len(archive) / 2**20,
        BENTO_ARCHIVE_ARTIFACT,
    )
    log_metadata(
        metadata={
            "bento_tag": tag,
            "bentoml_model_tag": bentoml_model_tag,
            "archive_mb": round(len(archive) / 2**20, 2),
        }
    )
    return tag, archive
