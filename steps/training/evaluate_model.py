"""Step: choose the decision threshold on validation, measure on test."""

import logging
import math
from typing import Annotated, Any

import mlflow
import numpy as np
from zenml import log_metadata, step

from materializers import PngFigureMaterializer
from xray.integrations.tracking import log_png
from xray.logic.constants import (
    CALIBRATION_PLOT_ARTIFACT,
    EVALUATION_ARTIFACT,
    EVALUATION_PLOTS_ARTIFACT,
    THRESHOLD_ARTIFACT,
)
from xray.logic.dataset import ImageDataset
from xray.logic.metrics import (
    bootstrap_intervals,
    calibration_summary,
    choose_threshold,
    classification_metrics,
    finite,
)
from xray.logic.records import Evaluation, Metrics
from xray.logic.settings import EvaluationSettings
from xray.logic.shifts import balanced_sample, operating_points, shifted_predictions
from xray.ml.model import KerasModelFile
from xray.ml.training import predict_probabilities
from xray.reporting.plots import PngFigure, evaluation_figure, reliability_figure

logger = logging.getLogger(__name__)


@step(
    experiment_tracker=True,
    output_materializers={
        EVALUATION_PLOTS_ARTIFACT: PngFigureMaterializer,
        CALIBRATION_PLOT_ARTIFACT: PngFigureMaterializer,
    },
)
def evaluate_model(
    model: KerasModelFile,
    val_set: ImageDataset,
    test_set: ImageDataset,
    config: EvaluationSettings | None = None,
) -> tuple[
    Annotated[Evaluation, EVALUATION_ARTIFACT],
    Annotated[float, THRESHOLD_ARTIFACT],
    Annotated[PngFigure, EVALUATION_PLOTS_ARTIFACT],
    Annotated[PngFigure, CALIBRATION_PLOT_ARTIFACT],
]:
    """Picks the threshold on the validation split only, then scores the test split.

    Args:
        model: The trained model.
        val_set: Validation images (threshold choice).
        test_set: Test images (reported metrics).
        config: The threshold rule, the bootstrap and the shift check
            (:class:`xray.logic.settings.EvaluationSettings`). The shift check runs on a
            seeded sample of the test split: 16 passes over the whole split would cost
            more than the rest of the evaluation.

    Returns:
        Test metrics at the threshold, the threshold, the confusion matrix, ROC and
        precision-recall curves as one figure, the 95 % bootstrap intervals with the
        calibration summary (ECE, Brier, reliability bins), and the reliability diagram.
    """
    config = config or EvaluationSettings()
    size = model.image_size
    keras_model = model.load()

    def predict(images: list[bytes]) -> np.ndarray:
        return predict_probabilities(keras_model, images, size)

    if config.threshold_under_shift:
        shifted_val = shifted_predictions(list(val_set.images), predict)
        val_y = np.tile(val_set.labels, len(shifted_val))
        val_p = np.concatenate(list(shifted_val.values()))
    else:
        val_y, val_p = val_set.labels, predict(val_set.images)
    threshold = choose_threshold(val_y, val_p, config.threshold_rule, config.target_sensitivity)
    test_p = predict_probabilities(keras_model, test_set.images, size)
    metrics = classification_metrics(test_set.labels, test_p, threshold.value)
    logger.info(
        "Test: AUC %.3f, accuracy %.3f, sensitivity %.3f, specificity %.3f at threshold %.3f",
        metrics["roc_auc"],
        metrics["accuracy"],
        metrics["sensitivity"],
        metrics["specificity"],
        threshold.value,
    )
    numeric = {
        **metrics,
        "val_sensitivity": threshold.val_sensitivity,
        "val_specificity": threshold.val_specificity,
    }
    mlflow.log_metrics({f"test_{k}": float(v) for k, v in numeric.items()})
    log_metadata(metadata={"test_metrics": finite(numeric), "threshold": threshold.value})
    figure = PngFigure(
        evaluation_figure(test_set.labels, test_p, metrics),
        f"Test set: confusion matrix, ROC and PR at threshold {threshold.value:.3f}",
    )
    log_png(figure.png, "plots/evaluation.png")
    uncertainty: dict[str, Any] = {
        "intervals": bootstrap_intervals(
            test_set.labels,
            test_p,
            threshold.value,
            n_resamples=config.bootstrap_resamples,
            groups=test_set.patients,
        ),
        "calibration": calibration_summary(test_set.labels, test_p),
    }
    if config.shift_check:
        sample = test_set.subset(balanced_sample(test_set.labels, config.shift_check_images))
        shifted_test = shifted_predictions(list(sample.images), predict)
        points = operating_points(sample.labels, shifted_test, threshold.value)
        uncertainty["shift_operating_points"] = points
        log_metadata(metadata={"shift_operating_points": finite(points)})
        mlflow.log_metrics(
            {f"shift_worst_{k}": v for k, v in points["worst"].items() if math.isfinite(v)}
        )
        logger.info(
            "Under the shift suite (test split, threshold %.3f): sensitivity mean %.3f, worst "
            "%.3f; specificity mean %.3f, worst %.3f",
            threshold.value,
            points["mean"]["sensitivity"],
            points["worst"]["sensitivity"],
            points["mean"]["specificity"],
            points["worst"]["specificity"],
        )
    calibration = uncertainty["calibration"]
    log_metadata(
        metadata={
            "test_ci95": finite(uncertainty["intervals"]),
            "ece": calibration["ece"],
            "brier": calibration["brier"],
        }
    )
    mlflow.log_metrics({"test_ece": calibration["ece"], "test_brier": calibration["brier"]})
    reliability = PngFigure(
        reliability_figure(calibration),
        f"Reliability diagram on test (ECE {calibration['ece']:.3f})",
    )
    log_png(reliability.png, "plots/reliability.png")
    evaluation = Evaluation(
        threshold=threshold.value,
        threshold_rule=threshold.rule,
        target_sensitivity=config.target_sensitivity,
        val_sensitivity=threshold.val_sensitivity,
        val_specificity=threshold.val_specificity,
        threshold_under_shift=config.threshold_under_shift,
        metrics=Metrics(**metrics),
        intervals=uncertainty["intervals"],
        bootstrap_resamples=config.bootstrap_resamples,
        calibration=calibration,
        shift_operating_points=uncertainty.get("shift_operating_points"),
    )
    mlflow.log_dict(evaluation.model_dump(mode="json"), "evaluation/evaluation.json")
    return evaluation, threshold.value, figure, reliability
