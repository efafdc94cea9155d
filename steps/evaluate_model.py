"""Step: choose the decision threshold on validation, measure on test."""

import logging
import math
from typing import Annotated, Any

import mlflow
import numpy as np
from zenml import log_metadata, step

from materializers import PngFigureMaterializer
from xray.constants import (
    CALIBRATION_PLOT_ARTIFACT,
    EVALUATION_PLOTS_ARTIFACT,
    METRICS_ARTIFACT,
    THRESHOLD_ARTIFACT,
    UNCERTAINTY_ARTIFACT,
)
from xray.dataset import ImageDataset
from xray.metrics import (
    bootstrap_intervals,
    calibration_summary,
    choose_threshold,
    classification_metrics,
    finite,
)
from xray.model import KerasModelFile
from xray.plots import PngFigure, evaluation_figure, reliability_figure
from xray.shifts import balanced_sample, operating_points, shifted_predictions
from xray.tracking import log_png
from xray.training import predict_probabilities

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
    threshold_rule: str = "target_sensitivity",
    target_sensitivity: float = 0.95,
    bootstrap_resamples: int = 1000,
    threshold_under_shift: bool = False,
    shift_check: bool = True,
    shift_check_images: int = 600,
) -> tuple[
    Annotated[dict[str, Any], METRICS_ARTIFACT],
    Annotated[float, THRESHOLD_ARTIFACT],
    Annotated[PngFigure, EVALUATION_PLOTS_ARTIFACT],
    Annotated[dict[str, Any], UNCERTAINTY_ARTIFACT],
    Annotated[PngFigure, CALIBRATION_PLOT_ARTIFACT],
]:
    """Picks the threshold on the validation split only, then scores the test split.

    Args:
        model: The trained model.
        val_set: Validation images (threshold choice).
        test_set: Test images (reported metrics).
        threshold_rule: ``target_sensitivity`` or ``youden``.
        target_sensitivity: Validation sensitivity the threshold must reach.
        bootstrap_resamples: Resamples of the test split's patients for the 95 %
            intervals (each drawn patient brings all of their images).
        threshold_under_shift: Choose the threshold on the validation images pooled
            with their copies under every shift of :mod:`xray.shifts` (instead of the
            validation images alone).
        shift_check: Report the chosen threshold's sensitivity and specificity on the
            test split under every shift (metadata ``shift_operating_points``).
        shift_check_images: At most this many test images (a seeded sample keeping the
            class balance) for the shift check: 16 passes over the whole split would
            cost more than the rest of the evaluation.

    Returns:
        Test metrics at the threshold, the threshold, the confusion matrix, ROC and
        precision-recall curves as one figure, the 95 % bootstrap intervals with the
        calibration summary (ECE, Brier, reliability bins), and the reliability diagram.
    """
    size = model.image_size
    keras_model = model.load()

    def predict(images: list[bytes]) -> np.ndarray:
        return predict_probabilities(keras_model, images, size)

    if threshold_under_shift:
        shifted_val = shifted_predictions(list(val_set.images), predict)
        val_y = np.tile(val_set.labels, len(shifted_val))
        val_p = np.concatenate(list(shifted_val.values()))
    else:
        val_y, val_p = val_set.labels, predict(val_set.images)
    threshold = choose_threshold(val_y, val_p, threshold_rule, target_sensitivity)
    test_p = predict_probabilities(keras_model, test_set.images, size)
    metrics = classification_metrics(test_set.labels, test_p, threshold.value)
    metrics.update(
        threshold_rule=threshold.rule,
        val_sensitivity=threshold.val_sensitivity,
        val_specificity=threshold.val_specificity,
    )
    logger.info(
        "Test: AUC %.3f, accuracy %.3f, sensitivity %.3f, specificity %.3f at threshold %.3f",
        metrics["roc_auc"],
        metrics["accuracy"],
        metrics["sensitivity"],
        metrics["specificity"],
        threshold.value,
    )
    numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    mlflow.log_metrics({f"test_{k}": float(v) for k, v in numeric.items()})
    log_metadata(metadata={"test_metrics": numeric, "threshold": threshold.value})
    figure = PngFigure(
        evaluation_figure(test_set.labels, test_p, metrics),
        f"Test set: confusion matrix, ROC and PR at threshold {threshold.value:.3f}",
    )
    log_png(figure.png, "plots/evaluation.png")
    uncertainty = {
        "intervals": bootstrap_intervals(
            test_set.labels,
            test_p,
            threshold.value,
            n_resamples=bootstrap_resamples,
            groups=test_set.patients,
        ),
        "bootstrap_unit": "patient",
        "threshold_under_shift": threshold_under_shift,
        "calibration": calibration_summary(test_set.labels, test_p),
        "target_sensitivity": target_sensitivity,
        "bootstrap_resamples": bootstrap_resamples,
    }
    if shift_check:
        sample = test_set.subset(balanced_sample(test_set.labels, shift_check_images))
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
    mlflow.log_dict(uncertainty, "evaluation/uncertainty.json")
    reliability = PngFigure(
        reliability_figure(calibration),
        f"Reliability diagram on test (ECE {calibration['ece']:.3f})",
    )
    log_png(reliability.png, "plots/reliability.png")
    return metrics, threshold.value, figure, uncertainty, reliability
