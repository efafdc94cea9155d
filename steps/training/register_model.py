"""Step: record the trained model's facts on its ZenML Model version."""

import logging
from typing import Annotated

from zenml import get_step_context, step

from xray.logic.constants import REGISTERED_RELEASE_ARTIFACT
from xray.logic.records import ReleaseRecord

logger = logging.getLogger(__name__)


# Never cached: a cached re-run still creates a new model version, which must carry the
# facts too.
@step(enable_cache=False)
def register_model(
    release: ReleaseRecord, bentoml_model_tag: str, bento_tag: str
) -> Annotated[ReleaseRecord, REGISTERED_RELEASE_ARTIFACT]:
    """Records what a user of this version needs to know on its ZenML Model version.

    The pipeline's ``model`` setting makes every run create a new version of the ZenML
    Model; this step attaches metrics, threshold, image size, classes, data fingerprint,
    training facts, data sources, the data gates' outcome and the external sets' scores
    to it (the model itself is linked as the version's model artifact by ``train_model``).

    Args:
        release: The version's release record (``make_release_record``).
        bentoml_model_tag: The model in the BentoML model store.
        bento_tag: The Bento that serves it (its archive is the version's
            ``bento_archive`` artifact).

    Returns:
        The release record completed with the BentoML model and Bento tags.
    """
    version = get_step_context().model
    registered = release.model_copy(
        update={"bentoml_model_tag": bentoml_model_tag, "bento_tag": bento_tag}
    )
    version.log_metadata(registered.version_metadata())
    logger.info("Registered %s version %s", version.name, version.version)
    return registered
