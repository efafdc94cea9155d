"""Step: fit the input-domain guard on the training split, its threshold on validation."""

import logging
from typing import Annotated, Any

import mlflow
from zenml import get_step_context, log_metadata, step

from xray.logic.constants import INPUT_GUARD_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.settings import GuardSettings
from xray.ml.guard import InputGuard, features_and_embeddings, fit_guard
from xray.ml.model import KerasModelFile
from xray.ml.preprocessing import make_dataset

logger = logging.getLogger(__name__)


@step(experiment_tracker=True)
def fit_input_guard(
    model: KerasModelFile,
    train_set: ImageDataset,
    val_set: ImageDataset,
    config: GuardSettings | None = None,
) -> Annotated[InputGuard, INPUT_GUARD_ARTIFACT]:
    """Fits the guard that refuses inputs the model cannot judge (:mod:`xray.ml.guard`).

    Args:
        model: The model to serve (its ``pool`` layer gives the embeddings).
        train_set: The training split: statistic ranges, embedding mean and covariance.
        val_set: The validation split: the distance threshold, so that
            ``target_acceptance`` of its images pass.
        config: Acceptance target and batch size (:class:`xray.logic.settings.GuardSettings`).

    Returns:
        The fitted guard.
    """
    config = config or GuardSettings()
    keras_model = model.load()
    size = model.image_size

    def batches(images: list[bytes]) -> Any:
        return (b.numpy() for b in make_dataset(images, None, size, config.batch_size, cache=False))

    train_features, train_embeddings, _ = features_and_embeddings(
        keras_model, batches(train_set.images)
    )
    val_features, val_embeddings, _ = features_and_embeddings(keras_model, batches(val_set.images))
    guard = fit_guard(
        train_features, train_embeddings, val_features, val_embeddings, config.target_acceptance
    )
    summary = guard.summary()
    if guard.threshold is None:
        logger.warning("Input guard: %s", summary["note"])
    else:
        logger.info(
            "Input guard: distance threshold %.1f; accepts %.1f %% of validation images",
            guard.threshold,
            100 * summary["val_acceptance"],
        )
    log_metadata(metadata={"input_guard": summary})
    get_step_context().model.log_metadata({"input_guard": summary})
    mlflow.log_metrics(
        {
            "guard_val_acceptance": summary["val_acceptance"],
            **({"guard_threshold": guard.threshold} if guard.threshold is not None else {}),
        }
    )
    return guard
