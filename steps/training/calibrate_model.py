"""Step: temperature scaling fitted on validation, built into the served model."""

import logging
from typing import Annotated

import mlflow
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from materializers import KerasModelMaterializer
from xray.logic.calibration import calibrate
from xray.logic.constants import MODEL_ARTIFACT, TEMPERATURE_ARTIFACT
from xray.logic.dataset import ImageDataset
from xray.logic.records import CalibrationFit
from xray.logic.settings import CalibrationSettings
from xray.ml.model import KerasModelFile, with_temperature
from xray.ml.training import predict_probabilities

logger = logging.getLogger(__name__)


@step(experiment_tracker=True, output_materializers={MODEL_ARTIFACT: KerasModelMaterializer})
def calibrate_model(
    trained_model: KerasModelFile,
    val_set: ImageDataset,
    config: CalibrationSettings | None = None,
) -> tuple[
    Annotated[
        KerasModelFile, ArtifactConfig(name=MODEL_ARTIFACT, artifact_type=ArtifactType.MODEL)
    ],
    Annotated[CalibrationFit, TEMPERATURE_ARTIFACT],
]:
    """Fits a temperature T on the validation split (minimum log loss) and, when it helps,
    appends ``p -> sigmoid(logit(p) / T)`` to the model as a layer, so that evaluation,
    packaging, the service and batch inference all use the calibrated probabilities.

    Args:
        trained_model: The model from ``train_model``.
        val_set: Validation images (the temperature is fitted on them only).
        config: The gain needed to apply T (:class:`xray.logic.settings.CalibrationSettings`).

    Returns:
        The model to evaluate and serve (calibrated or unchanged) and the fit
        (``temperature``, ``applied``, validation log loss and ECE before and after).
    """
    config = config or CalibrationSettings()
    keras_model = trained_model.load()
    p_val = predict_probabilities(keras_model, val_set.images, trained_model.image_size)
    fit = CalibrationFit(**calibrate(val_set.labels, p_val, min_improvement=config.min_improvement))
    logger.info(
        "Temperature %.3f %s (validation log loss %.4f -> %.4f, ECE %.4f -> %.4f)",
        fit.temperature,
        "applied" if fit.applied else "not applied: it does not help enough",
        fit.val_nll_before,
        fit.val_nll_after,
        fit.val_ece_before,
        fit.val_ece_after,
    )
    log_metadata(metadata=fit.model_dump(mode="json"))
    mlflow.log_params({"temperature": round(fit.temperature, 4), "calibrated": fit.applied})
    if not fit.applied:
        return trained_model, fit
    return KerasModelFile.from_model(with_temperature(keras_model, fit.temperature)), fit
