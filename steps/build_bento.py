"""Step: build the prediction service's Bento for the packaged model."""

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step

from xray.packaging import build_bento as build

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def build_bento(bentoml_model_tag: str) -> Annotated[str, "bento_tag"]:
    """Builds a Bento from ``bentos/`` (service, build file, the xray modules it imports).

    Args:
        bentoml_model_tag: The BentoML model the Bento serves.

    Returns:
        The Bento tag; serve it with ``bentoml serve <tag>`` or containerize it with
        ``bentoml containerize <tag>``.
    """
    version = get_step_context().model
    tag = build(
        bentoml_model_tag,
        labels={"zenml_model": version.name, "zenml_model_version": str(version.version)},
    )
    logger.info("Built Bento %s (serve it: bentoml serve %s)", tag, tag)
    log_metadata(metadata={"bento_tag": tag, "bentoml_model_tag": bentoml_model_tag})
    return tag
